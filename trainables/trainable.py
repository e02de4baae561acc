"""The Ray Tune function trainable: one trial = one `fit` of the core.

The dataset is loaded once on the driver and put in Ray's object store once (`SharedDataset`),
so workers need neither the files nor the time to parse them, and a worker that runs several
trials (reused actors) deserialises it once, not once per trial.
Clusterings are cached on disk by the core (a folder every node can read, `cache_dir`).
Each epoch reports its metrics with a checkpoint (model, optimizer, schedule, generators,
history), so a paused, stopped-and-restored or crashed trial resumes where it was. A trial
restored from a checkpoint (its node was lost, or `mixtune resume` continues it) first
reports that checkpoint's epoch again: the driver then decides on the result it decided on
before (ASHA stops at that result a trial it had stopped after Ray's last snapshot), and logs
each epoch once. A checkpoint that cannot be written raises `StorageUnavailable`, which the
driver tells apart from the trial's own errors (`tuner/faults.py`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from trainables.core.config import TrainConfig
from trainables.core.data import Dataset
from trainables.core.fit import fit

CHECKPOINT_FILE = "state.pt"

_WORKER_DATA: dict[str, Dataset] = {}  # object id -> dataset, this worker's one cached copy


class SharedDataset:
    """A handle to a dataset in Ray's object store: small to pickle, fetched once per worker.

    `tune.with_parameters` alone would deserialise the whole dataset at every trial start
    (hundreds of MB for CIFAR); this handle keeps the last one fetched in the worker.
    """

    def __init__(self, dataset: Dataset):
        import ray

        self.ref = ray.put(dataset)

    def get(self) -> Dataset:
        import ray

        key = self.ref.hex()
        if key not in _WORKER_DATA:
            _WORKER_DATA.clear()  # one search per worker at a time: drop any older dataset
            _WORKER_DATA[key] = ray.get(self.ref)
        return _WORKER_DATA[key]


def trial_config(base: dict[str, Any], params: dict[str, Any], cpus: float | None = None) -> TrainConfig:
    """The trial's TrainConfig: the search's base settings with the trial's parameters on top.

    With `cpus` (the trial's reserved CPUs), num_threads=0 becomes one intra-op thread per
    reserved CPU, so trials sharing a node do not oversubscribe it, and the logged and
    exported config says the thread count that produced the numbers.
    """
    known = TrainConfig.__dataclass_fields__
    cfg = TrainConfig.from_dict({**base, **{k: v for k, v in params.items() if k in known}})
    if cpus is not None and cfg.num_threads == 0:
        cfg = cfg.replace(num_threads=max(1, int(cpus)))
    return cfg


class StorageUnavailable(RuntimeError):
    """The trial's checkpoint could not be written to the search's storage: not the trial's fault."""

    def __init__(self, path: str, reason: str):
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"storage path {self.path} is not writable: a trial could not write its checkpoint there ({self.reason})"


def _storage_path() -> str:
    try:
        return str(tune.get_context().get_storage().storage_fs_path)
    except Exception:  # outside a Tune session
        return "(unknown)"


def report_with_checkpoint(report: dict[str, Any], folder: str) -> None:
    """`tune.report` with the folder as checkpoint; a failure to store it is a StorageUnavailable."""
    try:
        # report copies the folder to the run's storage before returning
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
    except Exception as e:  # SystemExit (Tune stopping the trial) is no Exception and passes
        first = (str(e).strip().splitlines() or [""])[0]
        raise StorageUnavailable(_storage_path(), f"{type(e).__name__}: {first}"[:300]) from e


def load_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        # weights_only: a checkpoint is data (tensors, numbers, strings), never code
        return torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def train_trial(
    params: dict[str, Any], dataset: Dataset | SharedDataset, base: dict[str, Any], checkpoint_every: int = 1
) -> None:
    """Ray Tune entry point; `dataset` and `base` come from `tune.with_parameters`."""
    if isinstance(dataset, SharedDataset):
        dataset = dataset.get()
    ctx = tune.get_context()
    cpus = ctx.get_trial_resources().required_resources.get("CPU", 1)
    cfg = trial_config(base, params, cpus)
    checkpoint = tune.get_checkpoint()
    resume = load_state(checkpoint) if checkpoint else None
    node_id = _node_id()

    def on_epoch(metrics: dict[str, float], make_state) -> None:
        report = {**metrics, "node_id": node_id, "seed": cfg.seed}
        epoch = int(metrics["epoch"])
        if epoch % checkpoint_every and epoch != cfg.epochs:
            tune.report(report)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(make_state(), os.path.join(d, CHECKPOINT_FILE))
            report_with_checkpoint(report, d)

    if resume is not None and resume.get("history"):
        # restored: say where the trial is (the checkpoint's epoch, already stored) before going
        # on, so the scheduler decides on this result as it did before the restore
        tune.report({**resume["history"][-1], "node_id": node_id, "seed": cfg.seed})
        if int(resume["epoch"]) >= cfg.epochs:
            return  # it had finished (after Ray's last snapshot): nothing to train
    fit(cfg, dataset, on_epoch, resume=resume)


def warm_worker() -> None:
    """Ray worker set-up hook: pay the heavy imports when the worker starts."""
    import torch.optim  # noqa: F401  (also pulls torch._dynamo, imported lazily by optimizers)

    import trainables.core.fit  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _node_id() -> str:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (direct calls in tests)
        return "local"
