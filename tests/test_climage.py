"""The CLImage benchmarks (CLCIFAR10/20, CLMicroImageNet10/20) read from files in their released layout.

Each test writes small files in that layout (a few dozen images): a pickled dict with `images`
(N, H, W, 3) uint8, `cl_labels` (N, 3) and `ord_labels`, and the test split as the release
has it: CIFAR's own test pickle in torchvision's folder, or the `_test.pkl` of the pair.
The annotators here name the true class now and then, as the real ones do.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.core.climage import CLIMAGE, annotation_diagnostics, climage_arrays, main as diagnostics_main
from trainables.core.config import TrainConfig
from trainables.core.data import load_dataset
from trainables.core.errors import ConfigError, DataError
from trainables.core.fit import fit
from trainables.core.split import split_and_label

N_TRAIN, N_TEST = 60, 24


def dump(path: Path, obj, protocol: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def annotators(y: np.ndarray, C: int, rng: np.random.Generator, wrong: float = 0.1) -> np.ndarray:
    """(N, 3): each annotator names a random other class, or with probability `wrong` the true one."""
    cl = (y[:, None] + rng.integers(1, C, (len(y), 3))) % C
    slip = rng.random(cl.shape) < wrong
    return np.where(slip, y[:, None], cl)


def write_climage(root: Path, dataset: str, n: int = N_TRAIN, seed: int = 0, images_as_list: bool = False,
                  ord_labels: np.ndarray | None = None) -> dict:
    """The training file (and the test split) of `dataset` under root, as released; returns what was written."""
    spec = CLIMAGE[dataset]
    C, s = spec.num_classes, spec.size
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % C)
    x = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = y * 10  # something a model can learn from
    cl = annotators(y, C, rng)
    ord_ = y if ord_labels is None else ord_labels
    dump(root / spec.train_file, {"images": list(x) if images_as_list else x, "cl_labels": cl.tolist(),
                                  "ord_labels": ord_.tolist()})
    yte = rng.permutation(np.arange(N_TEST) % C)
    if spec.test_kind == "climage":
        xte = rng.integers(0, 256, (N_TEST, s, s, 3), dtype=np.uint8)
        dump(root / spec.test_file, {"images": xte, "ord_labels": yte.tolist(), "cl_labels": annotators(yte, C, rng)})
        xte_chw = xte.transpose(0, 3, 1, 2)
    else:
        flat = rng.integers(0, 256, (N_TEST, 3 * 32 * 32), dtype=np.uint8)
        xte_chw = flat.reshape(-1, 3, 32, 32)
        if spec.test_kind == "cifar10":  # torchvision's cifar-10-batches-py/test_batch (protocol 2, as the release)
            dump(root / spec.test_file, {"batch_label": "testing batch 1 of 1", "labels": yte.tolist(), "data": flat,
                                         "filenames": [f"{i}.png" for i in range(N_TEST)]}, protocol=2)
        else:  # cifar-100-python/test: fine labels 0..99 whose superclasses are the coarse ones
            fine = rng.integers(0, 100, N_TEST)
            dump(root / spec.test_file, {"filenames": [f"{i}.png" for i in range(N_TEST)], "batch_label": "testing",
                                         "fine_labels": fine.tolist(), "coarse_labels": yte.tolist(), "data": flat},
                 protocol=2)
    return {"x": x, "y": y, "cl": cl, "x_test": xte_chw, "y_test": yte}


def cfg(dataset: str, root, **kw) -> TrainConfig:
    return TrainConfig(**{"dataset": dataset, "data_dir": str(root), "labels": "given", "num_threads": 1, **kw})


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text, text
    return text


# ----------------------------------------------------------------------------- loading
@pytest.mark.parametrize("dataset", sorted(CLIMAGE))
def test_each_dataset_loads_as_released(tmp_path, dataset):
    written = write_climage(tmp_path, dataset, images_as_list=dataset.endswith("20"))
    spec = CLIMAGE[dataset]
    raw = climage_arrays(cfg(dataset, tmp_path))
    assert raw.x_train.shape == (N_TRAIN, 3, spec.size, spec.size) and raw.x_train.dtype == np.uint8
    assert np.array_equal(raw.x_train, written["x"].transpose(0, 3, 1, 2))
    assert raw.y_train is None  # the file's ord_labels are not handed on
    assert raw.num_classes == spec.num_classes and raw.scale == 255.0
    # the test split: CIFAR's test pickle (CLCIFAR20: its coarse_labels) or the _test.pkl
    assert np.array_equal(raw.x_test, written["x_test"]) and raw.y_test.tolist() == written["y_test"].tolist()
    # num_cl=1 (the default): each row is the first annotator's label
    expected = np.zeros((N_TRAIN, spec.num_classes), np.float32)
    expected[np.arange(N_TRAIN), written["cl"][:, 0]] = 1.0
    assert np.array_equal(raw.cl_train, expected)
    data = load_dataset(cfg(dataset, tmp_path))
    assert data.y_train is None and data.has_test and data.in_shape == (3, spec.size, spec.size)


def test_data_dir_may_be_the_training_file(tmp_path):
    write_climage(tmp_path, "clmicro_imagenet10")
    a = load_dataset(cfg("clmicro_imagenet10", tmp_path))
    b = load_dataset(cfg("clmicro_imagenet10", tmp_path / "clmicro_imagenet10_train.pkl"))
    assert torch.equal(a.x_train, b.x_train) and a.fingerprint == b.fingerprint


@pytest.mark.parametrize("num_cl", [1, 2, 3])
def test_num_cl_takes_the_first_annotators(tmp_path, num_cl):
    written = write_climage(tmp_path, "clcifar10")
    raw = climage_arrays(cfg("clcifar10", tmp_path, num_cl=num_cl))
    counts = np.zeros((N_TRAIN, 10))
    for k in range(num_cl):
        np.add.at(counts, (np.arange(N_TRAIN), written["cl"][:, k]), 1.0)
    assert np.allclose(raw.cl_train, counts / num_cl)  # a class two annotators named weighs twice
    assert np.allclose(raw.cl_train.sum(1), 1.0)


def test_num_cl_and_labels_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"num_cl=4: dataset=clcifar10 has 3 complementary labels per image; use 1 to 3") as e:
        cfg("clcifar10", tmp_path, num_cl=4)
    one_line(e)
    with pytest.raises(ConfigError, match=r"num_cl=0 must be >= 1"):
        cfg("clcifar10", tmp_path, num_cl=0)
    for labels in ("ordinary", "complementary"):
        with pytest.raises(ConfigError, match=r"dataset=clcifar20 carries annotators' complementary labels: use labels=given") as e:
            cfg("clcifar20", tmp_path, labels=labels)
        one_line(e)
    # a file with fewer labels per image than num_cl asks for
    spec = CLIMAGE["clcifar10"]
    write_climage(tmp_path, "clcifar10")
    data = pickle.loads((tmp_path / spec.train_file).read_bytes())
    dump(tmp_path / spec.train_file, {**data, "cl_labels": [row[:1] for row in data["cl_labels"]]})
    assert climage_arrays(cfg("clcifar10", tmp_path)).cl_train.shape == (N_TRAIN, 10)
    with pytest.raises(DataError, match=r"clcifar10.pkl: num_cl=2, but cl_labels holds 1 per image") as e:
        climage_arrays(cfg("clcifar10", tmp_path, num_cl=2))
    one_line(e)


# ----------------------------------------------------------------------------- errors
def test_missing_files_say_where_they_come_from(tmp_path):
    with pytest.raises(DataError, match=r"CLCIFAR10 not found: expected .*clcifar10.pkl; download clcifar10.pkl from"
                                        r" https://github.com/ntucllab/CLImage_Dataset") as e:
        load_dataset(cfg("clcifar10", tmp_path))
    one_line(e)
    write_climage(tmp_path, "clcifar20")
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(DataError, match=r"CLCIFAR20's test split not found: expected .*cifar-100-python/test;"
                                        r" extract cifar-100-python.tar.gz") as e:
        load_dataset(cfg("clcifar20", tmp_path))
    one_line(e)
    write_climage(tmp_path, "clmicro_imagenet20")
    (tmp_path / "clmicro_imagenet20_test.pkl").unlink()
    with pytest.raises(DataError, match=r"CLMicroImageNet20's test split not found: .*clmicro_imagenet20_test.pkl") as e:
        load_dataset(cfg("clmicro_imagenet20", tmp_path))
    one_line(e)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "not a pickle":
        np.savez(path.with_suffix(".npz"), x=np.zeros(3))
        path.write_bytes(path.with_suffix(".npz").read_bytes())
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "not a pickle", "empty"])
def test_damaged_file_is_one_line(tmp_path, how):
    write_climage(tmp_path, "clcifar10")
    _damage(tmp_path / "clcifar10.pkl", how)
    with pytest.raises(DataError, match=r"clcifar10.pkl: not a readable pickle, damaged or cut short") as e:
        load_dataset(cfg("clcifar10", tmp_path))
    one_line(e)


def _rewrite(root: Path, dataset: str, **changes) -> None:
    path = root / CLIMAGE[dataset].train_file
    data = pickle.loads(path.read_bytes())
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    dump(path, data)


@pytest.mark.parametrize("change, needle", [
    ({"cl_labels": None}, r"clcifar10.pkl: missing cl_labels \(has images, ord_labels\)"),
    ({"images": np.zeros((N_TRAIN, 64, 64, 3), np.uint8)}, r"images have shape \(60, 64, 64, 3\), expected \(N, 32, 32, 3\)"),
    ({"images": np.zeros((N_TRAIN, 32, 32, 3), np.float32)}, r"images have dtype float32, expected uint8"),
    ({"cl_labels": np.full((N_TRAIN, 3), 10)}, r"cl_labels row 0 has complementary label 10, but there are 10 classes"),
    ({"cl_labels": np.zeros((N_TRAIN - 1, 3), np.int64)}, r"cl_labels has 59 rows but images has 60"),
    ({"cl_labels": np.zeros((N_TRAIN, 3), np.float32)}, r"cl_labels have shape \(60, 3\) dtype float32, expected \(N, 3\) integers"),
])
def test_wrong_contents_are_one_line(tmp_path, change, needle):
    write_climage(tmp_path, "clcifar10")
    _rewrite(tmp_path, "clcifar10", **change)
    with pytest.raises(DataError, match=needle) as e:
        load_dataset(cfg("clcifar10", tmp_path))
    one_line(e)


def test_wrong_file_is_one_line(tmp_path):
    dump(tmp_path / "clmicro_imagenet10_train.pkl", [1, 2, 3])
    with pytest.raises(DataError, match=r"clmicro_imagenet10_train.pkl: holds a list, expected a dict with images, cl_labels") as e:
        load_dataset(cfg("clmicro_imagenet10", tmp_path))
    one_line(e)
    # CLCIFAR10's file where CLMicroImageNet10's should be: the image size says so
    write_climage(tmp_path, "clcifar10")
    (tmp_path / "clmicro_imagenet10_train.pkl").write_bytes((tmp_path / "clcifar10.pkl").read_bytes())
    with pytest.raises(DataError, match=r"images have shape \(60, 32, 32, 3\), expected \(N, 64, 64, 3\)") as e:
        load_dataset(cfg("clmicro_imagenet10", tmp_path))
    one_line(e)
    # a CIFAR test batch without the labels the split needs
    write_climage(tmp_path, "clcifar20")
    dump(tmp_path / "cifar-100-python" / "test", {"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0, 1, 2, 3]})
    with pytest.raises(DataError, match=r"cifar-100-python/test: missing coarse_labels \(has data, fine_labels\)") as e:
        load_dataset(cfg("clcifar20", tmp_path))
    one_line(e)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    import os

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    write_climage(tmp_path, "clcifar10")
    _rewrite(tmp_path, "clcifar10", ord_labels=Payload())
    with pytest.raises(DataError, match=r"clcifar10.pkl: refused to unpickle (posix|os|nt)\.system") as e:
        load_dataset(cfg("clcifar10", tmp_path))
    one_line(e)
    assert not marker.exists()


# ----------------------------------------------------------------------------- the true labels are not read
def _tiny(dataset: str, root: Path, **kw) -> TrainConfig:
    return cfg(dataset, root, model="linear", epochs=2, batch_size=16, val_fraction=0.34, num_cl=3, lr=0.01, **kw)


@pytest.mark.parametrize("method", ["none", "icm"])
def test_permuting_ord_labels_changes_no_training_or_selection_value(tmp_path, method):
    a, b = tmp_path / "a", tmp_path / "b"
    written = write_climage(a, "clcifar10")
    shuffled = np.random.default_rng(1).permutation(written["y"])
    assert (shuffled != written["y"]).any()
    write_climage(b, "clcifar10", ord_labels=shuffled)  # the same images and labels, other true labels
    extra = {"k": 3, "cluster_features": "raw", "cache_dir": str(tmp_path / "cache")} if method == "icm" else {}
    ca, cb = _tiny("clcifar10", a, method=method, **extra), _tiny("clcifar10", b, method=method, **extra)
    da, db = load_dataset(ca), load_dataset(cb)
    assert da.fingerprint == db.fingerprint and torch.equal(da.cl_train, db.cl_train)
    sa, sb = split_and_label(ca, da), split_and_label(cb, db)
    for field in ("train_index", "val_index", "train_targets", "val_targets", "Q"):
        assert torch.equal(getattr(sa, field), getattr(sb, field)), field
    assert sa.y_train is None and sa.y_val is None and sa.q_source == "estimated"
    ha, hb = fit(ca, da).history, fit(cb, db).history
    drop = ("epoch_time", "samples_per_s")  # wall-clock
    assert [{k: v for k, v in h.items() if k not in drop} for h in ha] == \
           [{k: v for k, v in h.items() if k not in drop} for h in hb]
    final = ha[-1]
    assert "val_scel_ts" in final and "test_acc" in final
    assert "noise_rate" not in final and "pair_impurity" not in final  # they would read the true labels
    # the diagnostics do read them, and see the difference
    assert annotation_diagnostics(ca)["cl_equals_true_share"] != annotation_diagnostics(cb)["cl_equals_true_share"]


def test_diagnostics_are_the_annotators_mistakes_and_their_transition(tmp_path, capsys):
    written = write_climage(tmp_path, "clcifar20", n=200)
    y, cl = written["y"], written["cl"]
    d = annotation_diagnostics(cfg("clcifar20", tmp_path, num_cl=2))
    assert "never used for training or selection" in d["diagnostic"]
    assert d["num_cl"] == 2 and d["images"] == 200
    assert d["cl_equals_true_share"] == pytest.approx(float((cl[:, :2] == y[:, None]).mean()))
    assert 0 < d["cl_equals_true_share"] < 0.3
    assert d["cl_equals_true_share_per_annotator"] == pytest.approx([float((cl[:, k] == y).mean()) for k in range(3)])
    implied = np.array(d["implied_transition"])
    i = int(y[0])
    rows = cl[y == i, :2].reshape(-1)
    assert implied[i] == pytest.approx(np.bincount(rows, minlength=20) / len(rows), abs=1e-4)
    assert np.allclose(implied.sum(1), 1.0, atol=1e-3) and np.trace(implied) > 0  # mistakes on the diagonal
    assert np.trace(np.array(d["estimated_transition"])) == 0  # the estimate training uses assumes none
    # the command-line form prints the same as JSON
    assert diagnostics_main(["clcifar20", str(tmp_path), "--num-cl", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["cl_equals_true_share"] == d["cl_equals_true_share"]
    assert diagnostics_main(["clcifar10", str(tmp_path)]) == 2
    assert capsys.readouterr().out.startswith("error: CLCIFAR10 not found")


def test_mixtune_train_on_clmicro_imagenet(tmp_path, capsys):
    from tuner.cli import main

    write_climage(tmp_path / "data", "clmicro_imagenet10")
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "clmicro_imagenet10", "--data-dir", str(tmp_path / "data"), "--labels", "given",
               "--num-cl", "3", "--model", "linear", "--epochs", "2", "--batch-size", "16", "--val-fraction", "0.34",
               "--quiet", "--output", str(out)])
    assert rc == 0, capsys.readouterr()
    final = json.loads((out / "summary.json").read_text())["final"]
    assert "val_scel_ts" in final and "test_acc" in final and "noise_rate" not in final
