"""Every use of a Ray, Optuna or MLflow internal, in one place.

mixtune extends the three libraries where their public API stops: ASHA that journals its
rungs (`schedulers/asha.py`), an OptunaSearch that survives a stale snapshot and tells Optuna
a stopped trial is PRUNED (`search/searcher.py`), Ray trials that count a lost node apart from
a failure (`faults.py`), warm starts that check a value against a distribution
(`search/warmstart.py`), a dataset logged as an `mlflow.data` entity
(`tracking/mlflow_dataset.py`), and the `ray up` file checked as Ray checks it
(`cluster/config_check.py`). Each private name those read or write is reached through one
function here, and `tests/test_compat.py` checks each against the installed releases, so an
upgrade that renames one fails there, by name, not deep inside a search. `pyproject.toml` caps
Ray, Optuna and MLflow at the newest releases those tests pass on.

Nothing is imported at module level: this module sits at the bottom of `tuner/`.
"""

from __future__ import annotations

import copy
from typing import Any

# ----------------------------------------------------------------------------- Ray Tune: ASHAScheduler
# ray/tune/schedulers/async_hyperband.py: `_brackets` (list of `_Bracket`, each with `_rungs`:
# [(milestone, {trial_id: reward})]), `_metric_op` (+1 max, -1 min), `_stop_last_trials`,
# `_num_stopped`, `_trial_info`, `_max_t`; TrialScheduler's `_metric` and `_time_attr`.


def asha_bracket(scheduler) -> Any:
    """The single bracket of an ASHA built with `brackets=1`."""
    return scheduler._brackets[0]


def asha_reward(scheduler, value: float) -> float:
    """The value as ASHA ranks it (larger is better whatever the mode)."""
    return scheduler._metric_op * value


def asha_stops_at_max_t(scheduler, t: float) -> bool:
    """ASHA stops a trial that reached max_t (its `stop_last_trials`)."""
    return t >= scheduler._max_t and bool(scheduler._stop_last_trials)


def asha_count_stopped(scheduler) -> None:
    scheduler._num_stopped += 1


def asha_observed(scheduler) -> tuple[str, str]:
    """(time attribute, metric) the scheduler reads from a result."""
    return scheduler._time_attr, scheduler._metric


def asha_empty_state(state: dict[str, Any]) -> dict[str, Any]:
    """An ASHA's pickled `__dict__` with every rung's record, trial and count cleared (a restored
    copy starts empty and is rebuilt from its journal)."""
    state = dict(state)
    state["_brackets"] = copy.deepcopy(state["_brackets"])
    for bracket in state["_brackets"]:
        for _, recorded in bracket._rungs:
            recorded.clear()
    state.update(_trial_info={}, _num_stopped=0)
    return state


# ----------------------------------------------------------------------------- Ray Tune: OptunaSearch
# ray/tune/search/optuna/optuna_search.py: `_ot_study` (the study), `_ot_trials` ({ray trial id:
# optuna.Trial}), `_completed_trials` (ray ids told to the study), `_metric`; `_setup_study(mode)`
# is the hook ResumableOptunaSearch extends (it creates `_ot_study`).


def search_study(searcher) -> Any:
    return searcher._ot_study


def search_trials(searcher) -> dict[str, Any]:
    """{Ray trial id: the optuna.Trial asked for it}."""
    return searcher._ot_trials


def search_told(searcher) -> set[str]:
    """The Ray trial ids whose end the study has been told (the set itself: add to it)."""
    return searcher._completed_trials


def search_metric(searcher) -> str | list[str]:
    return searcher._metric


# ----------------------------------------------------------------------------- Optuna
# optuna/study/study.py: `Study._storage`, `Study._study_id`; optuna/trial/_trial.py and
# _frozen.py: `Trial._trial_id`, `FrozenTrial._trial_id`, `Trial._cached_frozen_trial`;
# optuna/distributions.py: `BaseDistribution._contains(internal_value)`.


def study_storage(study) -> tuple[Any, int]:
    """(storage, study id): what `storage.get_trial` / `get_all_trials` / `set_trial_*` take."""
    return study._storage, study._study_id


def storage_trial_id(trial) -> int:
    """The storage's id of an optuna.Trial or FrozenTrial (not its `number`)."""
    return trial._trial_id


