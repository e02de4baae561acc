"""Datasets torchvision reads: MNIST, Fashion-MNIST, Kuzushiji-MNIST, CIFAR-10, CIFAR-100,
CIFAR-20 (CIFAR-100's 20 superclasses) and SVHN.

Each is read with `download=False` from a root in torchvision's own layout, the folder that
`torchvision.datasets.X(root, download=True)` leaves, so an existing torchvision data folder
just works. The MNIST family also reads a flat folder of idx files, plain or .gz, as the
MNIST mirrors serve them. Only the arrays torchvision has parsed (`.data`, `.targets`) are
used, never `__getitem__`: no per-sample PIL image anywhere.

torchvision's errors say "Dataset not found or corrupted", and its idx parser validates with
`assert`. So the files are looked for first, and every failure becomes a one-line
`DataError` that names the file and says where the files come from. mixtune never downloads.
torchvision is imported inside the loaders: it takes seconds, and only these loaders need it.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import DataError
from .raw import RawSplit, check_labels, data_dir, split_name, split_one

NEVER = "(mixtune never downloads)"


# ---------------------------------------------------------------------------- MNIST family
@dataclass(frozen=True)
class IdxSpec:
    """One idx dataset: its title, torchvision's class (and folder) name, where it comes from."""

    title: str
    cls: str  # torchvision.datasets class; it reads <root>/<cls>/raw
    source: str


