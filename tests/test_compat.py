"""Contracts with Ray, Optuna and MLflow internals (tuner/compat.py), checked on the installed releases.

Each test builds the library's real object and checks that the private name compat.py reads or
writes is there and means what mixtune assumes. A release that changes one fails here by name;
pyproject.toml caps each library at the newest release these pass on.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from tuner import compat

optuna.logging.set_verbosity(optuna.logging.WARNING)


def asha(mode: str = "max", max_t: int = 4) -> ASHAScheduler:
    s = ASHAScheduler(metric="m", mode=mode, max_t=max_t, grace_period=1, reduction_factor=2, brackets=1)
    return s


def test_asha_internals():
    s = asha("max")
    bracket = compat.asha_bracket(s)
    assert [m for m, _ in bracket._rungs] == [4, 2, 1]  # milestones, largest first, each {trial: reward}
    assert compat.asha_reward(s, 0.3) == pytest.approx(0.3)
    assert compat.asha_reward(asha("min"), 0.3) == pytest.approx(-0.3)
    assert compat.asha_observed(s) == ("training_iteration", "m")
    assert compat.asha_stops_at_max_t(s, 4) and not compat.asha_stops_at_max_t(s, 3)
    # a bracket records what it was shown, and stops the worse of two at a rung
    t1, t2 = SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")
    assert bracket.on_result(t1, 1, compat.asha_reward(s, 0.9)) == TrialScheduler.CONTINUE
    assert bracket.on_result(t2, 1, compat.asha_reward(s, 0.1)) == TrialScheduler.STOP
    assert dict(bracket._rungs)[1] == {"a": 0.9, "b": 0.1}
    before = s._num_stopped
    compat.asha_count_stopped(s)
    assert s._num_stopped == before + 1
    # the emptied state pickles and leaves the live scheduler untouched
    s._trial_info["a"] = object
    state = compat.asha_empty_state(s.__dict__)
    assert all(not recorded for _, recorded in state["_brackets"][0]._rungs)
    assert state["_trial_info"] == {} and state["_num_stopped"] == 0
    assert dict(bracket._rungs)[1] == {"a": 0.9, "b": 0.1}
    pickle.dumps({k: v for k, v in state.items() if k != "_trial_info"})


def test_optuna_search_internals():
    searcher = OptunaSearch(space={"x": FloatDistribution(0.0, 1.0)}, metric="m", mode="max", seed=0)
    study = compat.search_study(searcher)
    assert isinstance(study, optuna.Study)
    assert compat.search_metric(searcher) == "m"
    params = searcher.suggest("t1")
    assert set(params) == {"x"}
    trial = compat.search_trials(searcher)["t1"]
    assert isinstance(trial, optuna.Trial)
    searcher.on_trial_result("t1", {"m": 0.5, "training_iteration": 1})
    assert compat.intermediate_values(trial) == {1: 0.5}
    storage, study_id = compat.study_storage(study)
    frozen = storage.get_trial(compat.storage_trial_id(trial))
    assert frozen.number == trial.number and frozen.intermediate_values == {1: 0.5}
    assert compat.storage_trial_id(frozen) == compat.storage_trial_id(trial)
    assert [t.number for t in storage.get_all_trials(study_id, deepcopy=False)] == [trial.number]
    assert "t1" not in compat.search_told(searcher)
    searcher.on_trial_complete("t1", {"m": 0.5, "training_iteration": 1})
    assert "t1" in compat.search_told(searcher)
    assert storage.get_trial(compat.storage_trial_id(trial)).state == optuna.trial.TrialState.COMPLETE
    # the hook ResumableOptunaSearch extends
    assert callable(getattr(OptunaSearch, "_setup_study"))


def test_distribution_contains():
    assert compat.distribution_contains(IntDistribution(1, 5), 3)
    assert not compat.distribution_contains(IntDistribution(1, 5), 7)
    assert not compat.distribution_contains(IntDistribution(0, 10, step=2), 3)
    assert compat.distribution_contains(FloatDistribution(1e-4, 1e-1, log=True), 1e-3)
    assert not compat.distribution_contains(FloatDistribution(0.0, 1.0), 1.5)
    assert compat.distribution_contains(CategoricalDistribution(["a", "b"]), "a")
    assert not compat.distribution_contains(CategoricalDistribution(["a", "b"]), "c")


def test_trial_class_swap():
    from ray.tune.experiment import Trial

    class Counting(Trial):
        pass

    trial = Trial("__fake", stub=True)
    compat.adopt_trial_class(trial, Counting)
    assert type(trial) is Counting
    # what faults.FaultAwareTrial.handle_error reads and calls
    assert isinstance(trial.run_metadata.num_failures, int)
    assert callable(trial.run_metadata.invalidate_cache) and callable(trial.invalidate_json_state)
    assert callable(Trial.handle_error)


def test_mlflow_dataset_entity():
    import mlflow.data
    from mlflow.entities import Dataset as DatasetEntity

    dataset = mlflow.data.from_numpy(np.zeros((3, 2), dtype=np.float32), name="zeros")
    entity = compat.dataset_entity(dataset)
    assert isinstance(entity, DatasetEntity)
    assert entity.name == "zeros" and entity.digest == dataset.digest


def test_cluster_config_checks():
    prepare_config, validate_config = compat.cluster_config_checks()
    config = prepare_config({"cluster_name": "c", "provider": {"type": "local", "head_ip": "10.0.0.1",
                                                                "worker_ips": []},
                             "auth": {"ssh_user": "u"}})
    validate_config(config)
    with pytest.raises(Exception):
        validate_config({"cluster_name": 3})


def test_ray_logger_modules_exist():
    import importlib.util

    for name in (compat.RAY_STORAGE_LOGGER, compat.RAY_WORKER_LOGGER):
        assert importlib.util.find_spec(name) is not None, name


def test_quiet_logs_restores_what_a_search_changed(monkeypatch):
    """Loggers, warning filters and environment variables are the caller's again after a search."""
    from tuner.execution.assembly import QUIET_ENV, QUIET_LOGGERS, STATE_LOGGER, STOP_ENV, quiet_logs

    for name in (*QUIET_ENV, STOP_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")  # the user's own value is kept, and kept after
    tune_logger = logging.getLogger("ray.tune.tune")
    monkeypatch.setattr(tune_logger, "level", logging.INFO)
    filters_before = list(warnings.filters)
    state_filters = list(logging.getLogger(STATE_LOGGER).filters)
    with quiet_logs():
        assert tune_logger.level == QUIET_LOGGERS["ray.tune.tune"] == logging.CRITICAL
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0" and os.environ["RAY_DEDUP_LOGS"] == "1"
        assert len(logging.getLogger(STATE_LOGGER).filters) == len(state_filters) + 1
        os.environ[STOP_ENV] = "1"  # what a stopped search sets
    assert tune_logger.level == logging.INFO
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ and STOP_ENV not in os.environ
    assert os.environ["RAY_DEDUP_LOGS"] == "1"
    assert warnings.filters == filters_before
    assert logging.getLogger(STATE_LOGGER).filters == state_filters
    # and after an error inside the search too
    with pytest.raises(RuntimeError), quiet_logs():
        raise RuntimeError("trial setup failed")
    assert tune_logger.level == logging.INFO and "RAY_AIR_NEW_OUTPUT" not in os.environ


def test_mlflow_installed_packages_scan():
    from mlflow.utils import requirements_utils

    assert callable(requirements_utils._init_modules_to_packages_map)
    compat.mlflow_scan_installed_packages()
    assert requirements_utils._MODULES_TO_PACKAGES  # the map log_model reads is built


def test_tuner_callbacks_and_the_default_loggers(monkeypatch, tmp_path):
    """A Tuner's callbacks as compat reads them; Tune's own test of which default loggers it adds,
    which `without_tensorboard` relies on: none once the variable is set, TensorBoard's otherwise."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks

    from tuner.execution.assembly import TUNE_AUTO_LOGGERS_ENV, file_loggers, without_tensorboard

    loggers = file_loggers()
    tuner = tune.Tuner(lambda config: None, run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=loggers))
    assert compat.tuner_callbacks(tuner) == loggers
    assert compat.tuner_callbacks(tune.Tuner(lambda config: None)) == []

    def kinds():
        return {type(c) for c in _create_default_callbacks(list(loggers))}

    monkeypatch.delenv(TUNE_AUTO_LOGGERS_ENV, raising=False)
    assert TBXLoggerCallback in kinds()  # Tune's default: ray[tune] installs tensorboardX
    with without_tensorboard(tuner):
        assert os.environ[TUNE_AUTO_LOGGERS_ENV] == "1"
        assert {JsonLoggerCallback, CSVLoggerCallback} <= kinds() and TBXLoggerCallback not in kinds()
    assert TUNE_AUTO_LOGGERS_ENV not in os.environ  # restored
    with without_tensorboard(tune.Tuner(lambda config: None)):  # an older search's: Tune's defaults kept
        assert TUNE_AUTO_LOGGERS_ENV not in os.environ
    monkeypatch.setenv(TUNE_AUTO_LOGGERS_ENV, "0")  # the user's value holds
    with without_tensorboard(tuner):
        assert os.environ[TUNE_AUTO_LOGGERS_ENV] == "0"
    assert os.environ[TUNE_AUTO_LOGGERS_ENV] == "0"


def test_kill_local_monitor_then_stop_leaves_no_process(monkeypatch):
    """The runtime a search started: its monitor is there, killed first, and `stop_ray` then
    stops every process `ray.init` started; with no runtime started here, nothing to kill."""
    import ray

    from tuner.execution.assembly import stop_ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from ray._private import ray_constants, worker

    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        processes = [info.process for infos in worker._global_node.all_processes.values() for info in infos]
        monitor = [info.process for info in worker._global_node.all_processes[ray_constants.PROCESS_TYPE_MONITOR]]
        assert len(monitor) == 1 and monitor[0].poll() is None
        assert compat.kill_local_monitor() is True
        assert monitor[0].poll() == -9  # SIGKILL, reaped
        assert compat.kill_local_monitor() is False  # already gone
    finally:
        stop_ray()
    assert not ray.is_initialized()
    for process in processes:
        process.wait(timeout=30)  # each one ends (raises TimeoutExpired otherwise)
    assert compat.kill_local_monitor() is False  # no runtime started by this process
