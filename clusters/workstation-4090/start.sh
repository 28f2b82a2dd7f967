#!/usr/bin/env bash
# One RTX 4090 box: a single-node Ray with the GPU, bound to loopback.
# Then: merge3 search clusters/workstation-4090/search.yaml --address 127.0.0.1:6379
set -euo pipefail
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # keep Ray on 127.0.0.1
ray stop --force >/dev/null 2>&1 || true
ray start --head --node-ip-address=127.0.0.1 --port=6379 \
  --num-gpus=1 --num-cpus="$(nproc)" \
  --include-dashboard=true --dashboard-host=127.0.0.1
echo "Ray is up. Dashboard: http://127.0.0.1:8265  Stop with: ray stop"
