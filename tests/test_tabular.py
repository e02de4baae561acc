"""Tabular data that trains well: scikit-learn's wine (178 rows, 13 float features whose scales
differ by up to four orders of magnitude, 3 classes) as a user's `.npz`.

mixtune's MLP, with the settings a new user gets (`mixtune train` defaults, ordinary labels),
must be at least as accurate as scikit-learn's plain `LogisticRegression` on the same split:
the features are standardised one by one with the training split's statistics. With
`--no-standardize-features` (one mean/std shared by all features, what mixtune did before)
it falls far behind, which is what this test guards against.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import yaml

from tuner.cli import main


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    from sklearn.datasets import load_wine
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    with warnings.catch_warnings():  # lbfgs on unscaled features stops at max_iter: plain, as a user runs it
        warnings.simplefilter("ignore", ConvergenceWarning)
        baseline = LogisticRegression().fit(xtr, ytr).score(xte, yte)
    path = tmp_path_factory.mktemp("wine") / "wine.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path, baseline


def train(tmp_path, npz, *extra):
    out = tmp_path / "run"
    # val_fraction 0: the MLP trains on the very rows the logistic regression saw
    assert main(["train", "--dataset", "npz", "--data-dir", str(npz), "--labels", "ordinary", "--val-fraction", "0",
                 "--num-threads", "1", "--device", "cpu", "--quiet", "--output", str(out), *extra]) == 0
    return json.loads((out / "summary.json").read_text())["final"]["test_acc"], yaml.safe_load(
        (out / "config.yaml").read_text())


def test_mlp_matches_logistic_regression_on_wine(tmp_path, wine):
    npz, baseline = wine
    assert 0.9 <= baseline < 1.0  # the numbers a user sees: plain LogisticRegression, 45 test rows
    acc, config = train(tmp_path, npz)
    assert config["standardize_features"] is True  # on by default, and recorded in the exported config
    assert acc >= baseline, f"mixtune {acc:.3f} < LogisticRegression {baseline:.3f}"


def test_without_standardisation_the_mlp_falls_behind(tmp_path, wine):
    npz, baseline = wine
    acc, config = train(tmp_path, npz, "--no-standardize-features")
    assert config["standardize_features"] is False
    assert acc < baseline - 0.15, f"unscaled features gave {acc:.3f}, logistic regression {baseline:.3f}"
