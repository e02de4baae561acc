"""Datasets as CPU tensors, loaded once: digits (embedded), MNIST idx files, CIFAR pickles, `.npz`
(which may carry given complementary labels instead of true ones).

Every loader returns raw arrays in (N, C, H, W) layout; `load_dataset` then scales them to
float32, normalises per channel with the *train* statistics and fingerprints the content, so
a clustering cached for one dataset is never reused for another. mixtune never downloads:
a missing dataset is a `DataError` that says where to put the files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .errors import DataError

SPLIT_SEED = 0  # the split of one-split datasets is fixed, so every trial sees the same data


@dataclass
class Dataset:
    """Train and test tensors of one dataset, normalised with the train statistics.

    True training labels are absent (`y_train` None) when the data comes with given
    complementary labels only (`cl_train`); the test split is absent when the file has none,
    and then there are no test metrics.
    """

    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32, normalised per channel with the train mean/std
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


# ---------------------------------------------------------------------------- helpers
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


def _split_one(x: np.ndarray, y: np.ndarray, train_fraction: float, where: str) -> tuple[np.ndarray, ...]:
    tr, te = stratified_split(y, train_fraction)
    if len(tr) == 0 or len(te) == 0:
        raise DataError(
            f"{where}: train_fraction={train_fraction} leaves an empty {'train' if len(tr) == 0 else 'test'} split"
            f" of {len(y)} examples"
        )
    return x[tr], y[tr], x[te], y[te]


def _split_name(train_fraction: float) -> str:
    return f"stratified train_fraction={train_fraction!r} seed={SPLIT_SEED}"


def _data_dir(cfg: TrainConfig) -> Path:
    if not cfg.data_dir:
        raise DataError(f"dataset={cfg.dataset} needs data_dir (a directory, or the .npz file)")
    return Path(cfg.data_dir).expanduser()


# ---------------------------------------------------------------------------- digits
def digits_arrays(cfg: TrainConfig) -> RawSplit:
    """sklearn's embedded 8x8 digits (1797 images, no download), split stratified with train_fraction."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    x = bunch.images[:, None]  # (1797, 1, 8, 8) float64, values 0..16
    y = bunch.target.astype(np.int64)
    xtr, ytr, xte, yte = _split_one(x, y, cfg.train_fraction, "digits")
    return RawSplit(xtr, ytr, xte, yte, 10, 16.0, _split_name(cfg.train_fraction))


