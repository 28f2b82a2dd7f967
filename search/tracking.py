"""MLflow tracking of a search: one parent run, one nested run per candidate.

The Optuna study is the source of truth (every finished candidate's genome, estimates,
standard errors and parents are stored on its trial); MLflow is a view of it that can
always be rebuilt. Each candidate is logged once, keyed by its trial number, so
logging after a resume is idempotent, a run a killed driver left RUNNING is completed
from the study (tagged ``merge3.reconciled``; marked KILLED if its trial is not finished),
and a tracking server that was unreachable is caught up later.

Candidate run: params = genome genes; metrics = ``est/<task>``, ``stderr/<task>``,
``items_evaluated``, ``wall_seconds``; tags = ``merge3.trial``, ``merge3.generation``,
``merge3.parents`` (trial numbers) and ``merge3.parent_runs`` (their run ids).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from merge3.errors import Merge3Error
from search.faults import kill_point
from search.portable import redact_credentials
from search.records import TrialRecord

__all__ = ["Tracker", "TrackingError"]

log = logging.getLogger("merge3.search")

# MLflow 3's UI opens an experiment in its GenAI view (traces) unless the experiment says
# it is model development: a search's runs are, so the UI opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class TrackingError(Merge3Error):
    """MLflow could not be reached and the backlog could not be written."""


class Tracker:
    def __init__(self, uri: str, experiment: str, run_dir: Path) -> None:
        import os

        # fail fast on an unreachable server (the backlog retries later) instead of
        # MLflow's default of minutes of retries per call
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # MLflow prints "View run ... at: <tracking URI>" per finished run: one line per
        # candidate, and the URI's password with it
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.run_dir = run_dir
        self.experiment_name = experiment
        self._backlog: list[Callable[[], Any]] = []
        self._warned = False
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._trial_runs: dict[int, str] = {}
        self._unfinished: dict[int, str] = {}  # trial -> run a kill left RUNNING

    # -- robustness: a down tracking server must not stop the search ------------------------
    def _call(self, action: Callable[[], Any]) -> Any:
        self.flush()
        if self._backlog:
            self._backlog.append(action)
            return None
        try:
            return action()
        except Exception as err:
            self._backlog.append(action)
            if not self._warned:
                log.warning("MLflow at %s is unreachable (%s); the search goes on and logging "
                            "catches up when it is back.", redact_credentials(self.uri),
                            redact_credentials(str(err).splitlines()[0]))
                self._warned = True
            return None

    def flush(self) -> bool:
        """Retry queued logging; True when nothing is left."""
        while self._backlog:
            try:
                self._backlog[0]()
            except Exception:
                return False
            self._backlog.pop(0)
        self._warned = False
        return True

    def close(self, *, wait: float = 0.0) -> None:
        deadline = time.monotonic() + wait
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(1.0)
        if self._backlog:
            raise TrackingError(
                f"{len(self._backlog)} MLflow logging calls could not reach "
                f"{redact_credentials(self.uri)}.",
                fix="the search results are safe in the Optuna study; rerun with --resume "
                "once the tracking server is back to log them.",
            )

    # -- the search run -----------------------------------------------------------------------
    def start(self, name: str, params: dict[str, Any], tags: dict[str, str],
              resume_run_id: str | None = None) -> str | None:
        def action() -> str:
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                # a local store keeps artifacts in the run directory; a tracking server
                # keeps them where it serves them from (the driver's disk may be another
                # machine's, and the UI could not show the fronts)
                local = self.uri.split(":", 1)[0] in ("sqlite", "file") or "://" not in self.uri
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name,
                    artifact_location=((self.run_dir / "mlartifacts").resolve().as_uri()
                                       if local else None),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            else:
                self.experiment_id = experiment.experiment_id
                if EXPERIMENT_KIND_TAG not in experiment.tags:  # a user's own kind stays
                    self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG,
                                                   EXPERIMENT_KIND)
            if resume_run_id:
                self.parent_run_id = resume_run_id
                self.client.update_run(resume_run_id, status="RUNNING")
            else:
                run = self.client.create_run(self.experiment_id, run_name=name,
                                             tags={"merge3.kind": "search", **tags})
                self.parent_run_id = run.info.run_id
                self.client.log_batch(self.parent_run_id, params=_params(params))
            self._index_existing()
            return self.parent_run_id

        return self._call(action)

    def _index_existing(self) -> None:
        """Map trial numbers to runs already logged; note the runs a kill left RUNNING
        (their logging is completed by :meth:`log_candidate`, see :meth:`reconcile`)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}'",
            max_results=50_000,
        )
        for run in runs:
            trial = run.data.tags.get("merge3.trial")
            if trial is None:
                continue
            if run.info.status == "RUNNING":
                self.client.set_tag(run.info.run_id, "merge3.reconciled",
                                    "killed mid-log; completed from the study on resume")
                self._unfinished.setdefault(int(trial), run.info.run_id)
                continue
            self._trial_runs.setdefault(int(trial), run.info.run_id)

    def reconcile(self) -> list[int]:
        """Mark KILLED the runs a kill left RUNNING whose trial :meth:`log_candidate` did not
        complete (a trial the study does not hold as finished); their trial numbers."""
        left = sorted(self._unfinished)
        for trial in left:
            run_id = self._unfinished.pop(trial)

            def action(run_id=run_id) -> None:
                self.client.set_tag(run_id, "merge3.reconciled",
                                    "killed mid-log; its trial is not finished in the study")
                self.client.set_terminated(run_id, status="KILLED")

            self._call(action)
        return left

    def _find_trial_run(self, trial: int) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.mlflow.parentRunId = '{self.parent_run_id}' and "
                           f"tags.`merge3.trial` = '{trial}'"))
        return runs[0].info.run_id if runs else None

    def run_id(self, trial: int) -> str | None:
        return self._trial_runs.get(trial)

    def log_candidate(self, record: TrialRecord) -> None:
        """Log one finished or failed candidate (idempotent: once per trial)."""
        trial = record.number
        if trial in self._trial_runs:
            return

        retried = [False]

        def action() -> None:
            if trial in self._trial_runs:
                return
            from mlflow.entities import Metric, RunTag

            # a run a kill left RUNNING, or one a failed call created anyway: complete it
            existing = self._unfinished.pop(trial, None) or (
                self._find_trial_run(trial) if retried[0] else None)
            retried[0] = True

            parents = list(record.parents)
            tags = {
                "mlflow.parentRunId": self.parent_run_id,
                "merge3.trial": str(trial),
                "merge3.generation": "" if record.generation is None else str(record.generation),
                "merge3.parents": json.dumps(parents),
                "merge3.parent_runs": json.dumps(
                    [self._trial_runs.get(p, "") for p in parents]),
                "merge3.worker": record.worker,
            }
            if record.failures:
                tags["merge3.failed_attempts"] = json.dumps(list(record.failures))[:5000]
            if record.error:
                tags["merge3.error"] = str(record.error)[:500]
            run_id = existing or self.client.create_run(
                self.experiment_id, run_name=f"trial-{trial}", tags=tags).info.run_id
            kill_point("log")
            now = int(time.time() * 1000)
            metrics = [Metric(f"est/{k}", float(v), now, 0) for k, v in record.estimates.items()]
            metrics += [Metric(f"stderr/{k}", float(v), now, 0)
                        for k, v in record.stderr.items()]
            for key in ("items_evaluated", "wall_seconds", "mean_estimate"):
                value = getattr(record, key)
                if value is not None:
                    metrics.append(Metric(key, float(value), now, 0))
            self.client.log_batch(run_id, metrics=metrics, params=_params(record.genome),
                                  tags=[RunTag("merge3.state", record.state)])
            status = "FAILED" if record.state == "FAIL" else "FINISHED"
            self.client.set_terminated(run_id, status=status)
            self._trial_runs[trial] = run_id

        self._call(action)

    def log_trial_metrics(self, trial: int, metrics: Mapping[str, float]) -> bool:
        """Add ``metrics`` to the run of candidate ``trial`` (False: it has no run yet)."""
        run_id = self._trial_runs.get(trial)
        if run_id is None:
            return False
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._call(lambda: self.client.log_batch(run_id, metrics=[
            Metric(k, float(v), now, 0) for k, v in metrics.items()]))
        return True

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call(lambda: self.client.log_artifact(self.parent_run_id, str(path),
                                                     artifact_path))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._call(lambda: self.client.log_batch(
            self.parent_run_id, metrics=[Metric(k, float(v), now, step)
                                         for k, v in metrics.items()]))

    def finish(self, status: str = "FINISHED") -> None:
        self._call(lambda: self.client.set_terminated(self.parent_run_id, status=status))


def _params(values: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(str(k)[:250], str(v)[:6000]) for k, v in values.items()]
