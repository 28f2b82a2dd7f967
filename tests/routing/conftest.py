"""MASS over the test-size zoo (two MiniLM experts), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluators import load_tasks
from evaluators.mass import MassEvaluator


@pytest.fixture(scope="session")
def zoo_tasks(zoo: Path) -> list[str]:
    return sorted(p.name.removeprefix("expert-") for p in (zoo / "models").glob("expert-*"))


@pytest.fixture(scope="session")
def mass_evaluator(zoo: Path, zoo_tasks: list[str]) -> MassEvaluator:
    """MASS with the paper's defaults over the zoo's base and experts."""
    experts = {t: zoo / "models" / f"expert-{t}" for t in zoo_tasks}
    return MassEvaluator.from_pretrained(zoo / "models" / "base", experts)


@pytest.fixture(scope="session")
def test_items(zoo: Path) -> list:
    """Every test item of every zoo task (100 per task)."""
    return [item for task in load_tasks([zoo / "tasks"]) for item in task.items]


@pytest.fixture(scope="session")
def evaluated(mass_evaluator: MassEvaluator, test_items: list) -> tuple[list, object]:
    """MASS's results on every test item, and the routing of the first pass."""
    results = mass_evaluator.evaluate(test_items)
    return results, mass_evaluator.last_routing
