"""Assemble and run a search: Ray Tune + OptunaSearch (TPE) + ASHA, logged to MLflow.

Order matters: everything a user can get wrong (config, space, data files, tracking URI,
Ray address, results folder) is checked first; only then is the results folder created,
the MLflow parent run opened and Ray started, so a bad input leaves nothing behind.

A search's folder (`<results_dir>/<name>/`) holds `mixtune.json` (its settings, enough to
resume it), `optuna.db` (the study: resumable, open it with optuna-dashboard), Ray Tune's
experiment state and trial checkpoints (unless `--storage-path` sends those elsewhere), and
`best_config.yaml` once it finishes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import socket
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from search_spaces.presets import PRESETS, SpaceContext, get_preset
from search_spaces.yaml_space import SpaceError, space_from_dict
from trainables.core.clustering import default_cache_dir
from trainables.core.config import ConfigError, TrainConfig, write_text_atomic
from trainables.core.data import Dataset, load_dataset
from tuner.errors import UserError

STATE_FILE = "mixtune.json"
STUDY_FILE = "optuna.db"
BEST_FILE = "best_config.yaml"
# what a trial reports each epoch that a search may optimise (fit's per-epoch metrics)
SEARCHABLE_METRICS = ("test_acc", "test_ece", "train_loss", "noise_rate", "pair_impurity")


class SearchError(UserError):
    """A search that cannot start or that ended with every trial failed; one line."""


@dataclass
class SearchSettings:
    """Everything that defines a search; saved as mixtune.json so `resume` needs nothing else."""

    name: str
    space: str  # a preset name or the path of a YAML space file
    base: dict[str, Any]  # the TrainConfig every trial starts from (searched values go on top)
    space_doc: Any = None  # the parsed YAML space, kept so a resume does not need the file
    metric: str = "test_acc"
    mode: str = "max"
    num_samples: int = 16
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    grace_period: int = 2
    reduction_factor: int = 3
    max_failures: int = 0
    results_dir: str = "mixtune-results"
    storage_path: str | None = None  # Ray Tune storage (shared folder or s3://...); default results_dir
    tracking_uri: str | None = None  # default: sqlite in the working folder
    experiment: str = "mixtune"
    address: str | None = None  # join a running Ray cluster (auto, host:port, ray://...)
    num_cpus: int | None = None  # CPUs of a local Ray runtime (default: all)
    seed: int = 0  # the TPE sampler's seed
    register_model: str | None = None  # register the best model under this name
    checkpoint_every: int = 1
    # filled in when the search is created
    parent_run_id: str | None = None
    experiment_id: str | None = None
    created: float = field(default_factory=time.time)

    # ------------------------------------------------------------------ derived
    @property
    def folder(self) -> Path:
        return Path(self.results_dir).resolve() / self.name

    @property
    def ray_storage(self) -> str:
        return self.storage_path or str(Path(self.results_dir).resolve())

    @property
    def study_name(self) -> str:
        return f"mixtune-{self.name}"  # unique per search: Optuna merges studies of one name

    @property
    def study_storage(self) -> str:
        return f"sqlite:///{self.folder / STUDY_FILE}"

    def save(self) -> Path:
        return write_text_atomic(
            self.folder / STATE_FILE, json.dumps(dataclasses.asdict(self), indent=2), private=True
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SearchSettings":
        path = Path(folder) / STATE_FILE
        try:
            values = json.loads(path.read_text())
        except OSError:
            raise SearchError(f"{folder} is not a mixtune search folder (no {STATE_FILE})") from None
        except json.JSONDecodeError:
            raise SearchError(f"{path} is corrupt (not JSON)") from None
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or set(values) - known or "name" not in values:
            raise SearchError(f"{path} is not a mixtune search state (unexpected keys)")
        settings = cls(**values)
        check_name(settings.name)
        # the folder is where the state was found, whatever the working folder was at creation
        folder = Path(folder).resolve()
        if folder.name != settings.name:
            raise SearchError(f"{path} names search {settings.name!r}, but its folder is {folder.name!r}")
        settings.results_dir = str(folder.parent)
        return settings


NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


def check_name(name: str) -> None:
    """A search name is one folder under the results folder: no separators, no `..`."""
    if not isinstance(name, str) or not NAME_CHARS.fullmatch(name) or ".." in name:
        raise SearchError(f"search name {name!r} must be 1-200 letters, digits or . _ + = - "
                          "(starting with a letter or digit, no '..'): it names a folder under the results folder")


def load_space_file(path: str | os.PathLike) -> tuple[Any, Callable]:
    """A YAML space file: its parsed document (kept in mixtune.json) and its space function."""
    from trainables.core.files import read_yaml

    doc = read_yaml(path, SpaceError, "space file")
    return doc, space_from_dict(doc, str(path), allowed=TrainConfig.__dataclass_fields__)


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (a cluster's head exports its server's URI), else sqlite here."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def default_name(space: str, base: dict[str, Any]) -> str:
    stem = Path(space).stem if space.endswith((".yaml", ".yml")) else space
    return f"{stem}-{base.get('dataset', 'data')}-{base.get('labels', '')}-{time.strftime('%Y%m%d-%H%M%S')}"


# ----------------------------------------------------------------------------- checks
def build_space(settings: SearchSettings, n_train: int, num_classes: int | None = None) -> Callable:
    """The define-by-run function, validated by a dry run against TrainConfig."""
    ctx = SpaceContext(labels=settings.base.get("labels", "complementary"), max_k=max(2, n_train // 2))
    if settings.space_doc is not None:
        space = space_from_dict(settings.space_doc, settings.space, allowed=TrainConfig.__dataclass_fields__)
    else:
        try:
            space = get_preset(settings.space, ctx)
        except ValueError as e:
            raise SpaceError(str(e)) from None
    dry_run(space, settings, n_train, num_classes)
    return space


def dry_run(space: Callable, settings: SearchSettings, n_train: int, num_classes: int | None = None,
            trials: int = 48) -> None:
    """Sample the space with a throwaway study; every sample must make a valid TrainConfig."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    where = settings.space
    for _ in range(trials):
        trial = study.ask()
        try:
            fixed = space(trial) or {}
        except (ValueError, TypeError) as e:
            raise SpaceError(f"{where}: {e}") from None
        values = {**settings.base, **trial.params, **fixed}
        try:
            cfg = TrainConfig.from_dict(values)
        except ConfigError as e:
            raise SpaceError(f"{where}: a sampled point is not a valid config: {e}") from None
        # what depends on the data: checked here, not by a trial hours into the search
        for name, dist in trial.distributions.items():
            high = getattr(dist, "high", None)
            if name == "k" and high is not None and high > n_train:
                raise SpaceError(f"{where}: k goes up to {high}, more than the {n_train} training examples")
        fixed_k = "k" not in trial.distributions
        if cfg.method_spec.pairing == "cluster" and cfg.k > n_train:
            what = f"k={cfg.k}" if fixed_k else f"{where}: a sampled k={cfg.k}"
            raise SpaceError(f"{what} is larger than the training set ({n_train} examples)")
        if (num_classes and cfg.labels == "complementary" and cfg.cl_type == "multiple"
                and cfg.num_cl > num_classes - 1):
            raise SpaceError(f"num_cl={cfg.num_cl} must be <= {num_classes - 1} (classes - 1) for {cfg.dataset}")
        study.tell(trial, 0.0)


