"""The validation split and the metrics computed on it from the labels a user has.

- the split depends on the data seed only (every trial of a search sees the same rows and the
  same complementary labels), never enters training or clustering, and val_fraction = 0 turns
  it off;
- val_scel, val_ure and val_acc_est equal plain per-row reimplementations on small examples;
- the accuracy estimate is unbiased: its mean over many complementary-label draws matches the
  true accuracy for uniform, biased, several and noisy CLs (with the matching Q), and with
  noise but uniform Q assumed it is shrunk towards chance exactly as the docstring says.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainables.core.config import TrainConfig
from trainables.core.data import load_dataset
from trainables.core.errors import ConfigError
from trainables.core.fit import fit, prepare
from trainables.core.labels import complementary_targets, transition_matrix
from trainables.core.metric_table import METRICS, selectable
from trainables.core.metrics import cl_accuracy_estimate_t, complementary_validation, scel_t, ure_t
from trainables.core.split import split_and_label

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(TrainConfig())


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"num_threads": 1, **kw})


# ----------------------------------------------------------------------------- the split
def test_split_is_the_users_data_not_the_trials(digits):
    a = split_and_label(cfg(seed=0), digits)
    b = split_and_label(cfg(seed=7, method="icm", lr=0.1), digits)  # another trial of the same search
    assert torch.equal(a.val_index, b.val_index) and torch.equal(a.train_index, b.train_index)
    assert torch.equal(a.val_targets, b.val_targets) and torch.equal(a.train_targets, b.train_targets)
    n = len(digits.x_train)
    assert len(a.val_index) == round(0.1 * n) and len(a.train_index) + len(a.val_index) == n
    assert not set(a.val_index.tolist()) & set(a.train_index.tolist())
    c = split_and_label(cfg(data_seed=1), digits)  # another data seed: other rows, other labels
    assert not torch.equal(a.val_index, c.val_index)
    # a row's complementary label does not depend on which side of the split it fell
    d = split_and_label(cfg(val_fraction=0.3), digits)
    rows = sorted(set(a.train_index.tolist()) & set(d.train_index.tolist()))
    pos_a = {r: i for i, r in enumerate(a.train_index.tolist())}
    pos_d = {r: i for i, r in enumerate(d.train_index.tolist())}
    assert all(torch.equal(a.train_targets[pos_a[r]], d.train_targets[pos_d[r]]) for r in rows)


def test_validation_rows_carry_the_same_kind_of_labels(digits):
    for kind in (dict(cl_type="uniform"), dict(cl_type="multiple", num_cl=3), dict(cl_type="biased"),
                 dict(cl_noise=0.2)):
        s = split_and_label(cfg(**kind), digits)
        t, y = s.val_targets, s.y_val
        assert torch.allclose(t.sum(1), torch.ones(len(t)))
        per_row = (t > 0).sum(1)
        assert set(per_row.tolist()) == {kind.get("num_cl", 1)}
        on_true = t.gather(1, y[:, None]).squeeze(1) > 0
        if "cl_noise" in kind:
            assert 0.1 < on_true.float().mean() < 0.3  # some wrong CLs, as in training
        else:
            assert not on_true.any()
    ordinary = split_and_label(cfg(labels="ordinary"), digits)
    assert torch.equal(ordinary.val_targets.argmax(1), ordinary.y_val) and ordinary.Q is None


def test_validation_rows_never_reach_training_or_clustering(digits):
    c = cfg(method="icm", k=10)
    data = prepare(c, digits, CPU)
    split = split_and_label(c, digits)
    assert torch.equal(data.train_index, split.train_index)
    assert len(data.x) == len(split.train_index) and len(data.clusters.assign) == len(split.train_index)
    assert torch.equal(data.x, digits.x_train[split.train_index])
    assert torch.equal(data.x_val, digits.x_train[split.val_index])
    # the same clustering as one computed on the training rows alone: no validation row shaped it
    from trainables.core.clustering import cached_clusters
    import hashlib

    key = f"{digits.fingerprint}:{hashlib.sha256(split.train_index.numpy().tobytes()).hexdigest()[:16]}"
    alone = cached_clusters(digits.x_train[split.train_index], key, c.cluster_features, c.k, c.seed, c.pca_dim)
    assert alone.cache_hit and torch.equal(alone.assign, data.clusters.assign)


def test_val_fraction_zero_means_no_val_metric(digits):
    off = fit(cfg(val_fraction=0.0, epochs=1), digits).final
    assert not [k for k in off if k.startswith("val_")] and "test_acc" in off
    on = fit(cfg(epochs=1), digits).final
    assert {"val_scel", "val_scel_ts", "val_ure", "val_acc_est"} <= set(on) and "val_acc" not in on
    ordinary = fit(cfg(epochs=1, labels="ordinary"), digits).final
    assert {"val_acc", "val_loss", "val_ece"} <= set(ordinary) and "val_scel" not in ordinary


def test_validation_split_size_errors(digits):
    with pytest.raises(ConfigError, match=r"val_fraction=0.6 must be in \[0.0, 0.5\]"):
        cfg(val_fraction=0.6)
    with pytest.raises(ConfigError, match=r"val_fraction=0.01 leaves 14 validation rows of 1438; at least 2 x 10"):
        split_and_label(cfg(val_fraction=0.01), digits)


def test_metric_table_says_what_each_run_can_report():
    assert selectable("ordinary", val=True, test=True, train_labels=True)[:4] == ["train_loss", "val_acc", "val_loss",
                                                                                  "val_ece"]
    given = selectable("given", val=True, test=False, train_labels=False)
    assert given == ["train_loss", "val_scel", "val_scel_ts", "val_ure", "val_acc_est"]
    assert {m for m, s in METRICS.items() if s.reads} == {"test_acc", "test_ece", "noise_rate", "pair_impurity"}
    assert all(s.meaning for s in METRICS.values())


# ----------------------------------------------------------------------------- the metrics, by hand
def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def plain_metrics(logits, targets, Q):
    """Per-row loops: SCEL, URE and the accuracy estimate, from the definitions."""
    C = len(Q)
    Qinv = torch.linalg.inv(torch.tensor(Q, dtype=torch.float64)).tolist()
    scel = ure = acc = 0.0
    for z, t in zip(logits, targets):
        p = softmax(z)
        pq = [sum(p[i] * Q[i][j] for i in range(C)) for j in range(C)]
        scel += -sum(t[j] * math.log(pq[j]) for j in range(C))
        w = [sum(t[c] * Qinv[c][k] for c in range(C)) for k in range(C)]
        ure += sum(w[k] * -math.log(p[k]) for k in range(C))
        acc += w[max(range(C), key=lambda k: z[k])]
    n = len(logits)
    return scel / n, ure / n, acc / n


@pytest.mark.parametrize("Q", [
    [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],  # uniform
    [[0, 0.8, 0.2], [0.3, 0, 0.7], [0.6, 0.4, 0]],  # biased
    [[0.1, 0.45, 0.45], [0.45, 0.1, 0.45], [0.45, 0.45, 0.1]],  # noisy
])
def test_validation_metrics_match_a_plain_reimplementation(Q):
    logits = [[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 2.5, 0.0], [0.0, 0.0, 3.0]]
    targets = [[0, 1, 0], [0.5, 0, 0.5], [0, 0, 1], [1, 0, 0]]  # one CL, two CLs, one, one
    want = plain_metrics(logits, targets, Q)
    Qt = torch.tensor(Q)
    got = complementary_validation(torch.tensor(logits), torch.tensor(targets, dtype=torch.float32), Qt,
                                   torch.linalg.inv(Qt.double()).float())
    assert [got["val_scel"].item(), got["val_ure"].item(), got["val_acc_est"].item()] == pytest.approx(want, rel=1e-5)


def test_temperature_scaled_scel_is_the_best_scel_over_the_grid():
    from trainables.core.metrics import TEMPERATURES, scel_ts_t

    Q = [[0, 0.8, 0.2], [0.3, 0, 0.7], [0.6, 0.4, 0]]
    # the last row's argmax is its CL: a confident mistake, so the best temperature is inside the grid
    logits = [[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 2.5, 0.0], [0.0, 0.0, 3.0], [0.0, 2.0, 0.0]]
    targets = [[0, 1, 0], [0.5, 0, 0.5], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
    want = min(plain_metrics([[v / t for v in z] for z in logits], targets, Q)[0] for t in TEMPERATURES)
    z, tt, Qt = torch.tensor(logits), torch.tensor(targets, dtype=torch.float32), torch.tensor(Q)
    got = scel_ts_t(z, tt, Qt).item()
    assert got == pytest.approx(want, rel=1e-5) and got <= scel_t(z, tt, Qt).item() + 1e-7  # T = 1 is on the grid
    assert 1.0 in [round(t, 6) for t in TEMPERATURES]
    # calibration taken out: sharpening the logits by a grid step changes nothing
    step = TEMPERATURES[21] / TEMPERATURES[20]
    assert scel_ts_t(z * step, tt, Qt).item() == pytest.approx(got, rel=1e-4)


def test_uniform_single_cl_estimate_is_one_minus_c_minus_one_times_hits():
    """Under uniform single CLs, error = (C-1) * P(argmax = CL): the issue's formula."""
    C = 4
    logits = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 3.0], [3.0, 0, 0, 0]])
    cl = torch.tensor([0, 2, 3, 1, 1])  # argmax equals the CL in the first row only
    t = torch.nn.functional.one_hot(cl, C).float()
    Q = transition_matrix(C, "uniform", 0.0, torch.Generator())
    est = cl_accuracy_estimate_t(logits, t, torch.linalg.inv(Q.double()).float()).item()
    assert est == pytest.approx(1 - (C - 1) * 1 / 5)


