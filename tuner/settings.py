"""A search's settings and state file: what defines a search, saved so `resume` needs nothing else.

The lowest layer of the tuner: it imports nothing of Ray, Optuna or MLflow, and no other
tuner module but the errors. A search's folder (`<results_dir>/<name>/`) holds `mixtune.json`
(these settings), `optuna.db` (the study: resumable, open it with optuna-dashboard), Ray
Tune's experiment state and trial checkpoints (unless `--storage-path` sends those
elsewhere), and `best_config.yaml` once it finishes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.core.files import write_text_atomic
from tuner.errors import UserError

STATE_FILE = "mixtune.json"
STUDY_FILE = "optuna.db"
BEST_FILE = "best_config.yaml"
FRONT_FILE = "pareto_front.json"  # a multi-objective search's front, instead of one best config


class SearchError(UserError):
    """A search that cannot start or that ended with every trial failed; one line."""


@dataclass
class SearchSettings:
    """Everything that defines a search; saved as mixtune.json so `resume` needs nothing else."""

    name: str
    space: str  # a preset name or the path of a YAML space file
    base: dict[str, Any]  # the TrainConfig every trial starts from (searched values go on top)
    space_doc: Any = None  # the parsed YAML space, kept so a resume does not need the file
    metric: str | None = None  # None until checked: then the label kind's default; "a,b" for several (Pareto)
    mode: str | None = None  # None: the metrics' own directions; "max,min" for several
    num_samples: int = 16
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    grace_period: int = 2
    reduction_factor: int = 3
    sampler: str = "tpe"  # tpe | gp | random (SAMPLERS)
    scheduler: str = "asha"  # asha (early stopping) | none (every trial runs every epoch)
    startup_trials: int | None = None  # random proposals before the model is used; None: sized to the budget
    constant_liar: bool = True  # TPE: running trials count as bad ones, so concurrent proposals spread out
    record_pruned: bool = True  # a trial ASHA stopped is PRUNED in the Optuna study, not COMPLETE
    max_failures: int = 0  # retries of a trial whose own code failed (tuner/faults.py)
    max_node_losses: int = 3  # retries of a trial whose node was lost, per trial; -1: no limit
    tracking_outage_limit: float = 600.0  # seconds of MLflow outage the end of a search waits out
    results_dir: str = "mixtune-results"
    storage_path: str | None = None  # Ray Tune storage (shared folder or s3://...); default results_dir
    tracking_uri: str | None = None  # default: sqlite in the working folder
    experiment: str = "mixtune"
    address: str | None = None  # join a running Ray cluster (auto, host:port, ray://...)
    num_cpus: int | None = None  # CPUs of a local Ray runtime (default: all)
    seed: int = 0  # the TPE sampler's seed
    register_model: str | None = None  # register the best model under this name
    checkpoint_every: int = 1
    warm_start: list[str] = field(default_factory=list)  # earlier searches / exported configs to start from
    warm_start_partial: bool = False  # drop parameters the spaces do not share instead of refusing
    warm_start_other_data: bool = False  # accept earlier searches on other data (--warm-start-other-data)
    # filled in when the search is checked: its dataset for MLflow (mlflow_meta.describe_data)
    data: dict[str, Any] | None = None
    # filled in when the search is created
    parent_run_id: str | None = None
    experiment_id: str | None = None
    created: float = field(default_factory=time.time)

    # ------------------------------------------------------------------ derived
    @property
    def metrics(self) -> list[str]:
        """The metric(s) the search selects on: one, or two or three for a Pareto front."""
        return (self.metric or "").split(",") if self.metric else []

    @property
    def modes(self) -> list[str]:
        return (self.mode or "").split(",") if self.mode else []

    @property
    def multi(self) -> bool:
        """Several metrics: TPE over a Pareto front, ASHA on the first metric only."""
        return len(self.metrics) > 1

    @property
    def n_startup(self) -> int:
        """Random proposals before the sampler's model is used: `startup_trials`, else sized to the budget.

        Optuna's default is 10 whatever the budget, which makes a 16-trial search random for 10
        trials. A quarter of the budget, at least 3 and at most 10, measured in
        docs/search_quality.md.
        """
        if self.startup_trials is not None:
            return self.startup_trials
        return startup_for(self.num_samples)

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

    @property
    def epochs(self) -> int:
        return int(self.base["epochs"])

    @property
    def experiment_path(self) -> str:
        """Where Ray Tune keeps the search's experiment state (what `Tuner.restore` reads)."""
        if "://" in self.ray_storage:
            return f"{self.ray_storage.rstrip('/')}/{self.name}"
        return str(Path(self.ray_storage) / self.name)

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


SAMPLERS = ("tpe", "gp", "random")
SCHEDULERS = ("asha", "none")


def default_max_concurrent(num_cpus: int | None, cpus_per_trial: float) -> int:
    """As many trials at once as the CPUs hold (all of this machine's when num_cpus is None); 1 for
    a cpus_per_trial that is not positive, which the checks then refuse in one line."""
    cpus = num_cpus or os.cpu_count() or 1
    return max(1, int(cpus // cpus_per_trial)) if cpus_per_trial > 0 else 1


def startup_for(num_samples: int) -> int:
    """A quarter of the trials, at least 3 and at most Optuna's default of 10."""
    return max(3, min(10, num_samples // 4))


NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


def check_name(name: str) -> None:
    """A search name is one folder under the results folder: no separators, no `..`."""
    if not isinstance(name, str) or not NAME_CHARS.fullmatch(name) or ".." in name:
        raise SearchError(f"search name {name!r} must be 1-200 letters, digits or . _ + = - "
                          "(starting with a letter or digit, no '..'): it names a folder under the results folder")


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (a cluster's head exports its server's URI), else sqlite here."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def default_name(space: str, base: dict[str, Any]) -> str:
    stem = Path(space).stem if space.endswith((".yaml", ".yml")) else space
    return f"{stem}-{base.get('dataset', 'data')}-{base.get('labels', '')}-{time.strftime('%Y%m%d-%H%M%S')}"


def find_search(value: str, results_dir: str) -> Path:
    """A search given as its folder or its name under the results folder."""
    for cand in (Path(value), Path(results_dir) / value):
        if (cand / STATE_FILE).exists():
            return cand.resolve()
    raise SearchError(f"no search {value!r} (looked for {STATE_FILE} in {value} and {Path(results_dir) / value})")
