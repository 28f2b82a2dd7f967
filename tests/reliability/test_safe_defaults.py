"""Safe defaults: pickle refused unless opted in, a model's own code run only when asked,
every server merge3 starts on 127.0.0.1, no credentials or secrets written to MLflow."""

from __future__ import annotations

import ast
import ipaddress
import json
import shutil
import socket
from pathlib import Path

import psutil
import pytest
import yaml

from merge3.checkpoints import Checkpoint
from merge3.cli import main
from search.testing import cases
from search.testing.setting import search_config
from tests.reliability.leaks import mlflow_texts

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ["merge3", "evaluators", "search", "irt"]
MARKER_ENV = "MERGE3_TEST_REMOTE_CODE_MARKER"


# -- pickle ---------------------------------------------------------------------------------
def test_pickle_refusal_is_a_bad_input_case():
    """The refusal itself runs in test_bad_input.py (exit 2, names --allow-pickle)."""
    case = next(c for c in cases.CASES if c.name == "pickle weights without opt-in")
    assert case.area == "checkpoint"


def test_pickle_opt_in_merges_the_same_as_safetensors(llama_family, tmp_path):
    ctx = {"llama": llama_family}
    pickled = cases._pickle_only(tmp_path, ctx)
    assert not list(pickled.glob("*.safetensors"))
    recipe = cases._recipe(tmp_path, cases._ta(ctx, pickled), "pickled.yaml")
    assert main(["merge", str(recipe), str(tmp_path / "from_pickle"), "-q",
                 "--allow-pickle"]) == 0
    reference = cases._recipe(tmp_path, cases._ta(ctx, llama_family["expert_1"]), "ref.yaml")
    assert main(["merge", str(reference), str(tmp_path / "from_safetensors"), "-q"]) == 0
    got = Checkpoint(tmp_path / "from_pickle").state_dict()
    want = Checkpoint(tmp_path / "from_safetensors").state_dict()
    assert sorted(got) == sorted(want)
    assert all(got[name].equal(want[name]) for name in want)


# -- a model's own code (trust_remote_code) -------------------------------------------------
_CONFIGURATION = '''
from transformers import BertConfig


class CustomBertConfig(BertConfig):
    model_type = "merge3_custom_bert"
'''

_MODELING = '''
import os

from transformers import BertModel

from .configuration_custom import CustomBertConfig

if os.environ.get("MERGE3_TEST_REMOTE_CODE_MARKER"):  # proof that this file ran
    with open(os.environ["MERGE3_TEST_REMOTE_CODE_MARKER"], "a") as marker:
        marker.write("modeling_custom ran\\n")


class CustomBertModel(BertModel):
    config_class = CustomBertConfig
'''