IDX = {
    "mnist": IdxSpec("MNIST", "MNIST", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": IdxSpec("Fashion-MNIST", "FashionMNIST", "https://github.com/zalandoresearch/fashion-mnist"),
    "kmnist": IdxSpec("Kuzushiji-MNIST", "KMNIST", "https://github.com/rois-codh/kmnist"),
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dim
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def check_idx_header(plain: Path, shown: Path, magic: int) -> None:
    """The header of an idx file agrees with the expected magic number and with the file's size.

    torchvision's parser checks the header with `assert` (gone under `python -O`, and no
    message) and does not check the size, so a truncated file would fail later with a
    reshape error; this names the file and the problem instead.
    """
    try:
        size = plain.stat().st_size
        with open(plain, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise DataError(f"{shown}: cannot read ({e.strerror or e})") from None
    if len(head) < 4:
        raise DataError(f"{shown}: truncated (only {size} bytes, no idx header)")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise DataError(f"{shown}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if size < header:
        raise DataError(f"{shown}: truncated ({size} bytes, header alone needs {header})")
    dims = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    want, have = int(np.prod(dims, dtype=np.int64)), size - header
    if have < want:
        raise DataError(f"{shown}: truncated (dims {dims} need {want} bytes of data, found {have})")
    if have > want:
        raise DataError(f"{shown}: {have - want} unexpected bytes after the data declared by dims {dims}")


def _plain(path: Path, magic: int, tmp: Path) -> Path:
    """`path` itself, or for a .gz its decompressed copy in `tmp`; the header checked either way."""
    plain = path
    if path.suffix == ".gz":
        # torchvision's idx reader opens plain files only (its MNIST class unpacks the .gz
        # when it downloads), so a .gz from a mirror is decompressed to a temporary file
        plain = tmp / path.stem
        try:
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError: cut short
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise DataError(f"{path}: cannot read ({why})") from None
    check_idx_header(plain, path, magic)
    return plain


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_pair(folder: Path, split: str, title: str, tmp: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(images (N, 28, 28) uint8, labels (N,) int64) of one split, or None when both files are absent."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    img_stem, lbl_stem = IDX_FILES[split]
    img, lbl = _find_idx(folder, img_stem), _find_idx(folder, lbl_stem)
    if img is None and lbl is None:
        return None
    if img is None or lbl is None:
        missing = img_stem if img is None else lbl_stem
        raise DataError(f"{title} in {folder}: {missing}[.gz] is missing (found {(lbl or img).name})")
    x = read_image_file(str(_plain(img, IDX_IMAGES_MAGIC, tmp))).numpy()
    y = read_label_file(str(_plain(lbl, IDX_LABELS_MAGIC, tmp))).numpy()
    return _checked_pair(x, y, img, lbl)


def _checked_pair(x: np.ndarray, y: np.ndarray, img: Path, lbl: Path) -> tuple[np.ndarray, np.ndarray]:
    if len(x) != len(y):
        raise DataError(f"{lbl}: {len(y)} labels but {img.name} has {len(x)} images")
    return x, check_labels(y, 10, str(lbl))


def _torchvision_idx(spec: IdxSpec, root: Path, raw: Path) -> RawSplit:
    """A complete torchvision root (all four plain files in <root>/<cls>/raw): torchvision's class reads it."""
    import torchvision.datasets as tvd

    for split, (img_stem, lbl_stem) in IDX_FILES.items():
        check_idx_header(raw / img_stem, raw / img_stem, IDX_IMAGES_MAGIC)
        check_idx_header(raw / lbl_stem, raw / lbl_stem, IDX_LABELS_MAGIC)
    parts = []
    for train, (img_stem, lbl_stem) in zip((True, False), IDX_FILES.values()):
        try:
            ds = getattr(tvd, spec.cls)(str(root), train=train, download=False)
        except Exception as e:  # the files were checked above: anything left is torchvision's to explain
            raise DataError(f"{raw}: torchvision.datasets.{spec.cls} cannot read it ({type(e).__name__}: {e})") from None
        parts.append(_checked_pair(ds.data.numpy(), ds.targets.numpy(), raw / img_stem, raw / lbl_stem))
    (xtr, ytr), (xte, yte) = parts
    return RawSplit(xtr[:, None], ytr, xte[:, None], yte, 10, 255.0, "given")


def idx_arrays(cfg: TrainConfig) -> RawSplit:
    """MNIST, Fashion-MNIST or KMNIST: torchvision's root (<root>/<cls>/raw) or a flat folder of idx files.

    A test set alone (t10k, as in a folder holding only MNIST's test files) or a training set
    alone is split stratified with train_fraction.
    """
    spec = IDX[cfg.dataset]
    root = data_dir(cfg)
    raw = root / spec.cls / "raw"
    if all((raw / s).is_file() for pair in IDX_FILES.values() for s in pair):
        return _torchvision_idx(spec, root, raw)
    folder = next((d for d in (raw, root) if any(_find_idx(d, s) for p in IDX_FILES.values() for s in p)), None)
    if folder is None:
        other = next((name for name, o in IDX.items() if o is not spec and (root / o.cls / "raw").is_dir()), None)
        if other is not None:
            raise DataError(f"{spec.title} not found in {root}, which holds {IDX[other].cls}/raw:"
                            f" use dataset={other}")
        raise DataError(
            f"{spec.title} not found: expected {root / IDX_FILES['t10k'][0]}[.gz] and {IDX_FILES['t10k'][1]}[.gz]"
            f" (and train-*-ubyte[.gz] for the full set), or torchvision's {raw}; download them from"
            f" {spec.source} into {root} {NEVER}"
        )
    with tempfile.TemporaryDirectory(prefix="mixtune-idx-") as tmp:
        test = _idx_pair(folder, "t10k", spec.title, Path(tmp))
        train = _idx_pair(folder, "train", spec.title, Path(tmp))
    if train is not None and test is not None:
        return RawSplit(train[0][:, None], train[1], test[0][:, None], test[1], 10, 255.0, "given")
    x, y = train if train is not None else test
    xtr, ytr, xte, yte = split_one(x[:, None], y, cfg.train_fraction, str(folder))
    return RawSplit(xtr, ytr, xte, yte, 10, 255.0, split_name(cfg.train_fraction))


# ---------------------------------------------------------------------------- CIFAR
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

# CIFAR-100's 20 superclasses in the order of its meta file's coarse_label_names, each with
# its 5 classes (names as in fine_label_names), from the dataset's page. torchvision's CIFAR100
# reads the fine labels only; the coarse label of an image is a function of its fine label.
CIFAR100_SUPERCLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aquatic_mammals", ("beaver", "dolphin", "otter", "seal", "whale")),
    ("fish", ("aquarium_fish", "flatfish", "ray", "shark", "trout")),
    ("flowers", ("orchid", "poppy", "rose", "sunflower", "tulip")),
    ("food_containers", ("bottle", "bowl", "can", "cup", "plate")),
    ("fruit_and_vegetables", ("apple", "mushroom", "orange", "pear", "sweet_pepper")),
    ("household_electrical_devices", ("clock", "keyboard", "lamp", "telephone", "television")),
    ("household_furniture", ("bed", "chair", "couch", "table", "wardrobe")),
    ("insects", ("bee", "beetle", "butterfly", "caterpillar", "cockroach")),
    ("large_carnivores", ("bear", "leopard", "lion", "tiger", "wolf")),
    ("large_man-made_outdoor_things", ("bridge", "castle", "house", "road", "skyscraper")),
    ("large_natural_outdoor_scenes", ("cloud", "forest", "mountain", "plain", "sea")),
    ("large_omnivores_and_herbivores", ("camel", "cattle", "chimpanzee", "elephant", "kangaroo")),
    ("medium_mammals", ("fox", "porcupine", "possum", "raccoon", "skunk")),
    ("non-insect_invertebrates", ("crab", "lobster", "snail", "spider", "worm")),
    ("people", ("baby", "boy", "girl", "man", "woman")),
    ("reptiles", ("crocodile", "dinosaur", "lizard", "snake", "turtle")),
    ("small_mammals", ("hamster", "mouse", "rabbit", "shrew", "squirrel")),
    ("trees", ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree")),
    ("vehicles_1", ("bicycle", "bus", "motorcycle", "pickup_truck", "train")),
    ("vehicles_2", ("lawn_mower", "rocket", "streetcar", "tank", "tractor")),
)
CIFAR100_FINE = tuple(sorted(f for _, fines in CIFAR100_SUPERCLASSES for f in fines))  # the meta's order
CIFAR100_COARSE = tuple(name for name, _ in CIFAR100_SUPERCLASSES)
# (100,) fine label -> coarse label
COARSE_OF_FINE = np.array(
    [next(c for c, (_, fines) in enumerate(CIFAR100_SUPERCLASSES) if f in fines) for f in CIFAR100_FINE],
    dtype=np.int64,
)


@dataclass(frozen=True)
class CifarSpec:
    title: str
    cls: str  # torchvision.datasets class
    num_classes: int
    coarse: bool = False  # CIFAR-20: CIFAR-100's superclasses as the labels


CIFAR = {
    "cifar10": CifarSpec("CIFAR-10", "CIFAR10", 10),
    "cifar100": CifarSpec("CIFAR-100", "CIFAR100", 100),
    "cifar20": CifarSpec("CIFAR-20", "CIFAR100", 20, coarse=True),
}


def _integrity_error(cls, folder: Path, title: str, root: Path) -> DataError:
    """torchvision refused files that exist: name the first whose md5 is not the official release's."""
    from torchvision.datasets.utils import check_integrity

    for name, md5 in [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]:
        if not check_integrity(str(folder / name), md5):
            return DataError(
                f"{folder / name}: its md5 is not the official {title} file's (torchvision checks every file);"
                f" extract {cls.filename} from {CIFAR_URL} into {root} again"
            )
    return DataError(f"{folder}: torchvision.datasets.{cls.__name__} refused it")


def cifar_arrays(cfg: TrainConfig) -> RawSplit:
    """CIFAR-10, CIFAR-100 or CIFAR-20 under data_dir in torchvision's layout (or data_dir is the extracted folder)."""
    import torchvision.datasets as tvd

    spec = CIFAR[cfg.dataset]
    cls = getattr(tvd, spec.cls)
    root = data_dir(cfg)
    if root.name == cls.base_folder and not (root / cls.base_folder).is_dir():
        root = root.parent  # data_dir points at the extracted folder itself
    folder = root / cls.base_folder
    for name in [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]:
        if not (folder / name).is_file():
            raise DataError(
                f"{spec.title} not found: expected {folder / name}; download {cls.filename} from {CIFAR_URL}"
                f" and extract it into {root} {NEVER}"
            )
    parts = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError as e:
            if "corrupted" in str(e):
                raise _integrity_error(cls, folder, spec.title, root) from None
            raise DataError(f"{folder}: torchvision.datasets.{spec.cls} cannot read it ({e})") from None
        except Exception as e:  # a file that passed the md5 check but is not a CIFAR pickle
            raise DataError(f"{folder}: torchvision.datasets.{spec.cls} cannot read it ({type(e).__name__}: {e})") from None
        y = np.asarray(ds.targets)
        if spec.coarse:
            if tuple(ds.classes) != CIFAR100_FINE:
                raise DataError(f"{folder / cls.meta['filename']}: fine_label_names are not CIFAR-100's 100 classes,"
                                " so they cannot be mapped to its 20 superclasses")
            y = COARSE_OF_FINE[check_labels(y, 100, str(folder))]
        x = ds.data.transpose(0, 3, 1, 2)  # torchvision keeps (N, H, W, C); mixtune uses (N, C, H, W)
        parts.append((x, check_labels(y, spec.num_classes, str(folder))))
    (xtr, ytr), (xte, yte) = parts
    return RawSplit(xtr, ytr, xte, yte, spec.num_classes, 255.0, "given")


# ---------------------------------------------------------------------------- SVHN
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def svhn_arrays(cfg: TrainConfig) -> RawSplit:
    """SVHN's cropped digits: train_32x32.mat and test_32x32.mat in data_dir (torchvision's layout).

    torchvision maps the files' label 10 (the digit 0) to 0. The `extra` split is not read.
    """
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import check_integrity

    root = data_dir(cfg)
    parts = []
    for split in ("train", "test"):
        _, filename, md5 = tvd.SVHN.split_list[split]
        path = root / filename
        if not path.is_file():
            raise DataError(f"SVHN not found: expected {path}; download train_32x32.mat and test_32x32.mat"
                            f" from {SVHN_URL} into {root} {NEVER}")
        try:
            ds = tvd.SVHN(str(root), split=split, download=False)
        except RuntimeError as e:
            if not check_integrity(str(path), md5):
                raise DataError(f"{path}: its md5 is not the official SVHN file's (torchvision checks it);"
                                f" download it from {SVHN_URL} again") from None
            raise DataError(f"{path}: torchvision.datasets.SVHN cannot read it ({e})") from None
        except Exception as e:  # scipy cannot parse it, or X / y are missing or misshapen
            raise DataError(f"{path}: torchvision.datasets.SVHN cannot read it ({type(e).__name__}: {e})") from None
        x, y = np.asarray(ds.data), np.asarray(ds.labels).reshape(-1)
        if x.ndim != 4 or x.shape[1] != 3 or x.dtype != np.uint8 or len(x) != len(y):
            raise DataError(f"{path}: X gives images {x.shape} {x.dtype} for {len(y)} labels,"
                            " expected (32, 32, 3, N) uint8 and N labels")
        parts.append((x, check_labels(y, 10, str(path))))
    (xtr, ytr), (xte, yte) = parts
    return RawSplit(xtr, ytr, xte, yte, 10, 255.0, "given")
