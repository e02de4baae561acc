"""The field's human-annotated complementary-label benchmarks, read from their released files.

CLCIFAR10, CLCIFAR20, CLMicroImageNet10 and CLMicroImageNet20 (Wang et al., "CLImage:
Human-Annotated Datasets for Complementary-Label Learning"; github.com/ntucllab/CLImage_Dataset,
and libcll's `libcll/datasets/cl_*.py`) give each training image three complementary labels
from three annotators. The files are pickled dicts, read as released with the restricted
unpickler of `safe_pickle.py` (a pickle can name code to run; these are refused):

* `clcifar10.pkl` / `clcifar20.pkl`: `images` (N, 32, 32, 3) uint8 (an array, or a list of
  (32, 32, 3) arrays), `cl_labels` (N, 3), `ord_labels` (N,). The test split is CIFAR-10's
  `cifar-10-batches-py/test_batch`, or CIFAR-100's `cifar-100-python/test` with its own
  `coarse_labels` (the 20 superclasses CLCIFAR20 is labelled with), under the same data_dir in
  torchvision's layout. Only those test files are read; the CIFAR training batches are not needed.
* `clmicro_imagenet{10,20}_train.pkl`: `images` (N, 64, 64, 3), `cl_labels`, `ord_labels`;
  `clmicro_imagenet{10,20}_test.pkl`: `images` and `ord_labels` (the test split's true labels).

**What training reads.** labels=given is the only label kind these datasets take (config.py
refuses the others): the first `num_cl` (1-3) of each image's `cl_labels` become its
complementary targets, as libcll's `num_cl` chooses them. `ord_labels` of the training file
never reach the `RawSplit` (its y_train is None), so nothing that trains, validates or selects
can read them. They feed `annotation_diagnostics` only, a separate function marked as such:
the share of annotators' complementary labels that name the true class, and the transition
matrix the labels imply.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import TrainConfig
from .errors import DataError
from .given_labels import cl_targets, estimate_transition
from .raw import RawSplit, check_labels, data_dir
from .safe_pickle import load_pickle

SOURCE = "https://github.com/ntucllab/CLImage_Dataset"
NEVER = "(mixtune never downloads)"
ANNOTATORS = 3  # complementary labels per training image in the released files


@dataclass(frozen=True)
class CLImageSpec:
    """One CLImage dataset: its files, class count, image size and where its test split lives."""

    title: str
    num_classes: int
    size: int  # images are size x size x 3
    train_file: str
    test_file: str  # relative to data_dir
    test_kind: str  # "climage" (images + ord_labels) | "cifar10" (test_batch) | "cifar100_coarse" (test)


CLIMAGE: dict[str, CLImageSpec] = {
    "clcifar10": CLImageSpec("CLCIFAR10", 10, 32, "clcifar10.pkl", "cifar-10-batches-py/test_batch", "cifar10"),
    "clcifar20": CLImageSpec("CLCIFAR20", 20, 32, "clcifar20.pkl", "cifar-100-python/test", "cifar100_coarse"),
    "clmicro_imagenet10": CLImageSpec("CLMicroImageNet10", 10, 64, "clmicro_imagenet10_train.pkl",
                                      "clmicro_imagenet10_test.pkl", "climage"),
    "clmicro_imagenet20": CLImageSpec("CLMicroImageNet20", 20, 64, "clmicro_imagenet20_train.pkl",
                                      "clmicro_imagenet20_test.pkl", "climage"),
}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


# ---------------------------------------------------------------------------- reading
def _root(cfg: TrainConfig) -> Path:
    """data_dir: the folder holding the files, or the training .pkl itself (then its folder)."""
    root = data_dir(cfg)
    return root.parent if root.suffix == ".pkl" and root.is_file() else root


def _dict(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """The pickled dict at `path` (restricted unpickler), with bytes keys as str; `keys` must be present."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: holds a {type(data).__name__}, expected a dict with {', '.join(keys)}")
    data = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}
    missing = [k for k in keys if k not in data]
    if missing:
        have = ", ".join(sorted(str(k) for k in data)) or "none"
        raise DataError(f"{path}: missing {', '.join(missing)} (has {have})")
    return data