@pytest.fixture
def custom_code_model(search_setting, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """The search setting's base encoder, re-declared as an architecture transformers lacks:
    its config asks (auto_map) for the classes in its own .py files."""
    model = tmp_path / f"custom_code_{tmp_path.name}"
    shutil.copytree(search_setting["base"], model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="merge3_custom_bert", architectures=["CustomBertModel"],
                  auto_map={"AutoConfig": "configuration_custom.CustomBertConfig",
                            "AutoModel": "modeling_custom.CustomBertModel"})
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_custom.py").write_text(_CONFIGURATION)
    (model / "modeling_custom.py").write_text(_MODELING)
    marker = tmp_path / "remote_code_ran.txt"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    return model, marker


def _eval(model: Path, task: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", str(model), "--tasks", str(task), "--limit", "8", "--no-progress",
            "--log-samples", str(out), "--model-name", "m", *extra]


def test_model_code_refused_without_the_flag(custom_code_model, search_setting, tmp_path,
                                            capsys):
    model, marker = custom_code_model
    code = main(_eval(model, search_setting["tasks"]["alpha"], tmp_path / "logs"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "config.json asks to run Python code" in err
    assert "modeling_custom.CustomBertModel" in err and "--trust-remote-code" in err
    assert not marker.exists()  # transformers never imported the model's code
    assert not (tmp_path / "logs").exists()


def test_search_refuses_a_base_with_model_code(custom_code_model, search_setting, tmp_path,
                                              capsys):
    model, marker = custom_code_model
    config = search_config(search_setting, name="custom-code", base_model=str(model))
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    code = main(["search", str(tmp_path / "search.yaml"), "--run-dir", str(tmp_path / "run"),
                 "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "trust_remote_code: true" in err, err
    assert not (tmp_path / "run").exists() and not marker.exists()


def test_the_flag_reaches_transformers(custom_code_model, search_setting, tmp_path):
    """With --trust-remote-code the model's own class is built (its file ran) and, being
    BERT underneath, it scores every item exactly as the plain base does."""
    from search.config import EvaluationSpec
    from search.workers import WorkerSpec

    model, marker = custom_code_model
    task = search_setting["tasks"]["alpha"]
    assert main(_eval(model, task, tmp_path / "custom", "--trust-remote-code")) == 0
    assert marker.read_text().startswith("modeling_custom ran")
    assert main(_eval(search_setting["base"], task, tmp_path / "plain")) == 0
    custom = (tmp_path / "custom" / "m" / "samples_alpha.jsonl").read_text().splitlines()
    plain = (tmp_path / "plain" / "m" / "samples_alpha.jsonl").read_text().splitlines()
    assert len(custom) == 8
    assert [(json.loads(x)["item"], json.loads(x)["prediction"]) for x in custom] == [
        (json.loads(x)["item"], json.loads(x)["prediction"]) for x in plain]
    # the search's workers get it from `evaluation.trust_remote_code`
    spec = WorkerSpec(str(model), {}, {},
                      evaluation=EvaluationSpec(device="cpu", trust_remote_code=True))
    assert type(spec.make_evaluator().model).__name__ == "CustomBertModel"


def _library_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for package in LIBRARY:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            calls += [(f"{path.relative_to(ROOT)}:{node.lineno}", node)
                      for node in ast.walk(tree) if isinstance(node, ast.Call)]
    return calls


def _name(func: ast.expr) -> str:
    return ast.unparse(func)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_no_load_runs_model_code_or_unpickles_by_default():
    """Static: every transformers Auto*.from_pretrained and vLLM LLM(...) in merge3/,
    evaluators/, search/, irt/ passes trust_remote_code explicitly and never a literal
    True; torch.load only with weights_only=True; no np.load(allow_pickle=True), no pickle."""
    loads, problems = [], []
    for where, call in _library_calls():
        name = _name(call.func)
        remote = _keyword(call, "trust_remote_code")
        if isinstance(remote, ast.Constant) and remote.value is True:
            problems.append(f"{where}: {name}(trust_remote_code=True)")
        if (name.endswith(".from_pretrained") and name.split(".")[-2].startswith("Auto")) or \
                name in ("LLM", "vllm.LLM"):
            loads.append(where)
            if remote is None:
                problems.append(f"{where}: {name} without an explicit trust_remote_code")
        if name == "torch.load":
            weights_only = _keyword(call, "weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                problems.append(f"{where}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            allow = _keyword(call, "allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and not allow.value):
                problems.append(f"{where}: np.load with allow_pickle")
        if name in ("pickle.load", "pickle.loads", "joblib.load"):
            problems.append(f"{where}: {name}")
    assert len(loads) >= 7, loads  # the scan sees the loaders (evaluators, zoo, routing)
    assert not problems, problems


# -- servers on 127.0.0.1 ---------------------------------------------------------------------
def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_local_ray_binds_only_loopback(ray_local):
    """The Ray merge3 starts (search.workers.init_ray, as the session's `ray_local`): its
    node on 127.0.0.1, and every socket any of its processes listens on is loopback."""
    nodes = ray_local.nodes()
    assert nodes and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    listening = []
    for process in processes:
        try:
            listening += [(process.name(), c.laddr.ip, c.laddr.port)
                          for c in process.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # Ray's servers were found
    assert [entry for entry in listening if not _loopback(entry[1])] == []


def test_server_commands_bind_loopback():
    """Static: a process merge3 starts that serves (mlflow, ray, --host/--port) binds
    127.0.0.1 (today there is none: merge3 starts no server besides Ray), and the MLflow
    UI commands it prints say --host 127.0.0.1."""
    started = []
    for where, call in _library_calls():
        name = _name(call.func)
        if name.startswith("subprocess.") or name in ("Popen", "os.system", "os.execvp"):
            text = ast.unparse(call)
            if any(word in text for word in ("mlflow", "ray", "--host", "--port", "serve")):
                started.append((where, "127.0.0.1" in text))
    assert all(ok for _, ok in started), started
    printed = []
    for package in LIBRARY:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for number, line in enumerate(lines):
                if "mlflow ui" in line or "mlflow server" in line:
                    statement = " ".join(lines[number:number + 2])
                    printed.append((f"{path.relative_to(ROOT)}:{number + 1}",
                                    "--host 127.0.0.1" in statement))
    assert len(printed) >= 2 and all(ok for _, ok in printed), printed


# -- credentials and secrets in MLflow --------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tracking_uri_credentials_and_env_secrets_stay_out_of_mlflow(
        search_setting, ray_local, tmp_path, capsys, monkeypatch):
    """A search logging to a server through http://user:password@host: the password is in
    no artifact, param, tag or printed line; nor is a secret from the environment."""
    from tests.mlflow_server import start_mlflow, stop_mlflow

    password, token = "hunter2-merge3-password", "tok-merge3-env-secret-91c"
    monkeypatch.setenv("MERGE3_TEST_SECRET_KEY", token)
    port = _free_port()
    server = start_mlflow(port, tmp_path / "server.db")
    try:
        uri = f"http://merge3:{password}@127.0.0.1:{port}"
        config = search_config(search_setting, name="credentials",
                               strategy={"population": 2, "generations": 1},
                               tracking={"uri": uri})
        (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
        run_dir = tmp_path / "run"
        assert main(["search", str(tmp_path / "search.yaml"), "--run-dir", str(run_dir),
                     "-q"]) == 0
        printed = capsys.readouterr()
        state = json.loads((run_dir / "search_state.json").read_text())
        texts = mlflow_texts(f"http://127.0.0.1:{port}", "credentials",
                             state["parent_run_id"], tmp_path / "artifacts")
    finally:
        stop_mlflow(server)
    config_artifact = next((tmp_path / "artifacts").rglob("config.yaml")).read_text()
    assert f"merge3:***@127.0.0.1:{port}" in config_artifact  # logged, redacted
    leaks = [t[:200] for t in [*texts, printed.out, printed.err]
             if password in t or token in t]
    assert leaks == []
    assert str(tmp_path) not in "".join(texts)