# ---------------------------------------------------------------------------- MNIST idx
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dim
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one idx file (gzipped if its name ends in .gz) of unsigned bytes with the expected magic number."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # EOFError: a gzip stream cut short
        raise DataError(f"{path}: cannot read ({e.strerror if isinstance(e, OSError) and e.strerror else e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated (only {len(raw)} bytes, no idx header)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated ({len(raw)} bytes, header alone needs {header})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    want = int(np.prod(dims, dtype=np.int64))
    have = len(raw) - header
    if have < want:
        raise DataError(f"{path}: truncated (dims {dims} need {want} bytes of data, found {have})")
    if have > want:
        raise DataError(f"{path}: {have - want} unexpected bytes after the data declared by dims {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _mnist_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images (N, 1, 28, 28) uint8, labels (N,) int64) of one split, or None when both files are absent."""
    img_stem, lbl_stem = MNIST_FILES[split]
    img, lbl = _find_idx(folder, img_stem), _find_idx(folder, lbl_stem)
    if img is None and lbl is None:
        return None
    if img is None or lbl is None:
        missing = img_stem if img is None else lbl_stem
        raise DataError(f"MNIST in {folder}: {missing}[.gz] is missing (found {(lbl or img).name})")
    x, y = read_idx(img, IDX_IMAGES_MAGIC), read_idx(lbl, IDX_LABELS_MAGIC)
    if len(x) != len(y):
        raise DataError(f"{lbl}: {len(y)} labels but {img.name} has {len(x)} images")
    if len(y) and y.max() > 9:
        raise DataError(f"{lbl}: label {int(y.max())} out of range 0..9")
    return x[:, None], y.astype(np.int64)


def mnist_arrays(cfg: TrainConfig) -> RawSplit:
    """MNIST or Fashion-MNIST idx files (plain or .gz) in data_dir; a t10k set alone is split stratified."""
    root = _data_dir(cfg)
    # torchvision keeps the same files under <root>/MNIST/raw or <root>/FashionMNIST/raw
    candidates = [root, root / "MNIST" / "raw", root / "FashionMNIST" / "raw"]
    folder = next((d for d in candidates if any(_find_idx(d, s) for pair in MNIST_FILES.values() for s in pair)), None)
    if folder is None:
        raise DataError(
            f"MNIST not found: expected {root / MNIST_FILES['t10k'][0]}[.gz] and {MNIST_FILES['t10k'][1]}[.gz]"
            f" (and train-*-ubyte[.gz] for the full set); download them from a MNIST mirror into {root}"
            " (mixtune never downloads)"
        )
    test = _mnist_pair(folder, "t10k")
    train = _mnist_pair(folder, "train")
    if train is not None and test is not None:
        return RawSplit(*train, *test, 10, 255.0, "given")
    x, y = train if train is not None else test
    xtr, ytr, xte, yte = _split_one(x, y, cfg.train_fraction, str(folder))
    return RawSplit(xtr, ytr, xte, yte, 10, 255.0, _split_name(cfg.train_fraction))


# ---------------------------------------------------------------------------- CIFAR
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR variant lives on disk and how its pickles name the labels."""

    folder: str  # torchvision's folder name under the root
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: bytes
    num_classes: int
    title: str
    archive: str


CIFAR = {
    "cifar10": CifarSpec(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
        10,
        "CIFAR-10",
        "cifar-10-python.tar.gz",
    ),
    "cifar100": CifarSpec(
        "cifar-100-python", ("train",), ("test",), b"fine_labels", 100, "CIFAR-100", "cifar-100-python.tar.gz"
    ),
}


def _read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    # Unpickling can run code: only point data_dir at files you trust. Reading the python
    # pickles is the convention of torchvision and of the CIFAR authors' own distribution.
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # UnpicklingError, EOFError, ... from a damaged file
        raise DataError(f"{path}: not a CIFAR python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path}: expected a dict with keys b'data' and {label_key!r}")
    x = np.asarray(batch[b"data"])
    y = np.asarray(batch[label_key])
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.dtype != np.uint8:
        raise DataError(f"{path}: data has shape {x.shape} dtype {x.dtype}, expected (N, 3072) uint8")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {label_key.decode()} has shape {y.shape}, expected ({len(x)},) integers")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.max() if y.max() >= num_classes else y.min())
        raise DataError(f"{path}: label {bad} out of range 0..{num_classes - 1}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)  # rows are channel-major: R plane, G, B


def cifar_arrays(cfg: TrainConfig) -> RawSplit:
    """CIFAR-10/100 python pickles in torchvision's layout under data_dir (or data_dir is the batches folder)."""
    spec = CIFAR[cfg.dataset]
    root = _data_dir(cfg)
    folder = root / spec.folder
    if not (folder / spec.train[0]).is_file() and (root / spec.train[0]).is_file():
        folder = root  # data_dir points at the extracted folder itself
    for name in spec.train + spec.test:
        if not (folder / name).is_file():
            raise DataError(
                f"{spec.title} not found: expected {folder / name}; download {spec.archive} from {CIFAR_URL}"
                f" and extract it into {root} (mixtune never downloads)"
            )

    def read(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_read_cifar_batch(folder / n, spec.label_key, spec.num_classes) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return RawSplit(*read(spec.train), *read(spec.test), spec.num_classes, 255.0, "given")


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

    path = _data_dir(cfg)
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
    return RawSplit(xtr, ytr, xte, yte, num_classes, scale, "given", cl_train=cl, cl_transition=Q)


LOADERS: dict[str, Callable[[TrainConfig], RawSplit]] = {
    "digits": digits_arrays,
    "mnist": mnist_arrays,
    "cifar10": cifar_arrays,
    "cifar100": cifar_arrays,
    "npz": npz_arrays,
}


# ---------------------------------------------------------------------------- assembly
def fingerprint(name: str, raw: RawSplit) -> str:
    """sha256 hex over the dataset name, split settings and the raw arrays (dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(f"mixtune-data-v1|{name}|{raw.split}|{raw.num_classes}|{raw.scale!r}".encode())
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
    """Load cfg.dataset as CPU tensors, normalised per channel with the train mean/std."""
    if cfg.dataset not in LOADERS:
        raise DataError(f"dataset={cfg.dataset!r} is not one of {', '.join(LOADERS)}")
    raw = LOADERS[cfg.dataset](cfg)
    key = fingerprint(cfg.dataset, raw)  # over the raw arrays, before any conversion
    x_train = _as_float(raw.x_train, raw.scale)
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
