"""A real two-node Ray cluster on loopback: candidates are evaluated on both nodes."""

from __future__ import annotations

import os

import pytest

from search.config import parse_config
from search.run import finished_records, run_search
from tests.search.test_search import search_config


@pytest.fixture
def two_node_cluster(ray_local):
    """Two raylets on 127.0.0.1 (ray.cluster_utils.Cluster; `ray start --address` refuses
    a second loopback node when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, see ENVIRONMENT)."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the session's single-node Ray makes way for the cluster
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                      "include_dashboard": False})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    from search.workers import init_ray

    init_ray(None, num_cpus=2)  # give the rest of the session its Ray back


@pytest.mark.cluster
def test_search_on_two_nodes(search_setting, two_node_cluster, tmp_path):
    import ray

    config = search_config(search_setting, name="cluster",
                           strategy={"population": 4, "generations": 2})
    config["workers"] = {"count": 2, "cpus": 1, "timeout": 120}
    outcome = run_search(parse_config(config), tmp_path / "run", progress=False,
                         address=two_node_cluster.address)
    assert outcome.evaluated == 8
    nodes = {n["NodeID"][:12] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
    from search.strategy import make_sampler, open_study

    study = open_study(name="cluster", storage=f"sqlite:///{tmp_path / 'run' / 'optuna.db'}",
                       sampler=make_sampler("nsga2", population=4, seed=0), objectives=2)
    used = {r["worker"].rpartition("@")[2] for r in finished_records(study, ["alpha", "beta"])}
    assert used == nodes, f"candidates ran on {used}, cluster nodes are {nodes}"
