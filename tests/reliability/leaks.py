"""What a search wrote to MLflow, as text, to look for machine paths and secrets in it.

Used by tests/search/test_search.py (paths and secrets of a local search) and
tests/reliability/test_safe_defaults.py (credentials in a tracking server's URI).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def secret_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables whose names say they hold a secret (values of 6+ chars)."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= 6}


def mlflow_texts(uri: str, experiment: str, parent_run_id: str, scratch: Path) -> list[str]:
    """Every text the search put in MLflow: the parent run's artifacts (downloaded into
    ``scratch``), and the params, tags, run names and metric names of every run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.download_artifacts(parent_run_id, "", str(scratch))
    texts = [p.read_text(errors="ignore") for p in scratch.rglob("*") if p.is_file()]
    found = client.get_experiment_by_name(experiment)
    for run in client.search_runs([found.experiment_id], max_results=50_000):
        texts.append(json.dumps({"name": run.info.run_name, "params": run.data.params,
                                 "tags": run.data.tags, "metrics": sorted(run.data.metrics)}))
    return texts
