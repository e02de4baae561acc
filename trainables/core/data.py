"""Datasets as CPU tensors, loaded once: the one table of loaders (`LOADERS`), digits (embedded)
and `.npz` files here; the datasets torchvision reads in `vision.py`; your own image folders in
`folder.py`; the CLImage benchmarks' pickles in `climage.py`.

Every loader returns raw arrays in (N, C, H, W) layout (`raw.RawSplit`); `load_dataset` then
scales them to float32, normalises them with the *train* statistics (per channel for images,
per feature for tabular float features) and fingerprints the content, so a clustering cached
for one dataset is never reused for another. mixtune never downloads: a missing dataset is a
`DataError` that says where to put the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .climage import climage_arrays
from .config import TrainConfig
from .errors import DataError
from .folder import folder_arrays
from .raw import SPLIT_SEED, RawSplit, data_dir, split_name, split_one, stratified_split
from .vision import cifar_arrays, idx_arrays, svhn_arrays

__all__ = ["LOADERS", "SPLIT_SEED", "DataError", "Dataset", "RawSplit", "fingerprint", "load_dataset",
           "stratified_split"]


@dataclass
class Dataset:
    """Train and test tensors of one dataset, normalised with the train statistics.

    True training labels are absent (`y_train` None) when the data comes with given
    complementary labels only (`cl_train`); the test split is absent when the file has none,
    and then there are no test metrics.
    """

    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32, normalised with the train mean/std (per channel or per feature)
    y_train: torch.Tensor | None  # (N,) int64 true labels in [0, num_classes); None: not known
    x_test: torch.Tensor | None  # (M, C, H, W) float32, normalised with the same train statistics
    y_test: torch.Tensor | None  # (M,) int64; None: no test labels, no test metrics
    num_classes: int
    fingerprint: str  # sha256 hex over the raw arrays + split settings: a cache key for clusterings
    cl_train: torch.Tensor | None = None  # (N, num_classes) float32 given complementary-label rows, each sums to 1
    cl_transition: torch.Tensor | None = None  # (num_classes, num_classes) given Q = P(CL j | true class i)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example."""
        return tuple(self.x_train.shape[1:])

    @property
    def has_test(self) -> bool:
        """Test images with true labels: test metrics can be computed."""
        return self.x_test is not None and self.y_test is not None

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on `device` (non-blocking copies)."""
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=True)
                 for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)


# ---------------------------------------------------------------------------- digits
def digits_table() -> np.ndarray:
    """scikit-learn's digits as `load_digits` reads them: (1797, 65) float64, 64 pixels then the label.

    Read from the file scikit-learn ships, found without importing scikit-learn (about a
    second here, a search's fixed cost: issue 26); through `load_digits` where the file is
    not where this version keeps it.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, mode="rt", encoding="utf-8") as f:
                return np.loadtxt(f, delimiter=",")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.concatenate([bunch.data, bunch.target[:, None]], axis=1)


def digits_arrays(cfg: TrainConfig) -> RawSplit:
    """scikit-learn's embedded 8x8 digits (1797 images, no download), split stratified with train_fraction."""
    table = digits_table()
    x = table[:, :-1].reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8) float64, values 0..16
    y = table[:, -1].astype(np.int64)
    xtr, ytr, xte, yte = split_one(x, y, cfg.train_fraction, "digits")
    return RawSplit(xtr, ytr, xte, yte, 10, 16.0, split_name(cfg.train_fraction))


# ---------------------------------------------------------------------------- npz
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("cl_train", "cl_transition", "num_classes")
ARRAY_KEYS = (*NPZ_KEYS, "cl_train", "cl_transition")  # what the fingerprint hashes


def _npz_images(x: np.ndarray, name: str, where: str) -> np.ndarray:
    """(N, D) | (N, H, W) | (N, H, W, C) | (N, C, H, W), C in {1, 3} -> (N, C, H, W)."""
    if x.dtype.kind not in "uif" or x.dtype == np.bool_:
        raise DataError(f"{where}: {name} has dtype {x.dtype}, expected uint8 or floats")
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)  # channels-last -> channels-first
        raise DataError(f"{where}: {name} has shape {x.shape}; 4-D images need 1 or 3 channels, first or last")
    raise DataError(f"{where}: {name} has shape {x.shape}; expected (N, D), (N, H, W), (N, H, W, C) or (N, C, H, W)")


