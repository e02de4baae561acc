"""MLflow logging from the Tune driver: one parent run per search, one nested run per trial.

Logging happens on the driver, inside a Tune callback, so workers need no route to the
tracking server and a trial's model comes from its checkpoint. Every epoch of a trial is
one `log_batch` request (all its metrics, step=epoch), not one request per value. The
callback does not send them itself: it puts them in the search's outbox (`outbox.py`), and
one thread sends them, in order, and keeps them through an outage of the server.

Each trial's run is named after what it is (`mlflow_meta.run_name`), and each run, the
parent too, logs the search's dataset as an MLflow dataset input (`mlflow_meta`,
`mlflow_dataset.py`): both are ops of the outbox like every other write.

Resuming a search reuses the parent run (its id is kept in the search's state file) and
each trial's nested run (found by its `mixtune.trial_id` tag), so a resumed search never
duplicates runs and leaves none RUNNING.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray import tune

from trainables.core.config import TrainConfig
from tuner.errors import UserError
from tuner.tracking.mlflow_meta import LOCAL_UI, ROLE_TAG, SEARCH_TAG, TRIAL_TAG, dataset_record, runs_link, trial_run_name
from tuner.tracking.outbox import OUTBOX_FILE, Outbox
from tuner.settings import SearchSettings

# MLflow's HTTP client retries for minutes by default. A request should fail within seconds
# instead: the outbox retries an unreachable server for as long as the search allows. And no
# "View run ... at" line per run on stdout, amid the progress lines
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
              # nor its "Downloading artifacts" bars (the summary reads artifacts back to stay idempotent)
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

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

    for k, v in CLIENT_ENV.items():
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


@dataclass
class SearchState:
    """What one search holds in this driver while it runs, dropped when it ends (`end_search`).

    Tune pickles its callbacks and the searcher with the experiment and unpickles them on a
    restore, so they cannot be handed these objects: each finds its search's state by the
    search folder (`search_state`). Nothing outlives the search: a notebook that runs many
    searches keeps no trials or outboxes of earlier ones.
    """

    folder: str
    outbox: Outbox | None = None  # every MLflow write of the search (open_outbox)
    trials: dict[str, Any] = field(default_factory=dict)  # Tune trials seen, by id: their errors for the study
    progress: Any = None  # the search's Progress callback: what a stop line reports
    summary: str = "wait"  # "background": another process sends the summary (no prewarm of its imports here)


_SEARCHES: dict[str, SearchState] = {}  # search folder -> its state, while the search runs in this process


def search_state(folder: str | Path) -> SearchState:
    """The state of the search in `folder` (created on first use)."""
    key = str(folder)
    if key not in _SEARCHES:
        _SEARCHES[key] = SearchState(key)
    return _SEARCHES[key]


def error_of(folder: str | Path, trial_id: str) -> str:
    """First line of a trial's error as this driver saw it (for the Optuna study), or 'unknown error'."""
    trial = search_state(folder).trials.get(trial_id)
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


