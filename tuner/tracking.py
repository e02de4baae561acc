"""MLflow logging from the Tune driver: one parent run per search, one nested run per trial.

Logging happens on the driver, inside a Tune callback, so workers need no route to the
tracking server and a trial's model comes from its checkpoint. Every epoch of a trial is
one `log_batch` request (all its metrics, step=epoch), not one request per value.

Resuming a search reuses the parent run (its id is kept in the search's state file) and
each trial's nested run (found by its `mixtune.trial_id` tag), so a resumed search never
duplicates runs and leaves none RUNNING.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ray import tune

from trainables.core.config import TrainConfig
from tuner.errors import UserError
from tuner.settings import SearchSettings

# MLflow's HTTP client retries for minutes by default; a search should fail fast instead
FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}

TRIAL_TAG = "mixtune.trial_id"
SEARCH_TAG = "mixtune.search"
ROLE_TAG = "mixtune.role"
NUMERIC_SKIP = {"training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid",
                "time_since_restore", "iterations_since_restore", "done", "seed"}


def redact_uri(uri: str) -> str:
    """Drop user:password from a URI before it is printed or logged."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return uri


class TrackingError(UserError):
    """The tracking URI cannot be used; one line naming it."""


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail within seconds, before any trial, when the tracking store cannot be reached."""
    scheme = urllib.parse.urlsplit(uri).scheme
    shown = redact_uri(uri)
    if scheme in ("http", "https"):
        parts = urllib.parse.urlsplit(uri)
        request = urllib.request.Request(shown.rstrip("/") + "/health")  # urllib cannot parse user:password@
        if parts.username or parts.password:
            import base64

            pair = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
            request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                if r.status != 200:
                    raise TrackingError(f"tracking URI {shown} answered /health with HTTP {r.status}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"tracking URI {shown} is unreachable ({reason})") from None
        return
    if scheme not in ("sqlite", "file", "postgresql", "mysql", "databricks", ""):
        raise TrackingError(f"tracking URI {shown}: unsupported scheme {scheme!r}")
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if not uri.startswith("sqlite:///") or not path:
            raise TrackingError(f"tracking URI {shown}: use sqlite:///<absolute path>")
        _check_writable_file(Path(path.split("?", 1)[0]), shown)
    if scheme in ("file", ""):
        _check_writable_file(Path(urllib.parse.urlsplit(uri).path if scheme else uri), shown, folder=True)


def _check_writable_file(path: Path, shown: str, folder: bool = False) -> None:
    """The store (a sqlite file or an mlruns folder) exists and is writable, or can be created."""
    import os

    if path.exists():
        if folder != path.is_dir() or not os.access(path, os.W_OK):
            what = "a writable folder" if folder else "a writable sqlite file"
            raise TrackingError(f"tracking URI {shown}: {path} is not {what}")
        return
    parent = path.parent
    if not parent.is_dir():
        raise TrackingError(f"tracking URI {shown}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrackingError(f"tracking URI {shown}: folder {parent} is not writable")


def client(uri: str):
    import os

    for k, v in FAST_FAIL_ENV.items():
        os.environ.setdefault(k, v)
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # mlflow resets it on import
    return MlflowClient(tracking_uri=uri)


def artifact_location(uri: str) -> str | None:
    """For a sqlite store, artifacts go beside the database (MLflow's default is ./mlruns of
    whatever folder the process runs in); other stores keep their server's default."""
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def experiment_id(mlflow_client, name: str, artifact_location: str | None = None) -> str:
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return mlflow_client.create_experiment(name, artifact_location=artifact_location)