def _array(value: Any, path: Path, name: str) -> np.ndarray:
    """An array from what the file holds (an array, or a list of arrays / numbers)."""
    try:
        a = np.asarray(value)
    except ValueError as e:  # a ragged list: images of different sizes, rows of different lengths
        raise DataError(f"{path}: {name} is not a regular array ({str(e).splitlines()[0]})") from None
    if a.dtype == object:
        raise DataError(f"{path}: {name} is not a regular numeric array (rows differ in shape or type)")
    return a


def _images(value: Any, path: Path, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 -> (N, 3, size, size) uint8."""
    x = _array(value, path, "images")
    if x.ndim != 4 or x.shape[1:] != (size, size, 3):
        raise DataError(f"{path}: images have shape {x.shape}, expected (N, {size}, {size}, 3)")
    if x.dtype != np.uint8:
        raise DataError(f"{path}: images have dtype {x.dtype}, expected uint8")
    if len(x) == 0:
        raise DataError(f"{path}: images is empty")
    return x.transpose(0, 3, 1, 2)


def _cl_labels(value: Any, path: Path, n: int, num_cl: int) -> np.ndarray:
    """(N, m >= num_cl) integer complementary labels -> their first num_cl columns."""
    cl = _array(value, path, "cl_labels")
    if cl.ndim == 1:
        cl = cl[:, None]  # one label per image
    if cl.ndim != 2 or not np.issubdtype(cl.dtype, np.integer):
        raise DataError(f"{path}: cl_labels have shape {cl.shape} dtype {cl.dtype}, expected (N, {ANNOTATORS}) integers")
    if len(cl) != n:
        raise DataError(f"{path}: cl_labels has {len(cl)} rows but images has {n}")
    if cl.shape[1] < num_cl:
        raise DataError(f"{path}: num_cl={num_cl}, but cl_labels holds {cl.shape[1]} per image")
    return cl[:, :num_cl].astype(np.int64)


def _true_labels(value: Any, path: Path, name: str, n: int, num_classes: int) -> np.ndarray:
    y = _array(value, path, name).reshape(-1)
    if len(y) != n:
        raise DataError(f"{path}: {name} has {len(y)} labels but images has {n}")
    return check_labels(y, num_classes, f"{path}: {name}")


def _cifar_test(path: Path, spec: CLImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR's own test pickle: `data` (N, 3072) uint8 rows in C, H, W order; `labels` or `coarse_labels`."""
    key = "labels" if spec.test_kind == "cifar10" else "coarse_labels"
    data = _dict(path, ("data", key))
    x = _array(data["data"], path, "data")
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.dtype != np.uint8:
        raise DataError(f"{path}: data has shape {x.shape} dtype {x.dtype}, expected (N, 3072) uint8")
    return x.reshape(-1, 3, 32, 32), _true_labels(data[key], path, key, len(x), spec.num_classes)


def _test_split(root: Path, spec: CLImageSpec) -> tuple[np.ndarray, np.ndarray]:
    path = root / spec.test_file
    if not path.is_file():
        if spec.test_kind == "climage":
            where = f"download {spec.test_file} from {SOURCE} (the files libcll's loaders fetch) into {root}"
        else:
            archive = "cifar-10-python.tar.gz" if spec.test_kind == "cifar10" else "cifar-100-python.tar.gz"
            where = f"extract {archive} from {CIFAR_URL} into {root}"
        raise DataError(f"{spec.title}'s test split not found: expected {path}; {where} {NEVER}")
    if spec.test_kind != "climage":
        return _cifar_test(path, spec)
    data = _dict(path, ("images", "ord_labels"))
    x = _images(data["images"], path, spec.size)
    return x, _true_labels(data["ord_labels"], path, "ord_labels", len(x), spec.num_classes)


def _train_path(root: Path, spec: CLImageSpec) -> Path:
    path = root / spec.train_file
    if not path.is_file():
        raise DataError(f"{spec.title} not found: expected {path}; download {spec.train_file} from {SOURCE}"
                        f" (the file libcll's loaders fetch) into {root} {NEVER}")
    return path


def climage_arrays(cfg: TrainConfig) -> RawSplit:
    """A CLImage dataset: training images with their first num_cl given complementary labels; a test split.

    y_train is None: the file's ord_labels are not read here (see annotation_diagnostics).
    """
    spec = CLIMAGE[cfg.dataset]
    root = _root(cfg)
    path = _train_path(root, spec)
    data = _dict(path, ("images", "cl_labels"))
    x = _images(data["images"], path, spec.size)
    cl = _cl_labels(data["cl_labels"], path, len(x), cfg.num_cl)
    del data  # ord_labels go no further than the unpickled dict
    targets = cl_targets(cl, spec.num_classes, str(path), "cl_labels")  # (N, C) rows summing to 1
    x_test, y_test = _test_split(root, spec)
    return RawSplit(x, None, x_test, y_test, spec.num_classes, 255.0, f"given num_cl={cfg.num_cl}", cl_train=targets)


# ---------------------------------------------------------------------------- diagnostics
def annotation_diagnostics(cfg: TrainConfig) -> dict[str, Any]:
    """DIAGNOSTICS ONLY: what the file's true training labels (`ord_labels`) say about its annotators.

    Never called by training, validation or selection. Returns, over all training images:
    - `cl_equals_true_share`: the share of the first num_cl annotators' complementary labels
      that name the true class (an annotator's mistake; not zero in these data), and
      `..._per_annotator` for each of the three;
    - `implied_transition`: Q[i][j] = P(complementary label j | true class i) as the labels imply it;
    - `estimated_transition`: the Q that training uses (estimated from the complementary labels'
      marginals, `given_labels.estimate_transition`), and `transition_max_abs_diff` between them.
    """
    import torch

    spec = CLIMAGE[cfg.dataset]
    path = _train_path(_root(cfg), spec)
    data = _dict(path, ("images", "cl_labels", "ord_labels"))
    n = len(_images(data["images"], path, spec.size))
    raw_cl = _array(data["cl_labels"], path, "cl_labels")
    all_cl = _cl_labels(raw_cl, path, n, raw_cl.shape[1] if raw_cl.ndim == 2 else 1)  # (N, annotators)
    every = all_cl[:, : min(cfg.num_cl, all_cl.shape[1])]  # the ones training uses
    y = _true_labels(data["ord_labels"], path, "ord_labels", n, spec.num_classes)
    C = spec.num_classes
    hits = all_cl == y[:, None]  # (N, width): annotator k named the true class
    implied = np.zeros((C, C))
    np.add.at(implied, (np.repeat(y, every.shape[1]), every.reshape(-1)), 1.0)
    implied /= np.maximum(implied.sum(1, keepdims=True), 1.0)
    estimated = estimate_transition(torch.from_numpy(cl_targets(every, C, str(path), "cl_labels"))).numpy()
    return {
        "diagnostic": "reads the true training labels (ord_labels); never used for training or selection",
        "dataset": cfg.dataset,
        "images": n,
        "num_cl": every.shape[1],
        "cl_equals_true_share": float(hits[:, : every.shape[1]].mean()),
        "cl_equals_true_share_per_annotator": [float(v) for v in hits.mean(0)],
        "implied_transition": implied.round(4).tolist(),
        "estimated_transition": estimated.round(4).tolist(),
        "transition_max_abs_diff": float(np.abs(implied - estimated).max()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m trainables.core.climage DATASET DATA_DIR [--num-cl N]`: the diagnostics as JSON."""
    p = argparse.ArgumentParser(prog="python -m trainables.core.climage",
                                description="DIAGNOSTICS ONLY: what a CLImage file's true training labels say about its annotators")
    p.add_argument("dataset", choices=sorted(CLIMAGE))
    p.add_argument("data_dir")
    p.add_argument("--num-cl", type=int, default=ANNOTATORS)
    args = p.parse_args(argv)
    try:
        cfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, labels="given", num_cl=args.num_cl)
        print(json.dumps(annotation_diagnostics(cfg), indent=1))
    except ValueError as e:  # ConfigError, DataError: one line
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
