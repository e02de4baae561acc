"""Your own images (`dataset=folder`): class subfolders read with torchvision's `ImageFolder`, or
images with a CSV of complementary labels and no true labels at all.

Layouts of `data_dir` (DIR):

* `DIR/<class>/<image>`: ordinary labels, one split; `train_fraction` holds out a stratified
  test split.
* `DIR/train/<class>/<image>` and `DIR/test/<class>/<image>`: the split is given (no `test/`:
  `train/` is split with `train_fraction`). Test classes must be training classes.
* `DIR/labels.csv` with the header `file,complementary_labels`, one row per image: its path
  relative to DIR and the classes it does NOT belong to, as indices separated by spaces
  (`img7.png,3` or `img8.png,1 4`); `DIR/classes.txt` names the classes, line i naming class
  i; an optional `DIR/test/<class>/<image>` holds test images with true labels (class folders
  named as in classes.txt). This is `labels=given`.

Images are decoded once, with PIL as `ImageFolder`'s own loader does (any format PIL reads:
PNG, JPEG, BMP, TIFF, WebP, ...): all grayscale gives 1 channel, anything else RGB (alpha
dropped). `image_size` > 0 resizes every image to image_size x image_size (bilinear with
antialiasing, what torchvision's `Resize` does to a PIL image); 0 requires one size for all.
The decoded uint8 arrays are cached as a tensor file under the cache root, keyed by a hash of
every file under DIR (names and bytes) and `image_size`, so later trials, runs and searches
load it instead of decoding again. Training never sees a PIL image.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig, default_cache_dir
from .errors import DataError
from .raw import RawSplit, data_dir, split_name, split_one

CSV_NAME = "labels.csv"
CLASSES_NAME = "classes.txt"
CSV_COLUMNS = ("file", "complementary_labels")
CACHE_VERSION = "mixtune-folder-v1"  # bump when decoding changes: old cache files are then never read
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@dataclass
class Decoded:
    """A folder decoded: uint8 images (N, C, H, W) and their labels, before any split."""

    x_train: np.ndarray
    y_train: np.ndarray | None  # (N,) class indices (ImageFolder layouts)
    cl_train: np.ndarray | None  # (N, m) complementary class indices padded with -1 (CSV layout)
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list[str]

    def to_blob(self) -> dict:
        blob = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in vars(self).items()
                if isinstance(v, np.ndarray)}
        return {**blob, "classes": list(self.classes), "version": CACHE_VERSION}

    @classmethod
    def from_blob(cls, blob: dict) -> Decoded:
        def get(name: str) -> np.ndarray | None:
            return blob[name].numpy() if name in blob else None

        return cls(get("x_train"), get("y_train"), get("cl_train"), get("x_test"), get("y_test"),
                   [str(c) for c in blob["classes"]])


# ---------------------------------------------------------------------------- cache
def content_key(root: Path, image_size: int) -> str:
    """sha256 hex over every file under root (relative path, size, bytes) and the decode settings."""
    h = hashlib.sha256(f"{CACHE_VERSION}|image_size={image_size}".encode())
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # followlinks: as ImageFolder walks
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                with open(path, "rb") as f:
                    h.update(f"|{path.relative_to(root).as_posix()}|{os.fstat(f.fileno()).st_size}|".encode())
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            except OSError as e:
                raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def cache_root(cfg: TrainConfig) -> Path:
    return (Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()) / "folders"


def cache_file(cfg: TrainConfig, key: str) -> Path:
    return cache_root(cfg) / f"{key}.pt"


def _load_cached(path: Path) -> Decoded | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("version") == CACHE_VERSION:
            return Decoded.from_blob(blob)
    except Exception:  # a corrupt or foreign file: decode again and overwrite it
        pass
    return None


def _save_cached(path: Path, decoded: Decoded) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique temp name, then rename: a concurrent run never reads half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        torch.save(decoded.to_blob(), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- listing
def _image_folder(directory: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """(image paths, class indices, class names) of directory/<class>/<image>, as torchvision's ImageFolder lists them."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    try:
        # the loader is never called: only the listing (ds.samples) is used; decoding is ours
        ds = ImageFolder(str(directory), loader=lambda path: path)
    except FileNotFoundError as e:
        if "class folder" in str(e):
            raise DataError(f"{directory}: no class subfolders, so no images ({directory}/<class>/<image> for"
                            f" ordinary labels, or {CSV_NAME} for complementary ones)") from None
        empty = str(e).split("classes ", 1)[-1].split(". ", 1)[0]
        raise DataError(f"{directory}: no images in class folder(s) {empty}"
                        f" (image files end in {', '.join(IMG_EXTENSIONS)})") from None
    paths = [Path(p) for p, _ in ds.samples]
    return paths, np.asarray([t for _, t in ds.samples], dtype=np.int64), list(ds.classes)


