"""The cluster files parse, and the cloud one satisfies Ray's own autoscaler schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import ray
import yaml

CLUSTERS = Path(__file__).resolve().parents[2] / "clusters"


def test_autoscaler_config_matches_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTERS / "aws-autoscaler.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["head_node_type"] in config["available_node_types"]
    assert any("dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])


def test_kuberay_manifest_shape():
    manifest = yaml.safe_load((CLUSTERS / "kuberay-raycluster.yaml").read_text())
    assert manifest["kind"] == "RayCluster" and manifest["apiVersion"] == "ray.io/v1"
    assert manifest["spec"]["rayVersion"] == ray.__version__
    worker = manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_workstation_search_config_is_a_valid_search_config():
    from search.config import parse_config

    config = parse_config(yaml.safe_load(
        (CLUSTERS / "workstation-4090" / "search.yaml").read_text()))
    assert config.workers.gpus == 1 and config.evaluation.backend == "vllm"


def test_shell_scripts_parse():
    for script in (CLUSTERS / "workstation-4090" / "start.sh", CLUSTERS / "slurm-search.sbatch"):
        subprocess.run(["bash", "-n", str(script)], check=True)
