"""Everything a user can get wrong about a search, checked before anything is written.

`check_search` validates the settings, the tracking URI, the folders, the Ray address, the
data (loaded here: its files, its labels, the validation split's size) and the space (a dry
run), and resolves the metric. Only after it returns does a search create its folder, open
its MLflow parent run or start Ray, so a bad input leaves nothing behind. torch is imported
only once the settings have passed, to load the data.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from trainables.core.config import TrainConfig, default_cache_dir
from tuner.execution.assembly import address_to_join
from tuner.tracking.mlflow_meta import describe_data
from tuner.report.selection import resolve_metrics
from tuner.settings import SAMPLERS, SCHEDULERS, SearchError, SearchSettings, check_name, default_tracking_uri
from tuner.search.space import build_space, pinned_note

if TYPE_CHECKING:
    from trainables.core.data import Dataset  # torch: imported by check_search, where data is loaded


@dataclass
class CheckedSearch:
    """What the checks produce: the settings completed, the dataset, the space, and a note to print."""

    settings: SearchSettings
    dataset: Dataset
    space: Callable
    notes: list[str]  # to print: a metric that reads true labels, what ASHA does with several, warm starts
    warm: Any = None  # warmstart.WarmStart of a new search (None on resume: its study has them already)


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


def check_numbers(settings: SearchSettings) -> None:
    for name, low in (("num_samples", 1), ("max_concurrent", 1), ("grace_period", 1), ("reduction_factor", 2),
                      ("checkpoint_every", 1)):
        if getattr(settings, name) < low:
            raise SearchError(f"{name}={getattr(settings, name)} must be >= {low}")
    if settings.cpus_per_trial <= 0 or settings.gpus_per_trial < 0 or settings.max_failures < 0:
        raise SearchError("cpus_per_trial must be > 0, gpus_per_trial and max_failures >= 0")
    if settings.max_node_losses < -1 or not settings.tracking_outage_limit >= 0:
        raise SearchError(f"max_node_losses={settings.max_node_losses} must be >= -1 (-1: no limit) and "
                          f"tracking_outage_limit={settings.tracking_outage_limit} >= 0 seconds")
    if settings.sampler not in SAMPLERS:
        raise SearchError(f"sampler={settings.sampler!r} is not one of {', '.join(SAMPLERS)}")
    if settings.scheduler not in SCHEDULERS:
        raise SearchError(f"scheduler={settings.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    if settings.startup_trials is not None and settings.startup_trials < 0:
        raise SearchError(f"startup_trials={settings.startup_trials} must be >= 0")
    if settings.mode is not None and not set(settings.mode.split(",")) <= {"max", "min"}:
        raise SearchError(f"mode must be max or min (comma-separated for several metrics), not {settings.mode!r}")


MIN_VAL_ROWS = 100  # below this a validation metric's noise hides the differences between trials


def small_validation_note(n_val: int, n_train: int, val_fraction: float) -> str | None:
    """A warning when the validation split is too small to select with, and what to do about it."""
    if n_val == 0 or n_val >= MIN_VAL_ROWS:
        return None
    total = n_val + n_train
    advice = (f"raise --val-fraction (0.5 gives {int(total * 0.5)} rows) or use more data"
              if MIN_VAL_ROWS / total > 0.5 else
              f"raise --val-fraction to {min(0.5, -(-MIN_VAL_ROWS * 100 // total) / 100):g} or more (>= "
              f"{MIN_VAL_ROWS} rows)")
    return (f"warning: the validation split has only {n_val} rows (val_fraction={val_fraction:g} of {total}): "
            f"too few to tell trials apart (one row moves an accuracy by {1 / n_val:.3f}, and ties are likely); "
            f"{advice}")


def check_search(settings: SearchSettings) -> CheckedSearch:
    """Every check that needs no side effect; completes `settings` (metric, mode, cache, URI)."""
    base = TrainConfig.from_dict(settings.base, source="search config")
    if base.cache_dir is None:
        # trials must share one clustering cache: make it explicit (and absolute) for workers
        base = base.replace(cache_dir=str(default_cache_dir().resolve()))
    settings.base = base.to_dict()
    check_name(settings.name)
    if base.device.startswith("cuda") and settings.gpus_per_trial <= 0:
        raise SearchError(f"device={base.device} needs --gpus-per-trial > 0: Ray hides GPUs from trials without one")
    check_numbers(settings)
    from tuner.tracking.callback import check_tracking_uri

    settings.tracking_uri = settings.tracking_uri or default_tracking_uri()
    check_tracking_uri(settings.tracking_uri)
    check_results_dir(settings.folder)
    check_storage_path(settings.ray_storage)
    check_ray_address(settings.address)
    joined = address_to_join(settings)
    if joined and settings.num_cpus is not None:
        raise SearchError(f"--num-cpus sizes a Ray runtime of the search's own, but it joins the one at {joined} "
                          "(--address or $RAY_ADDRESS): drop one of them")
    from trainables.core.data import load_dataset  # torch
    from trainables.core.split import split_and_label

    dataset = load_dataset(base)
    # the labels this config asks for exist, and the validation split is large enough
    split = split_and_label(base, dataset)
    train_rows = split.train_index
    settings.data = describe_data(base, dataset, len(train_rows), len(split.val_index))
    settings.metric, settings.mode, notes = resolve_metrics(
        settings.metric, settings.mode, base.labels, val=base.val_fraction > 0, test=dataset.has_test,
        train_labels=dataset.y_train is not None,
    )
    small = small_validation_note(len(split.val_index), len(train_rows), base.val_fraction)
    if small:
        notes.append(small)
    space = build_space(settings, n_train=len(train_rows), num_classes=dataset.num_classes,
                        min_side=int(min(dataset.x_train.shape[-2:])))  # (N, C, H, W); tabular (N, 1, 1, D)
    if pinned_note(settings):  # values the user's flags fixed in place of the space's
        notes.append(pinned_note(settings))
    warm = None
    if settings.parent_run_id is None:  # a new search; a resumed one has its study already
        from tuner.search.warmstart import plan

        warm = plan(settings.warm_start, settings, space, partial=settings.warm_start_partial)
        notes += warm.notes
    return CheckedSearch(settings, dataset, space, notes, warm)