def _test_folder(directory: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """A test folder's images, labelled with the training classes' indices (matched by folder name)."""
    paths, y, names = _image_folder(directory)
    index = {c: i for i, c in enumerate(classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise DataError(f"{directory / unknown[0]}: class {unknown[0]!r} is not a training class"
                        f" ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
    return paths, np.asarray([index[n] for n in names], dtype=np.int64)[y]


def _read_classes(root: Path) -> list[str]:
    path = root / CLASSES_NAME
    if not path.is_file():
        raise DataError(f"{root / CSV_NAME} needs {path}: one class name per line, line i naming class i")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if len(names) < 2:
        raise DataError(f"{path}: names {len(names)} class(es); mixtune needs at least 2")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise DataError(f"{path}: class {dup!r} is named twice")
    return names


def _read_csv(root: Path, num_classes: int) -> tuple[list[Path], np.ndarray]:
    """(image paths, (N, m) complementary class indices padded with -1) from DIR/labels.csv."""
    path, C = root / CSV_NAME, num_classes
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not set(CSV_COLUMNS) <= {f.strip() for f in reader.fieldnames}:
        raise DataError(f"{path}: the header must name the columns {','.join(CSV_COLUMNS)}"
                        f" (found {','.join(reader.fieldnames or []) or 'nothing'})")
    reader.fieldnames = [f.strip() for f in reader.fieldnames]
    files: list[Path] = []
    labels: list[list[int]] = []
    seen: dict[str, int] = {}
    for row in reader:
        where = f"{path} line {reader.line_num}"
        name = (row.get("file") or "").strip()
        if not name:
            raise DataError(f"{where}: no file name")
        rel = os.path.normpath(name)
        if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
            raise DataError(f"{where}: {name} is outside {root} (files are relative to the CSV's folder)")
        if not (root / rel).is_file():
            raise DataError(f"{where}: no such image {root / rel}")
        if rel in seen:
            raise DataError(f"{where}: {name} is listed again (first on line {seen[rel]});"
                            " put all of an image's complementary labels on one row")
        seen[rel] = reader.line_num
        cls: list[int] = []
        for v in (row.get("complementary_labels") or "").split():
            try:
                cls.append(int(v))
            except ValueError:
                raise DataError(f"{where}: complementary label {v!r} is not a class index 0..{C - 1}") from None
        if not cls:
            raise DataError(f"{where}: {name} has no complementary label")
        bad = next((c for c in cls if not 0 <= c < C), None)
        if bad is not None:
            raise DataError(f"{where}: complementary label {bad} out of range 0..{C - 1}"
                            f" ({CLASSES_NAME} names {C} classes)")
        if len(set(cls)) == C:
            raise DataError(f"{where}: {name} names all {C} classes as complementary")
        files.append(root / rel)
        labels.append(cls)
    if not files:
        raise DataError(f"{path}: no rows, so no images")
    width = max(map(len, labels))
    cl = np.full((len(files), width), -1, dtype=np.int64)
    for i, row_labels in enumerate(labels):
        cl[i, : len(row_labels)] = row_labels
    return files, cl


# ---------------------------------------------------------------------------- decoding
def decode_images(paths: list[Path], image_size: int) -> np.ndarray:
    """Decode image files into (N, C, H, W) uint8: C = 1 when every image is grayscale, else 3 (RGB)."""
    from PIL import Image

    def opened(p: Path):
        try:
            return Image.open(p)
        except Exception as e:  # UnidentifiedImageError, OSError, DecompressionBombError
            raise DataError(f"{p}: cannot read as an image ({type(e).__name__}: {e})") from None

    # pass 1, headers only (PIL opens lazily): one colour mode for all, and one size unless resizing
    gray, first = True, None
    for p in paths:
        with opened(p) as im:
            gray = gray and im.mode in GRAY_MODES
            if image_size == 0:
                if first is None:
                    first = (p, im.size)
                elif im.size != first[1]:
                    (w0, h0), (w, h) = first[1], im.size
                    raise DataError(f"{p}: {w}x{h} pixels, but {first[0]} is {w0}x{h0};"
                                    " set image_size (--image-size N) to resize every image to N x N")
    mode, c = ("L", 1) if gray else ("RGB", 3)
    w, h = (image_size, image_size) if image_size else first[1]
    out = np.empty((len(paths), h, w, c), dtype=np.uint8)  # (N, H, W, C) as PIL lays pixels out
    for i, p in enumerate(paths):  # pass 2: decode
        with opened(p) as im:
            try:
                im = im.convert(mode)
                if image_size:
                    im = im.resize((w, h), Image.Resampling.BILINEAR)  # antialiased when shrinking
                out[i] = np.asarray(im).reshape(h, w, c)
            except Exception as e:  # truncated or corrupt pixel data surfaces only here
                raise DataError(f"{p}: cannot read as an image ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def decode_folder(root: Path, image_size: int) -> Decoded:
    """List the folder in its layout and decode every image (the slow step the cache saves)."""
    test_dir = root / "test"
    if (root / CSV_NAME).is_file():
        classes = _read_classes(root)
        files, cl = _read_csv(root, len(classes))
        y_train = None
        test = _test_folder(test_dir, classes) if test_dir.is_dir() else None
    else:
        split = (root / "train").is_dir()
        files, y_train, classes = _image_folder(root / "train" if split else root)
        cl = None
        test = _test_folder(test_dir, classes) if split and test_dir.is_dir() else None
    if len(classes) < 2:
        raise DataError(f"{root}: a single class ({classes[0]}); mixtune needs at least 2")
    x_test = y_test = None
    if test is not None:
        # decode train and test together: they must agree on channels (and size unless resized)
        x = decode_images(files + test[0], image_size)
        x_train, x_test, y_test = x[: len(files)], x[len(files):], test[1]
    else:
        x_train = decode_images(files, image_size)
    return Decoded(x_train, y_train, cl, x_test, y_test, classes)


# ---------------------------------------------------------------------------- the loader
def folder_arrays(cfg: TrainConfig) -> RawSplit:
    """A folder of images in one of the layouts above, decoded once and then read from the cache."""
    from .given_labels import cl_targets

    root = data_dir(cfg)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder" + (" (it is a file)" if root.exists() else ""))
    has_csv = (root / CSV_NAME).is_file()
    if has_csv and cfg.labels != "given":
        raise DataError(f"{root / CSV_NAME} gives complementary labels and no true ones: use labels=given")
    if not has_csv and cfg.labels == "given":
        raise DataError(f"labels=given needs {root / CSV_NAME} ({','.join(CSV_COLUMNS)}, one row per image)")
    cache = cache_root(cfg).resolve()
    if cache.is_relative_to(root.resolve()):  # its files would change the folder's content key, and be read as classes
        raise DataError(f"{root}: the decode cache {cache} lies inside the image folder; set cache_dir elsewhere")
    cached = cache_file(cfg, content_key(root, cfg.image_size))
    decoded = _load_cached(cached)
    if decoded is None:
        decoded = decode_folder(root, cfg.image_size)
        _save_cached(cached, decoded)
    C = len(decoded.classes)
    if decoded.cl_train is not None:
        cl = cl_targets(decoded.cl_train, C, str(root / CSV_NAME), "complementary_labels")
        return RawSplit(decoded.x_train, None, decoded.x_test, decoded.y_test, C, 255.0, "given", cl_train=cl)
    if decoded.x_test is not None:
        return RawSplit(decoded.x_train, decoded.y_train, decoded.x_test, decoded.y_test, C, 255.0, "given")
    xtr, ytr, xte, yte = split_one(decoded.x_train, decoded.y_train, cfg.train_fraction, str(root))
    return RawSplit(xtr, ytr, xte, yte, C, 255.0, split_name(cfg.train_fraction))
