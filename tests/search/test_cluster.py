"""A real two-node Ray cluster on loopback: candidates are evaluated on both nodes.

The cluster and the search run in a process of their own (tests/search/two_node.py).
"""

from __future__ import annotations

from search.testing.setting import search_config
from tests.search.two_node import run_two_node


def test_search_on_two_nodes(search_setting, tmp_path):
    config = search_config(search_setting, name="cluster",
                           strategy={"population": 4, "generations": 2})
    config["workers"] = {"count": 2, "cpus": 1, "timeout": 120}
    summary = run_two_node("search", config, tmp_path)
    assert not summary["hung"] and summary["error"] is None, summary
    assert summary["evaluated"] == 8
    assert len(summary["nodes"]) == 2
    assert summary["addresses"] == ["127.0.0.1"]
    assert summary["worker_nodes"] == summary["nodes"], "candidates did not run on both nodes"
