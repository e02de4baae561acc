"""Assembling a search's Tuner: the Ray runtime, the trainable, TPE, ASHA, the callbacks.

`FailureConfig(max_failures)` is `--max-failures`: retries of a trial whose own code failed.
A trial whose node was lost is retried from its checkpoint without using these up, and a
storage fault stops the search instead (`faults.py`, which the scheduler applies to every
trial).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Callable

from tuner import compat
from tuner.settings import SearchError, SearchSettings

if TYPE_CHECKING:
    from trainables.core.data import Dataset  # torch: imported where a dataset is used


# environment variables a search sets while it runs (each only where the user has not), restored after it
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter honours verbose=0
             "RAY_DEDUP_LOGS": "0"}
STOP_ENV = "RAY_IGNORE_UNHANDLED_ERRORS"  # set when a search stops (execute.stopped)
QUIET_LOGGERS = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "ray": logging.WARNING,
                 "ray.tune": logging.ERROR, "optuna": logging.WARNING, "torch._export": logging.WARNING,
                 # a failed trial is one progress line (its traceback is in the trial's error.txt and
                 # its MLflow run), not a traceback on the console plus "Trials did not complete"
                 "ray.tune.execution.tune_controller": logging.CRITICAL, "ray.tune.tune": logging.CRITICAL,
                 # a storage path that cannot be written is one line naming it (faults.py), not a traceback
                 compat.RAY_STORAGE_LOGGER: logging.CRITICAL}
STATE_LOGGER = "ray.tune.execution.experiment_state"


@contextlib.contextmanager
def quiet_logs():
    """No wall of Ray/MLflow logs while a search runs: mixtune prints its own one-line-per-trial
    progress. Every logger level, filter, warning filter and environment variable changed here
    (or by a stopped search, `STOP_ENV`) is put back when the search returns, so a notebook or a
    program that runs a search keeps its own logging."""
    import warnings

    names = (*QUIET_LOGGERS, compat.RAY_WORKER_LOGGER)  # start_ray sets the worker's
    levels = {name: logging.getLogger(name).level for name in names}
    env = {name: os.environ.get(name) for name in (*QUIET_ENV, STOP_ENV)}
    one_line = OneLine()
    with warnings.catch_warnings():  # the warning filters as they were, after
        try:
            for name, value in QUIET_ENV.items():
                os.environ.setdefault(name, value)
            for name, level in QUIET_LOGGERS.items():
                logging.getLogger(name).setLevel(level)
            # Ray times the define-by-run call, which includes TPE fitting its model on every earlier
            # trial (over a second past ~30 trials on 2 cores): not a slow space, so not worth a warning
            warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument took")
            logging.getLogger(STATE_LOGGER).addFilter(one_line)
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            logging.getLogger(STATE_LOGGER).removeFilter(one_line)
            for name, value in env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class OneLine(logging.Filter):
    """A failed save of Tune's experiment state as one line, not a traceback.

    Tune retries the save at its next checkpoint, and a storage path that stays broken stops
    the search with its own line (faults.py); the traceback says nothing more to the user.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            first = record.getMessage().splitlines()[0].rstrip(": ")
            record.msg, record.args = f"{first}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", ()
            record.exc_info, record.exc_text = None, None
        return True


