"""Property tests (hypothesis): whatever a user's file holds, merge3's readers either read
it or raise a Merge3Error (one line naming the file and the fix) — never another
exception, which `merge3` would show as an internal error.

Fuzzed: response files (long CSV tables, lm-eval sample JSONL), recipes and search
configs (YAML text and raw bytes), and item banks (their bank.json and params.npz).
Examples are few (CI time; ``MERGE3_FUZZ_EXAMPLES=2000`` for a longer hunt); each run
draws new ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merge3.errors import Merge3Error

FUZZ = settings(max_examples=int(os.environ.get("MERGE3_FUZZ_EXAMPLES", "40")), deadline=None,
                database=None,  # no .hypothesis/ folder in the work tree
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _read(reader, name: str, content: str | bytes):
    """``reader(path)`` on a scratch file holding ``content``: a value or a Merge3Error."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            return reader(path)
        except Merge3Error as err:
            assert str(err).strip() and "\n" not in str(err).strip(), str(err)
            return err


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                       st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=6), st.sampled_from(["0", "1", "0.5", "m0", "q1"]))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


# -- response files ---------------------------------------------------------------------------
_cell = st.one_of(st.sampled_from(["m0", "m1", "q0", "q1", "t", "0", "1", "0.5", "-1", "2",
                                   "nan", "inf", "1e309", "", " ", '"', "abc", "None"]),
                  st.text(max_size=5))
_header = st.one_of(st.sampled_from(["model,item,score", "model,item,score,task",
                                     "model,item", "score,item,model", "model,model,score",
                                     "", "a,b,c"]), st.text(max_size=12))
_csv = st.builds(lambda header, rows: "\n".join([header, *rows]) + "\n", _header,
                 st.lists(st.lists(_cell, max_size=5).map(",".join), max_size=8))


@FUZZ
@given(_csv)
def test_fuzzed_long_tables(text):
    from irt.loaders import load_responses

    _read(load_responses, "responses.csv", text)


_sample = st.one_of(
    st.fixed_dictionaries({"doc_id": _json_leaf}, optional={
        "acc": _json_leaf, "exact_match": _json_leaf, "doc": _json, "target": _json,
        "filter": _json_leaf, "filtered_resps": _json}),
    _json)
_sample_line = st.one_of(_sample.map(json.dumps), st.text(max_size=20),
                         st.sampled_from(["", "{", "[]", "null", '{"doc_id": 0, "acc": '
                                          "\n"]))


@FUZZ
@given(st.lists(_sample_line, max_size=6).map("\n".join))
def test_fuzzed_lm_eval_samples(text):
    from irt.loaders import load_responses

    _read(load_responses, "samples_arc_2024-01-01T00-00-00.jsonl", text)


# -- recipes and search configs ---------------------------------------------------------------
_recipe_key = st.sampled_from(["merge_method", "base_model", "models", "parameters", "dtype",
                               "slices", "seed", "model", "weight", "density", "filter",
                               "value", "sources", "layer_range", "tokenizer_source",
                               "genome", "experts", "tasks", "strategy", "fitness",
                               "workers", "tracking", "population", "low", "high", "per"])
_recipe_value = st.recursive(
    _json_leaf | st.sampled_from(["ties", "linear", "tsv_m", "bfloat16", "float32", "model"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(_recipe_key | st.text(max_size=4), inner, max_size=4),
    max_leaves=12)
_yaml_text = st.one_of(
    st.dictionaries(_recipe_key, _recipe_value, max_size=6).map(yaml.safe_dump),
    _recipe_value.map(yaml.safe_dump),
    st.text(max_size=40))


@FUZZ
@given(st.one_of(_yaml_text, st.binary(max_size=40)))
def test_fuzzed_recipes(content):
    from merge3.recipe import load_recipe

    _read(load_recipe, "recipe.yaml", content)


@FUZZ
@given(st.one_of(_yaml_text, st.binary(max_size=40)))
def test_fuzzed_search_configs(content):
    from search.config import load_config

    _read(load_config, "search.yaml", content)


# -- item banks -------------------------------------------------------------------------------
def _header_change(header: dict):
    keys = st.sampled_from(sorted(header) + ["format", "metadata", "nonsense"])
    return st.one_of(
        st.tuples(st.just("set"), keys, _json),
        st.tuples(st.just("drop"), keys, st.none()),
        st.tuples(st.just("replace"), st.just(""), _json),
        st.tuples(st.just("text"), st.just(""), st.text(max_size=30)),
    )


_npz_change = st.one_of(st.none(), st.binary(max_size=64),
                        st.integers(0, 4000).map(lambda n: ("truncate", n)))


@FUZZ
@given(data=st.data())
def test_fuzzed_item_banks(search_setting, data):
    from irt.bank import load_bank

    source = search_setting["banks"] / "alpha"
    header = json.loads((source / "bank.json").read_text())
    kind, key, value = data.draw(_header_change(header))
    npz = data.draw(_npz_change)
    with tempfile.TemporaryDirectory() as scratch:
        bank = Path(scratch) / "bank"
        shutil.copytree(source, bank)
        changed = dict(header)
        if kind == "set":
            changed[key] = value
        elif kind == "drop":
            changed.pop(key, None)
        text = json.dumps(value) if kind == "replace" else (
            value if kind == "text" else json.dumps(changed))
        (bank / "bank.json").write_text(text)
        if isinstance(npz, bytes):
            (bank / "params.npz").write_bytes(npz)
        elif npz is not None:
            blob = (bank / "params.npz").read_bytes()
            (bank / "params.npz").write_bytes(blob[: npz[1]])
        try:
            load_bank(bank)
        except Merge3Error as err:
            assert "bank" in str(err), str(err)
