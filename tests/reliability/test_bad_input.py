"""Every bad input in cases.py: non-zero exit, one line naming the culprit and the fix,
no traceback, and no partial output."""

from __future__ import annotations

import re

import pytest

from merge3.cli import main
from search.testing.cases import CASES


@pytest.fixture(scope="module")
def ctx(llama_family, gpt2_family, search_setting) -> dict:
    return {"llama": llama_family, "gpt2": gpt2_family, "search": search_setting}


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_clearly(case, ctx, tmp_path, capsys):
    argv, output, pattern = case.build(tmp_path, ctx)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit code {code}; stderr: {err}"
    lines = [line for line in err.splitlines() if line.startswith("merge3: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "Fix:" in lines[0], lines[0]
    assert re.search(pattern, lines[0]), f"{pattern!r} not in: {lines[0]}"
    if output is not None:
        assert not output.exists(), f"partial output left at {output}"
        leftovers = [p.name for p in output.parent.iterdir()
                     if p.name.startswith(f".{output.name}")]
        assert not leftovers, leftovers