TUNE_AUTO_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def file_loggers() -> list:
    """Tune's JSON and CSV loggers, passed to the Tuner rather than left for Tune to add.

    mixtune reads each trial's `result.json`, and `progress.csv` is where a Ray user looks.
    Tune adds its default loggers that the callbacks lack, TensorBoard's among them (ray[tune]
    installs tensorboardX); with these two passed, `without_tensorboard` turns that off: MLflow
    is the search's tracker, and the event files cost the driver ~3 ms a result, in the loop
    every trial waits on (bench/vs_script.py).
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [JsonLoggerCallback(), CSVLoggerCallback()]


@contextlib.contextmanager
def without_tensorboard(tuner):
    """No default loggers added to the fit of a Tuner that has the file loggers (a new search's,
    or a resumed one's started since they are passed: an older one keeps Tune's defaults).
    A value of the variable that the user set holds."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    kinds = {type(c) for c in compat.tuner_callbacks(tuner)}
    if TUNE_AUTO_LOGGERS_ENV in os.environ or not {JsonLoggerCallback, CSVLoggerCallback} <= kinds:
        yield
        return
    os.environ[TUNE_AUTO_LOGGERS_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(TUNE_AUTO_LOGGERS_ENV, None)


def trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default repeats every parameter value)."""
    return f"trial_{trial.trial_id}"


class RayStart:
    """Ray's start on a thread of its own, while the driver sets up the rest of the search.

    `ray.init` mostly waits for the processes it starts (GCS, raylet, the prestarted workers,
    which import torch), seconds that the MLflow run, the study and the outbox can use.
    `wait` returns once Ray is up, raising what `ray.init` raised. Ray sets its SIGTERM
    handler only from the main thread: the same handler is set here, on the main thread.
    The thread then stays, idle, until the process ends: Ray starts its GCS and raylet with
    PR_SET_PDEATHSIG, which Linux fires when the *thread* that started them ends.
    """

    def __init__(self, settings: SearchSettings):
        import signal
        import threading

        self.error: BaseException | None = None
        self.started = False  # whether this driver started (or joined) Ray, so it may stop it
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(settings,), name="mixtune-ray-start", daemon=True)
        self._thread.start()

    def _run(self, settings: SearchSettings) -> None:
        import threading

        try:
            self.started = start_ray(settings)
        except BaseException as e:  # re-raised on the main thread by wait()
            self.error = e
        finally:
            self._done.set()
        if self.started:
            threading.Event().wait()  # hold the thread: Ray's processes die with it (see above)

    def wait(self) -> bool:
        self._done.wait()
        if self.error is not None:
            raise self.error
        return self.started


def _exit_on_sigterm(signum, frame):  # what Ray's own handler does: exit, so that atexit stops Ray
    import sys

    sys.exit(signum)


def stop_ray() -> None:
    """Stop the Ray runtime this driver started (or leave the cluster it joined), now, not at exit."""
    import ray

    if ray.is_initialized():
        compat.kill_local_monitor()  # else ray.shutdown waits a second for it (compat.py)
        ray.shutdown()


def address_to_join(settings: SearchSettings) -> str | None:
    """The Ray runtime a search joins: --address, else $RAY_ADDRESS (a Ray job's driver gets it);
    None (or "local"): a runtime of its own."""
    joined = settings.address or os.environ.get("RAY_ADDRESS")
    return None if not joined or joined == "local" else joined


def start_ray(settings: SearchSettings) -> bool:
    """Start (or join) Ray; False when it was running already in this process (then it is not ours)."""
    import ray

    if ray.is_initialized():
        return False
    # the SIGTERM note of a `ray.init` off the main thread (RayStart sets that handler itself)
    logging.getLogger(compat.RAY_WORKER_LOGGER).setLevel(logging.ERROR)
    kwargs: dict[str, Any] = dict(
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
        include_dashboard=False,
    )
    joined = address_to_join(settings)
    if joined:  # with --num-cpus refused by the checks
        try:
            ray.init(address=joined, **kwargs)
        except Exception as e:
            raise SearchError(f"cannot join Ray at {joined}: {str(e).splitlines()[0]}") from None
    else:
        # a local runtime prestarts its workers at init: let them import torch and the core
        # now, while the driver sets the search up, not inside their first trial (seconds per
        # worker; bench/ray_overhead.py). A cluster starts workers on demand, where the hook
        # would only move that time into actor start.
        # "local": a runtime of its own, also when one started by `ray start` runs on this machine
        # (plain `ray.init()` would join that one, and refuse num_cpus); --address auto joins it
        ray.init(
            address="local",
            num_cpus=settings.num_cpus,
            runtime_env={"worker_process_setup_hook": "trainables.trainable.warm_worker"},
            **kwargs,
        )
    return True


def make_trainable(settings: SearchSettings, dataset: Dataset):
    from ray import tune

    from trainables.trainable import SharedDataset, train_trial

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    fn = tune.with_parameters(
        train_trial, dataset=SharedDataset(dataset), base=settings.base, checkpoint_every=settings.checkpoint_every
    )
    return tune.with_resources(fn, resources)


def make_tuner(settings: SearchSettings, space: Callable, dataset: Dataset, callbacks: list,
               points: list | None = None, searcher=None):
    """The Tuner; `points` (searched params of exported configs) are evaluated first;
    `searcher`: the search's `make_searcher`, when made already (it needs no Ray).

    Several metrics: TPE (Optuna's multi-objective TPE) proposes along their Pareto front,
    and ASHA stops on the first metric alone (it cannot rank on several); the best trial is
    not one trial but a front (`pareto.py`).
    """
    from ray import tune

    from tuner.schedulers.asha import JOURNAL_FILE, JournaledASHA
    from tuner.search.searcher import make_searcher

    epochs = settings.epochs
    # scheduler "none": the same journaled scheduler (it also applies the fault rules) with its
    # first rung at the last epoch, where ASHA has no rung: no trial is stopped early
    grace = epochs if settings.scheduler == "none" else min(settings.grace_period, epochs)
    scheduler = JournaledASHA(
        journal=str(settings.folder / JOURNAL_FILE),
        metric=settings.metrics[0],
        mode=settings.modes[0],
        max_node_losses=settings.max_node_losses,
        time_attr="epoch",
        max_t=epochs,
        grace_period=grace,
        reduction_factor=settings.reduction_factor,
    )
    return tune.Tuner(
        make_trainable(settings, dataset),
        tune_config=tune.TuneConfig(
            search_alg=searcher if searcher is not None else make_searcher(settings, space, points),
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
            # Tune snapshots the experiment whenever a trial has saved num_to_keep checkpoints since
            # the last snapshot (so that the snapshot never names a deleted one): with 1 and a
            # checkpoint per epoch that is a snapshot per result, in the loop every trial waits
            # on. 2 halves them for one more checkpoint per trial on disk (bench/vs_script.py).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            verbose=0,
        ),
    )