# ----------------------------------------------------------------------------- writes
class Writer:
    """Carries out the outbox's ops against MLflow, on the outbox's thread (see `outbox.py`).

    Each op can be carried out twice without changing anything, since after an outage or a
    killed driver it may be: a trial's run is found by its tags before one is created, a
    metrics op whose step the run already has is skipped, and tags, params with the same
    value and a run's end status can be set again.
    """

    def __init__(self, settings: SearchSettings, summary: Callable[[dict[str, Any]], None] | None = None):
        self.settings = settings
        self.summary = summary  # carries out a "summary" op; None drops it (a resume writes a new one)
        self._client = None
        self.runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self.steps: dict[str, int] = {}  # run id -> last step the server has

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.settings.tracking_uri)
        return self._client

    def __call__(self, op: dict[str, Any]) -> None:
        getattr(self, f"_op_{op['op']}")(op)

    def _find(self, trial_id: str):
        s = self.settings
        found = self.client.search_runs(
            [s.experiment_id],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`{SEARCH_TAG}` = '{s.name}'",
            max_results=1,
        )
        return found[0] if found else None

    def _run_id(self, trial_id: str) -> str | None:
        """The trial's run (looked up once by its tags); None when it has none."""
        if trial_id not in self.runs:
            run = self._find(trial_id)
            if run is None:
                return None
            self._remember(run)
        return self.runs[trial_id]

    def _remember(self, run) -> None:
        run_id = run.info.run_id
        self.runs[run.data.tags[TRIAL_TAG]] = run_id
        # a resumed or replayed trial re-reports epochs the run has: each is logged once
        self.steps[run_id] = max((m.step for m in self.client.get_metric_history(run_id, "epoch")), default=0)

    # ------------------------------------------------------------------ ops
    def _op_trial(self, op) -> None:
        """The trial's nested run: found by its tags (a resumed or replayed trial) or created."""
        from mlflow.entities import RunTag

        run = self._find(op["trial"])
        if run is not None:
            self._remember(run)
            self.client.update_run(run.info.run_id, status="RUNNING")
            self.client.set_tag(run.info.run_id, "state", "RUNNING")
            if run.data.params:
                return
            run_id = run.info.run_id  # created, but its params never got there
        else:
            # an op an older driver left has no name: the trial id, as runs were named then
            run_id = self.client.create_run(self.settings.experiment_id, run_name=op.get("name", op["trial"]),
                                            tags=op["tags"]).info.run_id
            self.runs[op["trial"]] = run_id
            self.steps[run_id] = 0
        self.client.log_batch(run_id, params=_params(op["params"]),
                              tags=[RunTag("mixtune.searched_params", op["searched"])])

    def _op_metrics(self, op) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._run_id(op["trial"])
        if run_id is None or op["step"] <= self.steps.get(run_id, 0):
            return
        metrics = [Metric(k, float(v), op["time"], op["step"]) for k, v in op["metrics"].items()]
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in op["tags"].items()])
        self.steps[run_id] = op["step"]

    def _op_tags(self, op) -> None:
        from mlflow.entities import RunTag

        run_id = self._run_id(op["trial"])
        if run_id is not None:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])

    def _op_end(self, op) -> None:
        self._op_tags(op)
        run_id = self._run_id(op["trial"])
        if run_id is not None:
            self.client.set_terminated(run_id, status=op["status"])

    def _op_curve(self, op) -> None:
        from tuner.tracking.outbox import is_outage

        run_id = self._run_id(op["trial"])
        if run_id is None:
            return
        try:
            self._learning_curve(run_id)
        except Exception as e:  # a plot must never fail a search; an outage retries it
            if is_outage(e):
                raise

    def _op_dataset(self, op) -> None:
        """The run's dataset input (the parent's when the op names no trial); logging it again adds none."""
        from tuner.tracking.mlflow_dataset import dataset_input

        run_id = self._run_id(op["trial"]) if op.get("trial") else self.settings.parent_run_id
        if run_id is not None:
            self.client.log_inputs(run_id, datasets=[dataset_input(op["dataset"], op.get("context", "training"))])

    def _op_close(self, op) -> None:
        close_runs(self.client, self.settings, status=op["status"], state=op["state"])

    def _op_parent(self, op) -> None:
        if op["status"] == "RUNNING":
            self.client.update_run(self.settings.parent_run_id, status="RUNNING")
        else:
            self.client.set_terminated(self.settings.parent_run_id, status=op["status"])

    def _op_summary(self, op) -> None:
        if self.summary is not None:
            self.summary(op)

    def _learning_curve(self, run_id: str) -> None:
        from tuner.tracking.plots import learning_curve

        shown = dict.fromkeys(("train_loss", self.settings.metric, "test_acc"))  # ordered, no repeats
        history = {k: self.client.get_metric_history(run_id, k) for k in shown}
        series = {k: [(m.step, m.value) for m in v] for k, v in history.items() if v}
        if series:
            fig = learning_curve(series)
            try:
                self.client.log_figure(run_id, fig, "plots/learning_curve.png")
            finally:
                import matplotlib.pyplot as plt

                plt.close(fig)


def open_outbox(settings: SearchSettings, echo: Callable[[str], None] = print, writer: Writer | None = None) -> Outbox:
    """The search's outbox, opened once per driver; it sends first what an earlier driver left."""
    state = search_state(settings.folder)
    if state.outbox is None:
        state.outbox = Outbox(settings.folder / OUTBOX_FILE, writer or Writer(settings),
                              where=redact_uri(settings.tracking_uri), echo=echo,
                              limit=settings.tracking_outage_limit)
    return state.outbox


def end_search(settings: SearchSettings) -> int:
    """Drop the search's state and stop its outbox; returns how many writes stay in the outbox's
    file for `mixtune sync`."""
    state = _SEARCHES.pop(str(settings.folder), None)
    return state.outbox.close() if state is not None and state.outbox is not None else 0