def intermediate_values(trial) -> dict[int, float]:
    """The values an optuna.Trial (running) was told so far, by step, without a storage read."""
    return trial._cached_frozen_trial.intermediate_values


def distribution_contains(dist, value: Any) -> bool:
    """Whether a distribution can produce `value` (a choice it offers, a number in its range and step)."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError, IndexError):
        return False


# ----------------------------------------------------------------------------- Ray Tune: Trial
# ray/tune/experiment/trial.py: a Trial's class is swapped for a subclass that overrides
# `handle_error` (it reads `run_metadata.num_failures`, `run_metadata.invalidate_cache()` and
# `invalidate_json_state()`); Tune creates the trials, so a subclass cannot be passed in.


def adopt_trial_class(trial, cls: type) -> None:
    """Make a Tune-created Trial an instance of `cls` (a subclass of Ray's Trial), in place."""
    trial.__class__ = cls


# ----------------------------------------------------------------------------- Ray Tune: Tuner
# ray/tune/tuner.py, ray/tune/impl/tuner_internal.py: a Tuner keeps its RunConfig in the
# TunerInternal it wraps; a restored Tuner has the one it was created with (unpickled).


def tuner_callbacks(tuner) -> list:
    """The callbacks of a (local) Tuner's RunConfig, a restored one's included."""
    return list(tuner._local_tuner.get_run_config().callbacks or [])


# ----------------------------------------------------------------------------- MLflow
# mlflow/data/dataset.py: `Dataset._to_mlflow_entity()` is what `mlflow.log_input` calls; the
# client's `log_inputs` takes the entity, and there is no public way to make one.


def dataset_entity(dataset) -> Any:
    """The `mlflow.entities.Dataset` of an `mlflow.data.dataset.Dataset`."""
    return dataset._to_mlflow_entity()


def mlflow_scan_installed_packages() -> None:
    """Build MLflow's map of installed packages now (mlflow/utils/requirements_utils.py,
    `_init_modules_to_packages_map`): `log_model` builds it first, seconds on a large environment.
    A release without it loses only this head start."""
    from mlflow.utils import requirements_utils

    getattr(requirements_utils, "_init_modules_to_packages_map", lambda: None)()


# ----------------------------------------------------------------------------- Ray: `ray up` checks
# ray/autoscaler/_private/util.py: `prepare_config` (fills a cluster file's defaults) and
# `validate_config` (the schema and cross-field checks `ray up` runs).


def cluster_config_checks() -> tuple[Any, Any]:
    """(prepare_config, validate_config) as `ray up` uses them."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    return prepare_config, validate_config


# ----------------------------------------------------------------------------- Ray: a local runtime's processes
# ray/_private/worker.py `_global_node` (the `Node` of `ray.init`; connect-only, with no
# processes, when it joined a runtime), its `all_processes`: {process type: [ProcessInfo with `.process`, a Popen]};
# ray/_private/ray_constants.py `PROCESS_TYPE_MONITOR`. `ray.shutdown` stops them one by one,
# each with SIGTERM and up to a second's wait before SIGKILL, and stops the GCS before the
# autoscaler's monitor, whose SIGTERM handler then writes to the stopped GCS until it is
# killed: a whole second of every search's end (bench/startup.py).


def kill_local_monitor() -> bool:
    """SIGKILL the autoscaler monitor of the Ray runtime this process started, as `ray.shutdown`
    does a second later (a single machine has nothing for it to scale); False: none to kill."""
    import signal
    import subprocess

    from ray._private import ray_constants, worker

    node = worker._global_node
    if node is None:  # Ray is not running in this process (a joined runtime's node lists no processes)
        return False
    killed = False
    for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
        if info.process.poll() is None:
            info.process.send_signal(signal.SIGKILL)
            try:
                info.process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # stuck in the kernel: ray.shutdown reaps what it can
                pass
            killed = True
    return killed


# ----------------------------------------------------------------------------- loggers by name
# Loggers of Ray's internal modules whose lines a search silences or shortens.
RAY_STORAGE_LOGGER = "ray.train._internal.storage"
RAY_WORKER_LOGGER = "ray._private.worker"
