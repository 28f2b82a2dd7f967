#!/usr/bin/env bash
# Rebuild the scikit-learn population and run `merge3 irt validate` on it (see README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
DATA=benchmarks/irt/data/sklearn_population.csv
[ -f "$DATA" ] || nice -n 10 .venv/bin/python benchmarks/irt/build_sklearn_population.py \
    --models 320 --out "$DATA"
CMD="merge3 irt validate $DATA --out benchmarks/irt/sklearn_population --ks 10,20,50,100 --seeds 0,1,2"
if .venv/bin/python -c "import merge3.cli, sys; sys.exit(0 if 'irt' in open(merge3.cli.__file__).read() else 1)"; then
    nice -n 10 .venv/bin/merge3 ${CMD#merge3 } --command-line "$CMD" --machine "$(nproc --all) cores ($(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk "/Mem:/{print \$2}") GiB, CPU shared with 3 other engineers, OMP_NUM_THREADS=1, nice 10"
else  # until the main CLI is wired: the same verb through irt.cli.register
    nice -n 10 .venv/bin/python - ${CMD#merge3 } --command-line "$CMD" --machine "$(nproc --all) cores ($(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk "/Mem:/{print \$2}") GiB, CPU shared with 3 other engineers, OMP_NUM_THREADS=1, nice 10" <<'PY'
import argparse, sys
import irt.cli
parser = argparse.ArgumentParser(prog="merge3")
irt.cli.register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
raise SystemExit(args.func(args))
PY
fi