def check_results_dir(path: Path, what: str = "results folder") -> None:
    """The folder (or its nearest existing parent) must be a writable folder."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        why = "is a file" if not probe.is_dir() else "is not writable"
        raise SearchError(f"{what} {path} is not writable ({probe} {why})")


def check_storage_path(storage: str) -> None:
    scheme = urllib.parse.urlsplit(storage).scheme
    if scheme and scheme != "file" and len(scheme) > 1:
        return  # s3://, gs://, ...: Ray's pyarrow filesystem reports its own errors
    check_results_dir(Path(storage[7:] if storage.startswith("file://") else storage), "storage path")


def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """A host:port or ray://host:port address must accept connections."""
    if not address or address in ("auto", "local"):
        return
    parts = urllib.parse.urlsplit(address if "://" in address else f"tcp://{address}")
    if not parts.hostname or not parts.port:
        raise SearchError(f"Ray address {address!r} is not auto, host:port or ray://host:port")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            pass
    except OSError as e:
        raise SearchError(f"Ray address {address} is unreachable ({e.strerror or e})") from None


# ----------------------------------------------------------------------------- running
def quiet_logs() -> None:
    """No wall of Ray/MLflow logs: mixtune prints its own one-line-per-trial progress."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in ("mlflow", "alembic", "ray", "ray.tune", "optuna", "torch._export"):
        logging.getLogger(name).setLevel(logging.WARNING if name != "ray.tune" else logging.ERROR)
    # a failed trial is one progress line (its traceback is in the trial's error.txt and its MLflow
    # run), not a traceback on the console plus "Trials did not complete" at the end
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default repeats every parameter value)."""
    return f"trial_{trial.trial_id}"