def metrics_from_result(result: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite-or-nan metrics of a Tune result worth logging."""
    out = {}
    for k, v in result.items():
        if k in NUMERIC_SKIP or k.startswith("config") or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def _params(values: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, "None" if v is None else str(v)[:6000]) for k, v in values.items()]


# trials this driver has seen, by Tune trial id: lets the searcher record a trial's error
LIVE_TRIALS: dict[str, Any] = {}


def error_of(trial_id: str) -> str:
    """First line of a live trial's error (for the Optuna study), or 'unknown error'."""
    trial = LIVE_TRIALS.get(trial_id)
    return _trial_error(trial) if trial is not None else "unknown error"


def trial_runs(mlflow_client, settings: SearchSettings, status: str | None = None) -> list:
    """Every (not deleted) nested run of a search, optionally only those in one status."""
    query = f"tags.`{SEARCH_TAG}` = '{settings.name}' and tags.`{ROLE_TAG}` = 'trial'"
    if status:
        query += f" and attributes.status = '{status}'"
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([settings.experiment_id], filter_string=query, max_results=1000,
                                         page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def close_runs(mlflow_client, settings: SearchSettings, status: str, state: str) -> int:
    """Set every nested run of the search still RUNNING to `status` (tag state=`state`)."""
    runs = trial_runs(mlflow_client, settings, status="RUNNING")
    for run in runs:
        mlflow_client.set_tag(run.info.run_id, "state", state)
        mlflow_client.set_terminated(run.info.run_id, status=status)
    return len(runs)


class MLflowTrials(tune.Callback):
    """Tune callback: nested MLflow run per trial under the search's parent run."""

    def __init__(self, settings):
        self.settings = settings  # a SearchSettings: store, parent run, experiment, base config, metric
        self._client = None
        self._runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self._logged: dict[str, int] = {}  # run id -> last step logged before a resume
        self._plots = None  # one background thread drawing learning curves (see _finish)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks into its snapshot
        state = dict(self.__dict__)
        state["_client"] = None
        state["_plots"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.settings.tracking_uri)
        return self._client

    # ------------------------------------------------------------------ helpers
    def run_for(self, trial) -> str:
        """The trial's nested run: remembered, found by tag (after a resume) or created."""
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        s = self.settings
        found = self.client.search_runs(
            [s.experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial.trial_id}' and tags.`{SEARCH_TAG}` = '{s.name}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, "state", "RUNNING")
            # a resumed trial re-reports epochs logged before the driver stopped: log each once
            steps = [m.step for m in self.client.get_metric_history(run_id, "epoch")]
            self._logged[run_id] = max(steps, default=0)
        else:
            from trainables.trainable import trial_config

            cpus = trial.placement_group_factory.required_resources.get("CPU", 1)
            cfg = trial_config(s.base, trial.config, cpus)  # the config the trial runs
            from mlflow.entities import RunTag

            run = self.client.create_run(
                s.experiment_id,
                run_name=f"{trial.trial_id}",
                tags={
                    "mlflow.parentRunId": s.parent_run_id,
                    TRIAL_TAG: trial.trial_id,
                    SEARCH_TAG: s.name,
                    ROLE_TAG: "trial",
                    "method": cfg.method,
                    "dataset": cfg.dataset,
                    "labels": cfg.labels,
                    "state": "RUNNING",
                },
            )
            run_id = run.info.run_id
            searched = {k: v for k, v in trial.config.items() if k in TrainConfig.__dataclass_fields__}
            self.client.log_batch(
                run_id,
                params=_params(cfg.to_dict()),
                tags=[RunTag("mixtune.searched_params", ",".join(sorted(searched)))],
            )
        self._runs[trial.trial_id] = run_id
        return run_id

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_start(self, iteration, trials, trial, **info):
        LIVE_TRIALS[trial.trial_id] = trial
        self.run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import Metric, RunTag

        LIVE_TRIALS[trial.trial_id] = trial
        run_id = self.run_for(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if step <= self._logged.get(run_id, 0):
            return
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in metrics_from_result(result).items()]
        tags = [RunTag("node_id", str(result["node_id"]))] if "node_id" in result else []
        self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def _finish(self, trial, status: str, state: str, error: str | None = None) -> None:
        from mlflow.entities import RunTag

        run_id = self.run_for(trial)
        tags = [RunTag("state", state)]
        if error:
            tags.append(RunTag("error", error[:5000]))
        last = trial.last_result or {}
        epochs = self.settings.epochs
        if status == "FINISHED" and epochs and last.get("epoch", epochs) < epochs:
            tags = [RunTag("state", "STOPPED_EARLY")]
        self.client.log_batch(run_id, tags=tags)
        # drawing the figure costs about as much as Ray's whole per-trial overhead: do it on one
        # background thread so the next trial need not wait; on_experiment_end waits for it
        if getattr(self, "_plots", None) is None:  # None too in a callback pickled before it existed
            from concurrent.futures import ThreadPoolExecutor

            self._plots = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixtune-plots")
        self._plots.submit(self._learning_curve_quietly, run_id)
        self.client.set_terminated(run_id, status=status)

    def _learning_curve_quietly(self, run_id: str) -> None:
        try:
            self._learning_curve(run_id)
        except Exception:  # a plot must never fail a search
            pass

    def on_experiment_end(self, trials, **info):
        if getattr(self, "_plots", None) is not None:
            self._plots.shutdown(wait=True)
            self._plots = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "FINISHED", "COMPLETED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "FAILED", "FAILED", error=_trial_error(trial))

    def _learning_curve(self, run_id: str) -> None:
        from tuner.plots import learning_curve

        shown = dict.fromkeys(("train_loss", self.settings.metric, "test_acc"))  # ordered, no repeats
        history = {k: self.client.get_metric_history(run_id, k) for k in shown}
        series = {k: [(m.step, m.value) for m in v] for k, v in history.items() if v}
        if series:
            fig = learning_curve(series)
            self.client.log_figure(run_id, fig, "plots/learning_curve.png")
            import matplotlib.pyplot as plt

            plt.close(fig)


def _trial_error(trial) -> str:
    """First line of the trial's error (Ray writes the traceback to error.txt)."""
    import os

    path = getattr(trial, "error_file", None) or ""
    path = os.path.join(trial.local_path, "error.txt") if not path and getattr(trial, "local_path", None) else path
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        return lines[-1] if lines else "unknown error"
    except OSError:
        return "unknown error"

