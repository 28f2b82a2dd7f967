"""The test-size MiniLM zoo, built once per test session into a temporary MERGE3_HOME.

Set ``MERGE3_ZOO_TEST_HOME=DIR`` to build into (and reuse) ``DIR`` instead: the build is
cached by its recipe, so iterating on the tests then costs no rebuild.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def merge3_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    fixed = os.environ.get("MERGE3_ZOO_TEST_HOME")
    home = Path(fixed) if fixed else tmp_path_factory.mktemp("merge3_home")
    old = os.environ.get("MERGE3_HOME")
    os.environ["MERGE3_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MERGE3_HOME", None)
    else:
        os.environ["MERGE3_HOME"] = old


@pytest.fixture(scope="session")
def zoo(merge3_home: Path) -> Path:
    """The built test-size zoo (its default location under the session's MERGE3_HOME)."""
    from merge3.zoo.build import build_zoo

    return build_zoo("test", progress=False)