def start_ray(settings: SearchSettings) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
        include_dashboard=False,
    )
    if settings.address:
        try:
            ray.init(address=settings.address, **kwargs)
        except Exception as e:
            raise SearchError(f"cannot join Ray at {settings.address}: {str(e).splitlines()[0]}") from None
    else:
        # a local runtime prestarts its workers at init: let them import torch and the core
        # now, while the driver sets the search up, not inside their first trial (seconds per
        # worker; bench/ray_overhead.py). A cluster starts workers on demand, where the hook
        # would only move that time into actor start.
        ray.init(
            num_cpus=settings.num_cpus,
            runtime_env={"worker_process_setup_hook": "trainables.trainable.warm_worker"},
            **kwargs,
        )


def make_searcher(settings: SearchSettings, space: Callable):
    import optuna

    from tuner.resume import ResumableOptunaSearch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(multivariate=True, group=True, seed=settings.seed)
    storage = optuna.storages.RDBStorage(settings.study_storage)
    return ResumableOptunaSearch(
        space=space,
        metric=settings.metric,
        mode=settings.mode,
        sampler=sampler,
        study_name=settings.study_name,
        storage=storage,
    )


def make_trainable(settings: SearchSettings, dataset: Dataset):
    from ray import tune

    from trainables.trainable import SharedDataset, train_trial

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    fn = tune.with_parameters(
        train_trial, dataset=SharedDataset(dataset), base=settings.base, checkpoint_every=settings.checkpoint_every
    )
    return tune.with_resources(fn, resources)


def make_tuner(settings: SearchSettings, space: Callable, dataset: Dataset, callbacks: list):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    epochs = int(settings.base["epochs"])
    scheduler = ASHAScheduler(
        time_attr="epoch",
        max_t=epochs,
        grace_period=min(settings.grace_period, epochs),
        reduction_factor=settings.reduction_factor,
    )
    return tune.Tuner(
        make_trainable(settings, dataset),
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            search_alg=make_searcher(settings, space),
            scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=settings.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.ray_storage,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            verbose=0,
        ),
    )


@dataclass
class SearchOutcome:
    folder: Path
    best: dict[str, Any] | None  # best trial: config, metrics, trial_id
    trials: list[dict[str, Any]]  # every trial's summary row
    seconds: float