class MLflowTrials(tune.Callback):
    """Tune callback: a nested MLflow run per trial under the search's parent run.

    It only puts ops in the search's outbox (`open_outbox`), which returns at once: the Tune
    loop never waits for MLflow, and an unreachable server holds up no trial.
    """

    def __init__(self, settings):
        self.settings = settings  # a SearchSettings: store, parent run, experiment, base config, metric
        self._opened: set[str] = set()  # trials whose run op was put by this driver
        self._last: dict[str, int] = {}  # trial id -> last step put by this driver

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the Tuner
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])

    @property
    def outbox(self) -> Outbox:
        if search_state(self.settings.folder).outbox is None:
            self.settings.folder.mkdir(parents=True, exist_ok=True)
        return open_outbox(self.settings)

    def _open(self, trial) -> None:
        if trial.trial_id in self._opened:
            return
        from trainables.trainable import trial_config

        s = self.settings
        cpus = trial.placement_group_factory.required_resources.get("CPU", 1)
        cfg = trial_config(s.base, trial.config, cpus)  # the config the trial runs
        searched = sorted(k for k in trial.config if k in TrainConfig.__dataclass_fields__)
        self.outbox.put({
            "op": "trial", "trial": trial.trial_id, "name": trial_run_name(s.base, trial.config, trial.trial_id),
            "tags": {"mlflow.parentRunId": s.parent_run_id, TRIAL_TAG: trial.trial_id, SEARCH_TAG: s.name,
                     ROLE_TAG: "trial", "method": cfg.method, "dataset": cfg.dataset, "labels": cfg.labels,
                     "state": "RUNNING"},
            "params": {k: "None" if v is None else str(v)[:6000] for k, v in cfg.to_dict().items()},
            "searched": ",".join(searched),
        })
        if s.data:
            record = dataset_record(s.data, cfg.to_dict())
            self.outbox.put({"op": "dataset", "trial": trial.trial_id, "dataset": record})
        self._opened.add(trial.trial_id)

    # ------------------------------------------------------------------ Tune hooks
    def setup(self, **info):
        """The parent run's dataset input, as the search (re)starts."""
        if self.settings.data:
            self.outbox.put({"op": "dataset", "dataset": dataset_record(self.settings.data, self.settings.base)})

    def on_trial_start(self, iteration, trials, trial, **info):
        search_state(self.settings.folder).trials[trial.trial_id] = trial
        self._open(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from tuner.tracking.prewarm import prewarm

        state = search_state(self.settings.folder)
        if state.summary == "wait":
            prewarm()  # the summary's imports, on a thread, from the first result on (once)
        state.trials[trial.trial_id] = trial
        self._open(trial)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if step <= self._last.get(trial.trial_id, 0):
            return  # a restored trial re-reports its checkpoint's epoch
        self._last[trial.trial_id] = step
        tags = {"node_id": str(result["node_id"])} if "node_id" in result else {}
        self.outbox.put({"op": "metrics", "trial": trial.trial_id, "step": step, "time": int(time.time() * 1000),
                         "metrics": metrics_from_result(result), "tags": tags})

    def on_trial_recover(self, iteration, trials, trial, **info):
        from tuner.faults import node_losses

        if node_losses(trial):
            self._open(trial)
            self.outbox.put({"op": "tags", "trial": trial.trial_id, "tags": {"node_losses": str(node_losses(trial))}})

    def _finish(self, trial, status: str, state: str, error: str | None = None) -> None:
        self._open(trial)
        tags = {"state": state}
        if error:
            tags["error"] = error[:5000]
        last = trial.last_result or {}
        epochs = self.settings.epochs
        if status == "FINISHED" and epochs and last.get("epoch", epochs) < epochs:
            tags = {"state": "STOPPED_EARLY"}
        self.outbox.put({"op": "end", "trial": trial.trial_id, "status": status, "tags": tags})
        self.outbox.put({"op": "curve", "trial": trial.trial_id})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "FINISHED", "COMPLETED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "FAILED", "FAILED", error=_trial_error(trial))


def ui_lines(settings: SearchSettings) -> list[str]:
    """How to open the search in MLflow's UI: the runs table, this search's runs only, best first.

    A database store has no server: the first line is the `mlflow ui` command, and the link is
    where it serves. Printed links never carry user:password.
    """
    uri = settings.tracking_uri or ""
    shown = redact_uri(uri)
    local = uri.startswith(("sqlite:", "file:", "postgresql:", "mysql:"))
    ui = LOCAL_UI if local else shown
    link = None
    if settings.experiment_id is not None and ui.startswith(("http://", "https://")):
        link = runs_link(ui, settings.experiment_id, settings.name, settings.metric or "", settings.mode or "")
    lines = []
    if local:
        lines.append(f"MLflow UI:    mlflow ui --backend-store-uri {shown} --host 127.0.0.1  "
                     f"(then open {'the runs link' if link else LOCAL_UI})")
    elif link is None:  # not a server this link fits (databricks): the store and the experiment
        lines.append(f"MLflow UI:    {shown}  (experiment '{settings.experiment}')")
    if link:
        lines.append(f"MLflow runs:  {link}")
    return lines


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