# ----------------------------------------------------------------------------- unbiasedness
def draws_of_estimate(logits, y, C, cl_type, num_cl, cl_noise, Q_assumed=None, draws=3000):
    """The accuracy estimate (and URE) under `draws` independent complementary-label draws."""
    gen = torch.Generator().manual_seed(0)
    Q = transition_matrix(C, cl_type, cl_noise, gen, num_cl)
    Q_used = Q if Q_assumed is None else Q_assumed
    Qinv = torch.linalg.inv(Q_used.double()).float()
    yy = y.repeat(draws)
    t = complementary_targets(yy, C, cl_type, num_cl, cl_noise, Q, gen).view(draws, len(y), C)
    pred = logits.argmax(1)
    w = (t.double() @ Qinv.double())  # (draws, N, C)
    acc = w.gather(2, pred.view(1, -1, 1).expand(draws, -1, 1)).squeeze(2).mean(1)  # (draws,)
    logp = torch.log_softmax(logits.double(), 1)
    ure = -(w * logp).sum(2).mean(1)
    return acc, ure


@pytest.mark.parametrize("cl_type,num_cl,cl_noise", [
    ("uniform", 1, 0.0), ("biased", 1, 0.0), ("multiple", 3, 0.0), ("uniform", 1, 0.1), ("multiple", 3, 0.1),
])
def test_accuracy_estimate_and_ure_are_unbiased(cl_type, num_cl, cl_noise):
    """Mean over 3000 draws within 4 standard errors (about 1e-3 here) of the true value."""
    torch.manual_seed(1)
    N, C = 200, 5
    logits = torch.randn(N, C) * 2
    y = torch.randint(0, C, (N,))
    true_acc = (logits.argmax(1) == y).double().mean().item()
    true_ce = torch.nn.functional.cross_entropy(logits.double(), y).item()
    acc, ure = draws_of_estimate(logits, y, C, cl_type, num_cl, cl_noise)
    se_acc = acc.std().item() / math.sqrt(len(acc))
    se_ure = ure.std().item() / math.sqrt(len(ure))
    assert abs(acc.mean().item() - true_acc) < 4 * se_acc, (acc.mean().item(), true_acc, se_acc)
    assert abs(ure.mean().item() - true_ce) < 4 * se_ure, (ure.mean().item(), true_ce, se_ure)
    assert acc.std().item() > 0.01  # one draw alone is noisy: that is why selection is hard


