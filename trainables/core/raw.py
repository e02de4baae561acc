"""What every dataset loader returns (`RawSplit`), and the helpers loaders share.

A loader reads files and returns raw arrays; `data.load_dataset` turns them into normalised
tensors. Keeping the two apart lets the torchvision-backed loaders (`vision.py`), the image
folders (`folder.py`) and the embedded ones (`data.py`) share one assembly step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import DataError

SPLIT_SEED = 0  # the split of one-split datasets is fixed, so every trial sees the same data


@dataclass
class RawSplit:
    """What a loader returns: raw arrays (N, C, H, W) of any numeric dtype, before scaling."""

    x_train: np.ndarray
    y_train: np.ndarray | None  # (N,) integer; None when only complementary labels are given
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    scale: float  # divide pixels by this (255 for uint8 images, 16 for digits, 1 for floats)
    split: str  # how train/test came about; part of the fingerprint
    cl_train: np.ndarray | None = None  # (N, num_classes) float32 given complementary-label rows
    cl_transition: np.ndarray | None = None  # (num_classes, num_classes) float32 given Q
    tabular: bool = False  # x holds (N, D) float features, not pixels: standardised one by one


def stratified_split(y: np.ndarray, train_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices keeping round(train_fraction * n_c) of each class c for training."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    for c in np.unique(y):  # loop over classes, not examples
        idx = np.flatnonzero(y == c)
        train.append(idx[rng.permutation(len(idx))[: int(round(train_fraction * len(idx)))]])
    keep = np.zeros(len(y), dtype=bool)
    keep[np.concatenate(train) if train else np.zeros(0, dtype=np.int64)] = True
    return np.flatnonzero(keep), np.flatnonzero(~keep)


def split_one(x: np.ndarray, y: np.ndarray, train_fraction: float, where: str) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) of a dataset shipped as one split, stratified by class."""
    tr, te = stratified_split(y, train_fraction)
    if len(tr) == 0 or len(te) == 0:
        raise DataError(
            f"{where}: train_fraction={train_fraction} leaves an empty {'train' if len(tr) == 0 else 'test'} split"
            f" of {len(y)} examples"
        )
    return x[tr], y[tr], x[te], y[te]


def split_name(train_fraction: float) -> str:
    """How a one-split dataset was split: part of its fingerprint."""
    return f"stratified train_fraction={train_fraction!r} seed={SPLIT_SEED}"


def data_dir(cfg: TrainConfig) -> Path:
    """cfg.data_dir as a path; a DataError when the dataset needs one and it is not set."""
    if not cfg.data_dir:
        raise DataError(f"dataset={cfg.dataset} needs data_dir (a directory, or the .npz file)")
    return Path(cfg.data_dir).expanduser()


def check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """(N,) integer labels in [0, num_classes) as int64; a DataError naming the first bad one."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels have shape {y.shape} dtype {y.dtype}, expected (N,) integers")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.max() if y.max() >= num_classes else y.min())
        raise DataError(f"{where}: label {bad} out of range 0..{num_classes - 1}")
    return y.astype(np.int64)
