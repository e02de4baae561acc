"""Given complementary labels: .npz files that carry cl_train and no true training labels.

The files are written by the tests from digits, with three complementary labels per image
drawn independently (as CLCIFAR's three annotators give them, repeats possible), in each of
the three layouts the loader takes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainables.core.config import TrainConfig
from trainables.core.data import load_dataset
from trainables.core.errors import DataError
from trainables.core.fit import fit
from trainables.core.given_labels import cl_targets, estimate_transition
from trainables.core.split import split_and_label


def digits_arrays(seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.target))
    x, y = d.images[order].astype(np.float32), d.target[order].astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def three_cls(y: np.ndarray, C: int = 10, seed: int = 0) -> np.ndarray:
    """(N, 3): three independent uniform complementary labels per row (repeats allowed)."""
    rng = np.random.default_rng(seed)
    return (y[:, None] + rng.integers(1, C, (len(y), 3))) % C


def write(path, **arrays):
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.fixture(scope="module")
def given_npz(tmp_path_factory):
    """digits with three CLs per image and no y_train; with and without a labelled test split."""
    root = tmp_path_factory.mktemp("given")
    xtr, ytr, xte, yte = digits_arrays()
    cl = three_cls(ytr)
    return {
        "with_test": write(root / "with_test.npz", x_train=xtr, cl_train=cl, x_test=xte, y_test=yte),
        "no_test": write(root / "no_test.npz", x_train=xtr, cl_train=cl),
        "y_test_hidden": ytr,
    }


def cfg(path, **kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "npz", "data_dir": str(path), "labels": "given", "num_threads": 1, **kw})


# ----------------------------------------------------------------------------- parsing
def test_three_layouts_give_the_same_targets():
    C = 4
    idx = np.array([[1, 2, -1], [3, 3, 0], [2, -1, -1]])  # padded with -1; a repeat counts twice
    t = cl_targets(idx, C, "f.npz")
    assert np.allclose(t, [[0, 0.5, 0.5, 0], [1 / 3, 0, 0, 2 / 3], [0, 0, 1, 0]])
    mask = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=bool)
    assert np.allclose(cl_targets(mask, C, "f.npz"), [[0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5], [0, 0, 1, 0]])
    assert np.allclose(cl_targets(mask.astype(np.uint8), C, "f.npz"), cl_targets(mask, C, "f.npz"))
    assert np.allclose(cl_targets(np.array([2, 0, 3]), C, "f.npz"), np.eye(C)[[2, 0, 3]])


@pytest.mark.parametrize("cl, C, needle", [
    (np.array([0, 4]), 4, "cl_train row 1 has complementary label 4, but there are 4 classes"),
    (np.array([0, -1]), 4, "cl_train row 1 has complementary label -1"),
    (np.array([[0, -1], [-1, -1]]), 4, r"cl_train row 1 has no complementary label \(only -1 padding\)"),
    (np.array([[0, -2]]), 4, "cl_train row 0 has complementary label -2"),
    (np.array([[1, 1, 0], [1, 1, 1]], dtype=bool), 3, r"cl_train row 1 marks all 3 classes as complementary"),
    (np.array([[0, 0, 0]], dtype=bool), 3, r"cl_train row 0 has no complementary label \(an all-zero mask row\)"),
    (np.array([[0, 1, 2]]), 3, "cl_train row 0 names all 3 classes as complementary"),
    (np.array([0.5, 1.0]), 3, "cl_train has dtype float64"),
])
def test_bad_given_labels_are_one_line(cl, C, needle):
    with pytest.raises(DataError, match=needle) as e:
        cl_targets(cl, C, "f.npz")
    assert "\n" not in str(e.value) and str(e.value).startswith("f.npz: ")


def test_bad_files(tmp_path):
    xtr, ytr, xte, yte = digits_arrays()
    cl = three_cls(ytr)
    cases = [
        (dict(x_train=xtr, cl_train=cl[:-1]), "cl_train has 1399 rows but x_train has 1400 images"),
        (dict(x_train=xtr, cl_train=cl, x_test=xte, y_test=yte, cl_transition=np.full((10, 10), 0.1)),
         "cl_transition is singular: URE and the validation estimates need its inverse"),
        (dict(x_train=xtr, cl_train=cl, cl_transition=np.full((10, 10), 0.2)), "cl_transition row 0 sums to 2"),
        (dict(x_train=xtr, cl_train=cl, cl_transition=np.ones((3, 3)) / 3), r"cl_transition has shape \(3, 3\)"),
        (dict(x_train=xtr, cl_train=cl, x_test=xte, y_test=yte % 5, num_classes=np.int64(8)),
         "cl_train row .* has complementary label 9, but there are 8 classes"),
        (dict(x_train=xtr), r"missing array\(s\) y_train \(true labels\) or cl_train"),
        (dict(x_train=xtr, cl_train=cl, y_test=yte), r"missing array\(s\) x_test"),
    ]
    for i, (arrays, needle) in enumerate(cases):
        with pytest.raises(DataError, match=needle):
            load_dataset(cfg(write(tmp_path / f"bad{i}.npz", **arrays)))


def test_loader_keeps_given_labels_and_no_true_ones(given_npz):
    ds = load_dataset(cfg(given_npz["with_test"]))
    assert ds.y_train is None and ds.cl_train.shape == (1400, 10) and ds.has_test
    assert torch.allclose(ds.cl_train.sum(1), torch.ones(1400))
    bare = load_dataset(cfg(given_npz["no_test"]))
    assert bare.x_test is None and bare.y_test is None and not bare.has_test
    assert bare.fingerprint != ds.fingerprint


def test_transition_matrix_estimated_or_given(given_npz, tmp_path):
    split = split_and_label(cfg(given_npz["with_test"]), load_dataset(cfg(given_npz["with_test"])))
    assert split.q_source == "estimated" and split.y_train is None and split.y_val is None
    Q = split.Q
    assert torch.allclose(Q.sum(1), torch.ones(10)) and torch.all(Q.diagonal() == 0)
    assert (Q[Q > 0] - 1 / 9).abs().max() < 0.03  # uniform annotators: close to the uniform Q
    # a preference for class 0 among the CLs shows in every row's column 0
    skewed = torch.zeros(100, 3)
    skewed[:60, 0], skewed[60:80, 1], skewed[80:, 2] = 1, 1, 1
    Qs = estimate_transition(skewed)
    assert Qs[1, 0] > Qs[1, 2] and Qs[2, 0] > Qs[2, 1] and torch.allclose(Qs.sum(1), torch.ones(3))
    given_q = (np.ones((10, 10)) - np.eye(10)) * 0.8 / 9 + np.eye(10) * 0.2  # 20% noisy CLs, known
    xtr, ytr, *_ = digits_arrays()
    path = write(tmp_path / "q.npz", x_train=xtr, cl_train=three_cls(ytr), cl_transition=given_q)
    split = split_and_label(cfg(path), load_dataset(cfg(path)))
    assert split.q_source == "given" and torch.allclose(split.Q, torch.tensor(given_q, dtype=torch.float32))


@pytest.mark.parametrize("loss", ["scl_nl", "fwd", "ure_tnn"])
def test_training_on_given_labels_learns(given_npz, loss):
    """Three CLs per image carry 1.4x the information of one: SCL-NL reaches > 60% on digits (chance 10%)."""
    res = fit(cfg(given_npz["with_test"], epochs=20, method="icm", loss=loss), load_dataset(cfg(given_npz["with_test"])))
    f = res.final
    assert {"val_scel", "val_ure", "val_acc_est", "test_acc"} <= set(f)
    assert "noise_rate" not in f and "pair_impurity" not in f  # they read true training labels: absent
    assert res.info["transition_matrix"] == "estimated"
    bound = 0.6 if loss == "scl_nl" else 0.4
    assert f["test_acc"] > bound, f


def test_every_method_runs_on_given_labels_without_test(given_npz):
    data = load_dataset(cfg(given_npz["no_test"]))
    for method in ("none", "mixup", "icm", "icm_multimix", "infinite_class"):
        extra = {"K": 2} if "multimix" in method else {}
        f = fit(cfg(given_npz["no_test"], epochs=1, method=method, **extra), data).final
        assert not [k for k in f if k.startswith("test_")] and "val_acc_est" in f, (method, f)


def test_mixtune_train_with_and_without_test(given_npz, tmp_path, capsys):
    from tuner.cli import main

    for name in ("with_test", "no_test"):
        out = tmp_path / name
        rc = main(["train", "--dataset", "npz", "--data-dir", str(given_npz[name]), "--labels", "given",
                   "--method", "icm", "--epochs", "3", "--quiet", "--output", str(out)])
        assert rc == 0
        final = json.loads((out / "summary.json").read_text())["final"]
        assert "val_scel" in final and ("test_acc" in final) == (name == "with_test")
    printed = capsys.readouterr().out
    assert "labels=given" not in printed and "(given labels, scl_nl)" in printed
