"""What a run's user has: training rows, a validation split, and the labels of both.

The split and the label draw are the user's data, not a trial's randomness: they depend on
`cfg.data_seed` (and the dataset) only, never on the training `seed`, so every trial of a
search sees the same validation rows carrying the same complementary labels. Order:

1. `imbalance_ratio` > 1 subsamples the training split by true class (a long-tailed set);
2. `val_fraction` of the kept rows, drawn uniformly at random (not stratified: stratifying
   would read true labels a complementary-label user does not have), become validation rows;
3. labels for every kept row: one-hot true labels (`ordinary`), complementary labels drawn
   from the true ones (`complementary`, the same draw for training and validation rows), or
   the dataset's own (`given`);
4. Q, the transition matrix FWD, URE and the validation estimates use: the one the labels
   were drawn from, the dataset's `cl_transition`, or an estimate from the training rows'
   given labels (`given_labels.estimate_transition`).

Validation rows never enter training, clustering or the cluster cache key (which hashes
`train_index`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .config import TrainConfig
from .data import Dataset
from .errors import ConfigError, DataError
from .given_labels import estimate_transition
from .labels import complementary_targets, imbalance_indices, ordinary_targets, transition_matrix


@dataclass
class LabelledSplit:
    """Row indices into the dataset's training split, and the labels a run may learn from."""

    train_index: Tensor  # (N,) sorted rows used for training
    val_index: Tensor  # (V,) sorted rows held out for validation; empty when val_fraction = 0
    train_targets: Tensor  # (N, C) float32 dense rows summing to 1: one-hot or complementary
    val_targets: Tensor  # (V, C) the same kind of rows for the validation split
    y_train: Tensor | None  # (N,) true labels of the training rows: diagnostics only; None if unknown
    y_val: Tensor | None  # (V,) true labels of the validation rows: the val metrics of ordinary labels only
    Q: Tensor | None  # (C, C) transition matrix, complementary labels only
    q_source: str | None  # how Q came about: uniform | biased | given | estimated


def _generators(data_seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Separate streams for the rows (imbalance, split) and the labels: changing one leaves the other."""
    return torch.Generator().manual_seed(2 * data_seed), torch.Generator().manual_seed(2 * data_seed + 1)


def validation_size(n: int, val_fraction: float) -> int:
    return int(round(val_fraction * n))


def check_validation_size(n_val: int, n_rows: int, cfg: TrainConfig, num_classes: int) -> None:
    """A validation split needs at least 2 rows per class to say anything; training needs 2 rows."""
    if cfg.val_fraction > 0 and n_val < 2 * num_classes:
        raise ConfigError(
            f"val_fraction={cfg.val_fraction} leaves {n_val} validation rows of {n_rows}; at least 2 x "
            f"{num_classes} classes = {2 * num_classes} are needed (raise val_fraction, or 0 turns validation off)"
        )
    if n_rows - n_val < 2:
        raise ConfigError(f"val_fraction={cfg.val_fraction} leaves {n_rows - n_val} training rows of {n_rows}")


def split_rows(cfg: TrainConfig, dataset: Dataset) -> tuple[Tensor, Tensor]:
    """(train_index, val_index), each sorted, from cfg.imbalance_ratio, val_fraction and data_seed."""
    rows_gen, _ = _generators(cfg.data_seed)
    C = dataset.num_classes
    n = len(dataset.x_train)
    if cfg.imbalance_ratio > 1:
        if dataset.y_train is None:
            raise DataError(f"imbalance_ratio={cfg.imbalance_ratio} subsamples by true class; {dataset.name} has none")
        keep = imbalance_indices(dataset.y_train, C, cfg.imbalance_ratio, rows_gen)
    else:
        keep = torch.arange(n)
    n_val = validation_size(len(keep), cfg.val_fraction)
    check_validation_size(n_val, len(keep), cfg, C)
    order = torch.randperm(len(keep), generator=rows_gen)
    return keep[order[n_val:].sort().values], keep[order[:n_val].sort().values]


def split_and_label(cfg: TrainConfig, dataset: Dataset) -> LabelledSplit:
    """The training and validation rows of `cfg`, with their labels and Q (all CPU tensors)."""
    C = dataset.num_classes
    where = Path(cfg.data_dir).name if cfg.data_dir else dataset.name
    train_index, val_index = split_rows(cfg, dataset)
    _, labels_gen = _generators(cfg.data_seed)
    y = dataset.y_train
    if cfg.labels == "given":
        if dataset.cl_train is None:
            raise DataError(f"labels=given, but {where} carries no complementary labels (cl_train)")
        targets_of = dataset.cl_train
        if dataset.cl_transition is not None:
            Q, source = dataset.cl_transition.float(), "given"
        else:
            Q, source = estimate_transition(dataset.cl_train[train_index]), "estimated"
    else:
        if y is None:
            raise DataError(f"labels={cfg.labels} needs true training labels (y_train), which {where} lacks;"
                            " use labels=given for its complementary labels")
        Q, source = None, None
        if cfg.labels == "ordinary":
            targets_of = ordinary_targets(y, C)
        else:
            if cfg.cl_type == "multiple" and cfg.num_cl > C - 1:
                raise ConfigError(f"num_cl={cfg.num_cl} must be <= {C - 1} (classes - 1) for {dataset.name}")
            Q = transition_matrix(C, cfg.cl_type, cfg.cl_noise, labels_gen, cfg.num_cl)
            source = "biased" if cfg.cl_type == "biased" else "uniform"
            # drawn for every training-split row at once: a row's labels do not depend on which
            # side of the split it falls, nor on val_fraction
            targets_of = torch.zeros(len(y), C)
            kept = torch.cat([train_index, val_index]).sort().values
            targets_of[kept] = complementary_targets(y[kept], C, cfg.cl_type, cfg.num_cl, cfg.cl_noise, Q, labels_gen)
    return LabelledSplit(
        train_index=train_index,
        val_index=val_index,
        train_targets=targets_of[train_index],
        val_targets=targets_of[val_index],
        y_train=None if y is None else y[train_index],
        y_val=None if y is None else y[val_index],
        Q=Q,
        q_source=source,
    )
