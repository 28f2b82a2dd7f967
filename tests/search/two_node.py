"""A search on a real two-node Ray cluster on loopback, in a Python process of its own.

    python -m tests.search.two_node {search|node-loss} CONFIG.json RUN_DIR

Ray keeps per-process state (a singleton gRPC context among others) across
``ray.init``/``ray.shutdown``: a driver that ran a local Ray earlier in the same process
was seen to hang for good in ``GcsClient`` when it then joined a ``Cluster``. The
two-node tests therefore start this script, which owns its process from the first
``ray`` call to the last, and read the JSON summary it prints on its last line.

``node-loss`` kills the second node (its raylet and every process it started) once three
candidates have finished, and the search must complete on the head node.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

# before ray is imported: keep every Ray process on 127.0.0.1 (see ENVIRONMENT.md)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                      "health_check_timeout_ms": 500}


def complete(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                                ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _kill_node(cluster, node) -> None:
    import psutil

    victims = [p for p in psutil.process_iter(["cmdline"])
               if any(node.unique_id in part for part in (p.info["cmdline"] or []))]
    cluster.remove_node(node, allow_graceful=False)
    for process in victims:
        if process.is_running():
            process.kill()


def main(mode: str, config_path: str, run_dir: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from search.config import parse_config
    from search.records import finished_records
    from search.run import run_search
    from search.strategy import make_sampler, open_study

    config = json.loads(Path(config_path).read_text())
    # node-loss: room on the head for the lost node's actor to be replaced
    cpus = 2 if mode == "node-loss" else 1
    head_args = {"num_cpus": cpus, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    if mode == "node-loss":
        head_args["_system_config"] = FAST_HEALTH_CHECKS
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=head_args)
    worker_node = cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    box: dict = {}

    def search() -> None:
        try:
            box["outcome"] = run_search(parse_config(config), run_dir, progress=False,
                                        address=cluster.address)
        except BaseException as err:  # reported in the summary
            box["error"] = f"{type(err).__name__}: {err}"

    try:
        ray.init(address=cluster.address, log_to_driver=False)  # the driver stays connected
        nodes = {n["NodeID"][:12] for n in ray.nodes() if n["Alive"]}
        thread = threading.Thread(target=search)
        thread.start()
        if mode == "node-loss":
            deadline = time.monotonic() + 600
            while complete(Path(run_dir) / "optuna.db") < 3 and thread.is_alive():
                assert time.monotonic() < deadline, "timed out waiting for 3 candidates"
                time.sleep(0.2)
            _kill_node(cluster, worker_node)
        thread.join(timeout=900)
        summary = {
            "hung": thread.is_alive(),
            "error": box.get("error"),
            "nodes": sorted(nodes),
            "addresses": sorted({n["NodeManagerAddress"] for n in ray.nodes()}),
            "alive_after": sum(1 for n in ray.nodes() if n["Alive"]),
        }
        if "outcome" in box:
            outcome = box["outcome"]
            study = open_study(name=config["name"],
                               storage=f"sqlite:///{Path(run_dir) / 'optuna.db'}",
                               sampler=make_sampler("nsga2", population=4, seed=0),
                               objectives=len(config["tasks"]))
            records = finished_records(study, list(config["tasks"]))
            summary.update(
                evaluated=outcome.evaluated, failed=outcome.failed,
                worker_nodes=sorted({r.worker.rpartition("@")[2] for r in records
                                     if r.complete}))
        return summary
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    result = main(*sys.argv[1:4])
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # do not wait on Ray's lingering threads


def run_two_node(mode: str, config: dict, tmp_path: Path, timeout: float = 1200) -> dict:
    """Run :func:`main` in a fresh interpreter (see the module docstring); its summary."""
    import subprocess

    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "tests.search.two_node", mode,
                           str(config_path), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (
        f"two-node {mode} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])