def test_noise_with_uniform_q_assumed_shrinks_towards_chance():
    """eps wrong CLs, uniform Q assumed: E[estimate] = acc (1 - C eps) + eps (metrics.py)."""
    torch.manual_seed(2)
    N, C, eps = 200, 5, 0.1
    logits = torch.randn(N, C) * 2
    y = torch.randint(0, C, (N,))
    acc_true = (logits.argmax(1) == y).double().mean().item()
    uniform = transition_matrix(C, "uniform", 0.0, torch.Generator())
    acc, _ = draws_of_estimate(logits, y, C, "uniform", 1, eps, Q_assumed=uniform)
    se = acc.std().item() / math.sqrt(len(acc))
    assert abs(acc.mean().item() - (acc_true * (1 - C * eps) + eps)) < 4 * se


def test_validation_metrics_read_no_test_label(digits):
    """Permuting the test labels changes every test metric and no validation metric."""
    import dataclasses

    c = cfg(epochs=2, method="icm")
    a = fit(c, digits).history
    perm = torch.randperm(len(digits.y_test), generator=torch.Generator().manual_seed(0))
    b = fit(c, dataclasses.replace(digits, y_test=digits.y_test[perm])).history
    for ha, hb in zip(a, b):
        assert {k: v for k, v in ha.items() if k.startswith("val_")} == {k: v for k, v in hb.items()
                                                                        if k.startswith("val_")}
        assert ha["test_acc"] != hb["test_acc"]