def _npz_labels(y: np.ndarray, x: np.ndarray, name: str, xname: str, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{where}: {name} has shape {y.shape}, expected 1-D labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {name} has dtype {y.dtype}, expected integer labels")
    if len(y) != len(x):
        raise DataError(f"{where}: {name} has {len(y)} labels but {xname} has {len(x)} images")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: {name} has a negative label {int(y.min())}")
    return y.astype(np.int64)


def _npz_num_classes(arrays: dict[str, np.ndarray], where: str) -> int:
    """The file's num_classes, else the largest class any label array names, plus one."""
    given = arrays.get("num_classes")
    if given is not None:
        if given.shape != () or not np.issubdtype(given.dtype, np.integer) or int(given) < 2:
            raise DataError(f"{where}: num_classes must be one integer >= 2, got {given!r}")
        return int(given)
    found = [int(arrays[k].max()) + 1 for k in ("y_train", "y_test") if arrays.get(k) is not None and arrays[k].size]
    if found:
        return max(found)  # a complementary label beyond the true labels' classes is an error below
    from .given_labels import cl_num_classes

    return cl_num_classes(arrays["cl_train"], None)


def npz_arrays(cfg: TrainConfig) -> RawSplit:
    """A .npz file (no pickled objects): x_train with y_train and/or cl_train; x_test, y_test optional.

    cl_train holds given complementary labels: (N,) one each, (N, m) padded with -1, or an
    (N, C) bool / 0-1 mask (see given_labels.py). cl_transition (C, C) is their Q when known;
    num_classes is needed only when no label array names the last class.
    """
    from .given_labels import check_transition, cl_targets

    path = data_dir(cfg)
    where = path.name
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x_train" not in f.files or not ({"y_train", "cl_train"} & set(f.files)):
                need = "x_train" if "x_train" not in f.files else "y_train (true labels) or cl_train (complementary labels)"
                raise DataError(f"{where}: missing array(s) {need} (has {', '.join(f.files) or 'none'})")
            if "y_test" in f.files and "x_test" not in f.files:
                raise DataError(f"{where}: missing array(s) x_test (y_test labels it; has {', '.join(f.files)})")
            arrays = {k: f[k] for k in (*NPZ_KEYS, *NPZ_OPTIONAL) if k in f.files}
    except DataError:
        raise
    except Exception as e:  # BadZipFile, ValueError (object arrays), OSError
        raise DataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    xtr = _npz_images(arrays["x_train"], "x_train", where)
    if len(xtr) == 0:
        raise DataError(f"{where}: x_train is empty")
    xte = _npz_images(arrays["x_test"], "x_test", where) if "x_test" in arrays else None
    if xte is not None and xtr.shape[1:] != xte.shape[1:]:
        raise DataError(
            f"{where}: x_train images {tuple(xtr.shape[1:])} and x_test images {tuple(xte.shape[1:])} differ in shape"
        )
    ytr = _npz_labels(arrays["y_train"], xtr, "y_train", "x_train", where) if "y_train" in arrays else None
    yte = _npz_labels(arrays["y_test"], xte, "y_test", "x_test", where) if "y_test" in arrays else None
    if xte is not None and len(xte) == 0 or yte is not None and len(yte) == 0:
        raise DataError(f"{where}: x_test is empty (leave x_test and y_test out for no test split)")
    if xtr.dtype.kind == "f" and not (np.isfinite(xtr).all() and (xte is None or np.isfinite(xte).all())):
        raise DataError(f"{where}: x_train or x_test holds NaN or infinite values")
    arrays["y_train"], arrays["y_test"] = ytr, yte
    num_classes = _npz_num_classes(arrays, where)
    if num_classes < 2:
        raise DataError(f"{where}: labels have a single class; mixtune needs at least 2")
    for name, y in (("y_train", ytr), ("y_test", yte)):
        if y is not None and y.size and y.max() >= num_classes:
            raise DataError(f"{where}: {name} has label {int(y.max())}, but num_classes is {num_classes}")
    cl = None
    if "cl_train" in arrays:
        if len(arrays["cl_train"]) != len(xtr):
            raise DataError(f"{where}: cl_train has {len(arrays['cl_train'])} rows but x_train has {len(xtr)} images")
        cl = cl_targets(arrays["cl_train"], num_classes, where)
    Q = check_transition(arrays["cl_transition"], num_classes, where) if "cl_transition" in arrays else None
    if xte is not None and (xtr.dtype == np.uint8) != (xte.dtype == np.uint8):  # one scale, or test drifts
        raise DataError(
            f"{where}: x_train is {xtr.dtype} but x_test is {xte.dtype}; save both as uint8 or both as floats"
        )
    scale = 255.0 if xtr.dtype == np.uint8 else 1.0
    tabular = arrays["x_train"].ndim == 2 and xtr.dtype.kind == "f"  # (N, D) float features, not pixels
    return RawSplit(xtr, ytr, xte, yte, num_classes, scale, "given", cl_train=cl, cl_transition=Q, tabular=tabular)


LOADERS: dict[str, Callable[[TrainConfig], RawSplit]] = {
    "digits": digits_arrays,
    "mnist": idx_arrays,
    "fashion_mnist": idx_arrays,
    "kmnist": idx_arrays,
    "cifar10": cifar_arrays,
    "cifar100": cifar_arrays,
    "cifar20": cifar_arrays,
    "svhn": svhn_arrays,
    "npz": npz_arrays,
    "folder": folder_arrays,
    "clcifar10": climage_arrays,  # CLImage: annotators' complementary labels, read as released (climage.py)
    "clcifar20": climage_arrays,
    "clmicro_imagenet10": climage_arrays,
    "clmicro_imagenet20": climage_arrays,
}


# ---------------------------------------------------------------------------- assembly
def fingerprint(name: str, raw: RawSplit, per_feature: bool = False) -> str:
    """sha256 hex over the dataset name, split settings, normalisation and the raw arrays (dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(f"mixtune-data-v1|{name}|{raw.split}|{raw.num_classes}|{raw.scale!r}".encode())
    if per_feature:  # other normalised values, other clusterings; datasets normalised per channel keep their key
        h.update(b"|standardized per feature")
    for key in ARRAY_KEYS:
        value = getattr(raw, key)
        if value is None:
            if key in ("cl_train", "cl_transition"):
                continue  # files without them keep the fingerprint they always had
            h.update(f"|{key}|none|".encode())
            continue
        a = np.ascontiguousarray(value)
        h.update(f"|{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _as_float(x: np.ndarray, scale: float) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, dtype=np.float32, order="C", copy=True))  # a fresh copy: safe to edit in place
    return t.div_(scale) if scale != 1.0 else t


def _labels(y: np.ndarray | None) -> torch.Tensor | None:
    return None if y is None else torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def load_dataset(cfg: TrainConfig) -> Dataset:
    """Load cfg.dataset as CPU tensors, normalised with the train mean/std.

    Images are normalised per channel. Tabular float features, an (N, D) float `.npz`, are
    standardised one by one when cfg.standardize_features is on (the default): their scales
    differ by orders of magnitude, and one shared mean/std would leave the small ones near zero.
    """
    if cfg.dataset not in LOADERS:
        raise DataError(f"dataset={cfg.dataset!r} is not one of {', '.join(LOADERS)}")
    raw = LOADERS[cfg.dataset](cfg)
    per_feature = raw.tabular and cfg.standardize_features
    key = fingerprint(cfg.dataset, raw, per_feature)  # over the raw arrays, before any conversion
    x_train = _as_float(raw.x_train, raw.scale)
    if per_feature:
        std, mean = torch.std_mean(x_train, dim=0, correction=0, keepdim=True)  # (1, 1, 1, D)
        std = torch.where(std < 1e-6, torch.ones_like(std), std)  # a constant feature is only centred (as sklearn does)
    else:
        std, mean = torch.std_mean(x_train, dim=(0, 2, 3), correction=0, keepdim=True)  # (1, C, 1, 1)
        std = std.clamp_min(1e-6)  # a constant channel (e.g. an always-black border) stays finite
    x_test = None if raw.x_test is None else _as_float(raw.x_test, raw.scale).sub_(mean).div_(std)
    return Dataset(
        name=cfg.dataset,
        x_train=x_train.sub_(mean).div_(std),  # in place: CIFAR's train set is 600 MB as float32
        y_train=_labels(raw.y_train),
        x_test=x_test,
        y_test=_labels(raw.y_test),
        num_classes=raw.num_classes,
        fingerprint=key,
        cl_train=None if raw.cl_train is None else torch.from_numpy(raw.cl_train),
        cl_transition=None if raw.cl_transition is None else torch.from_numpy(raw.cl_transition),
    )