def prepare(settings: SearchSettings) -> tuple[SearchSettings, Dataset, Callable]:
    """Every check that needs no side effect; returns the dataset and the validated space."""
    base = TrainConfig.from_dict(settings.base, source="search config")
    if base.cache_dir is None:
        # trials must share one clustering cache: make it explicit (and absolute) for workers
        base = base.replace(cache_dir=str(default_cache_dir().resolve()))
    settings.base = base.to_dict()
    check_name(settings.name)
    if base.device.startswith("cuda") and settings.gpus_per_trial <= 0:
        raise SearchError(f"device={base.device} needs --gpus-per-trial > 0: Ray hides GPUs from trials without one")
    if settings.metric not in SEARCHABLE_METRICS:
        raise SearchError(f"metric {settings.metric!r} is not reported by trials")
    if settings.mode not in ("max", "min"):
        raise SearchError(f"mode must be max or min, not {settings.mode!r}")
    for name, low in (("num_samples", 1), ("max_concurrent", 1), ("grace_period", 1), ("reduction_factor", 2)):
        if getattr(settings, name) < low:
            raise SearchError(f"{name}={getattr(settings, name)} must be >= {low}")
    if settings.cpus_per_trial <= 0 or settings.gpus_per_trial < 0 or settings.max_failures < 0:
        raise SearchError("cpus_per_trial must be > 0, gpus_per_trial and max_failures >= 0")
    from tuner.tracking import check_tracking_uri

    settings.tracking_uri = settings.tracking_uri or default_tracking_uri()
    check_tracking_uri(settings.tracking_uri)
    check_results_dir(settings.folder)
    check_storage_path(settings.ray_storage)
    check_ray_address(settings.address)
    dataset = load_dataset(base)
    space = build_space(settings, n_train=len(dataset.y_train), num_classes=dataset.num_classes)
    return settings, dataset, space


def run_search(settings: SearchSettings, echo: Callable[[str], None] = print) -> SearchOutcome:
    """Check, create, run and summarise a new search."""
    quiet_logs()
    settings, dataset, space = prepare(settings)
    if (settings.folder / STATE_FILE).exists():
        raise SearchError(f"search {settings.name} already exists in {settings.folder}; use `mixtune resume`")

    from tuner import tracking

    client = tracking.client(settings.tracking_uri)
    settings.experiment_id = tracking.experiment_id(
        client, settings.experiment, tracking.artifact_location(settings.tracking_uri)
    )
    parent = client.create_run(
        settings.experiment_id,
        run_name=settings.name,
        tags={tracking.SEARCH_TAG: settings.name, tracking.ROLE_TAG: "search"},
    )
    settings.parent_run_id = parent.info.run_id
    settings.folder.mkdir(parents=True, exist_ok=True)
    settings.save()
    log_search_params(client, settings)
    echo(f"search {settings.name}: {settings.num_samples} trials of space '{settings.space}' on "
         f"{settings.base['dataset']} ({settings.base['labels']} labels), metric {settings.metric} ({settings.mode})")
    return execute(settings, dataset, space, client, echo)


def experiment_path(settings: SearchSettings) -> str:
    """Where Ray Tune keeps the search's experiment state (what `Tuner.restore` reads)."""
    if "://" in settings.ray_storage:
        return f"{settings.ray_storage.rstrip('/')}/{settings.name}"
    return str(Path(settings.ray_storage) / settings.name)


class SearchInterrupted(KeyboardInterrupt):
    """The driver was asked to stop (Ctrl-C); the search can be resumed."""


def execute(settings, dataset, space, client, echo, restore: bool = False) -> SearchOutcome:
    """Run (or restore and continue) the Tune experiment, then summarise it.

    Ctrl-C: Ray Tune's own SIGINT handler ends the loop after saving its state; the search's
    MLflow runs still RUNNING are set KILLED and the resume command is printed.
    """
    from tuner import tracking
    from tuner.progress import Progress

    start = time.time()
    try:
        start_ray(settings)
        path = experiment_path(settings)
        tuner = None
        if restore:
            from tuner.resume import restore_tuner

            tuner = restore_tuner(settings, path, make_trainable(settings, dataset), client, echo)
        if tuner is None:  # a new search, or one stopped before Ray saved anything
            callbacks = [
                tracking.MLflowTrials(settings.tracking_uri, settings.parent_run_id, settings.experiment_id,
                                      settings.base, settings.name),
                Progress(settings.metric, settings.mode, settings.num_samples, echo),
            ]
            tuner = make_tuner(settings, space, dataset, callbacks)
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune's handler was installed
        stopped(settings, client, echo)
        raise
    except Exception:  # Ray could not start or Tune died: leave no run RUNNING, keep it resumable
        try:
            tracking.close_runs(client, settings, status="FAILED", state="FAILED")
            client.set_terminated(settings.parent_run_id, status="FAILED")
        except Exception:
            pass
        raise
    if results.num_terminated + results.num_errors < len(results) or len(results) < settings.num_samples:
        stopped(settings, client, echo, done=results.num_terminated + results.num_errors)
        raise SearchInterrupted()
    # every trial ended: a run the callback could not close (its driver was killed) is closed here
    tracking.close_runs(client, settings, status="KILLED", state="KILLED")
    return summarise(settings, results, time.time() - start, client)


def stopped(settings: SearchSettings, client, echo, done: int | None = None) -> None:
    """Close the search's open MLflow runs as KILLED and say how to continue."""
    from tuner import tracking

    try:
        tracking.close_runs(client, settings, status="KILLED", state="INTERRUPTED")
        client.set_terminated(settings.parent_run_id, status="KILLED")
    except Exception as e:  # the tracking store may be what failed: still print the way out
        echo(f"(could not close the MLflow runs: {str(e).splitlines()[0] if str(e) else type(e).__name__})")
    count = f" after {done}/{settings.num_samples} trials" if done is not None else ""
    echo(f"search {settings.name} stopped{count}; continue it with: mixtune resume {settings.folder}")


def trial_rows(results) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append({
            "trial_id": m.get("trial_id") or Path(r.path).name,
            "config": dict(r.config or {}),
            "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "error": None if r.error is None else str(r.error).strip().splitlines()[-1][:500],
            "checkpoint": r.checkpoint,
            "path": r.path,
        })
    return rows


def pick_best(rows: list[dict[str, Any]], metric: str, mode: str, epochs: int) -> dict[str, Any] | None:
    """Best trial by its last reported metric, preferring trials that ran every epoch.

    A trial ASHA stopped early ran a different learning-rate schedule than its config
    describes, so a retrain from its config would not reproduce its number.
    """
    ok = [r for r in rows if r["error"] is None and _num(r["metrics"].get(metric)) is not None]
    full = [r for r in ok if r["metrics"].get("epoch") == epochs]
    pool = full or ok
    if not pool:
        return None
    sign = 1 if mode == "max" else -1
    return max(pool, key=lambda r: sign * r["metrics"][metric])


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def log_search_params(client, settings: SearchSettings) -> None:
    from mlflow.entities import Param

    from tuner.tracking import redact_uri

    s = dataclasses.asdict(settings)
    keep = ["space", "metric", "mode", "num_samples", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
            "grace_period", "reduction_factor", "max_failures", "seed", "address", "storage_path"]
    for k in ("address", "storage_path"):  # URIs may carry user:password
        s[k] = redact_uri(s[k]) if s[k] else s[k]
    params = [Param(f"search.{k}", str(s[k])) for k in keep]
    params += [Param(f"base.{k}", str(v)) for k, v in settings.base.items()]
    params.append(Param("search.results_folder", str(settings.folder)))
    client.log_batch(settings.parent_run_id, params=params)
    client.log_dict(settings.parent_run_id, settings.space_doc or {"preset": settings.space}, "space.yaml")
    if settings.address:
        client.set_tag(settings.parent_run_id, "ray.address", redact_uri(settings.address))


def summarise(settings: SearchSettings, results, seconds: float, client) -> SearchOutcome:
    """Best trial → best_config.yaml, parent run metrics, plots and model; raises if all failed."""
    from tuner.summary import log_summary

    rows = trial_rows(results)
    best = pick_best(rows, settings.metric, settings.mode, int(settings.base["epochs"]))
    if best is not None:
        from trainables.trainable import trial_config

        cfg = trial_config(settings.base, best["config"], settings.cpus_per_trial)
        cfg.to_yaml(settings.folder / BEST_FILE)
        best["train_config"] = cfg.to_dict()
    log_summary(client, settings, rows, best, seconds)
    outcome = SearchOutcome(folder=settings.folder, best=best, trials=rows, seconds=seconds)
    if best is None:
        errors = [r["error"] for r in rows if r["error"]]
        first = errors[0] if errors else "no trial reported the metric"
        raise SearchError(f"every trial failed ({len(rows)} trials); first error: {first}")
    return outcome


PRESET_NAMES = tuple(PRESETS)
