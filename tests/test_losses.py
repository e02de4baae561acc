"""Losses: hand-computed values on a 2x3 example, linearity under mixing, gradients, bf16,
URE-GA's branch, the dual-contrastive loss and the name table.

Expected numbers are written out with `math`/numpy formulas, never by calling the function
under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.core.losses import (
    LOSSES,
    candidate_targets,
    dual_contrastive,
    fwd,
    get_loss,
    infinite_class_loss,
    pc,
    scl_exp,
    scl_nl,
    soft_cross_entropy,
    ure_ga,
    ure_partial_risks,
    ure_tnn,
)

TOL = 1e-5

# The 2x3 example shared by the hand computations.
Z = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T_ORD = [[0.0, 1.0, 0.0], [0.3, 0.0, 0.7]]  # one-hot, and a mixed one-hot row
T_CL = [[1.0, 0.0, 0.0], [0.0, 0.6, 0.4]]  # single CL, and a mixed CL row
Q_UNI = [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]
Q_BIAS = [[0.0, 0.7, 0.3], [0.2, 0.0, 0.8], [0.5, 0.5, 0.0]]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def approx(x):
    return pytest.approx(x, abs=TOL, rel=TOL)


# ------------------------------------------------------------------ hand-computed values
def test_ce_hand():
    per = [-sum(tc * math.log(pc_) for tc, pc_ in zip(tr, softmax(zr))) for zr, tr in zip(Z, T_ORD)]
    assert soft_cross_entropy(t(Z), t(T_ORD)).item() == approx(sum(per) / 2)


def test_scl_nl_hand():
    per = [-sum(tc * math.log(1 - pc_) for tc, pc_ in zip(tr, softmax(zr))) for zr, tr in zip(Z, T_CL)]
    assert scl_nl(t(Z), t(T_CL)).item() == approx(sum(per) / 2)


def test_scl_exp_hand():
    per = [sum(tc * math.exp(pc_) for tc, pc_ in zip(tr, softmax(zr))) for zr, tr in zip(Z, T_CL)]
    assert scl_exp(t(Z), t(T_CL)).item() == approx(sum(per) / 2)


@pytest.mark.parametrize("Q", [Q_UNI, Q_BIAS])
def test_fwd_hand(Q):
    per = []
    for zr, tr in zip(Z, T_CL):
        p = softmax(zr)
        q = [sum(p[j] * Q[j][c] for j in range(3)) for c in range(3)]  # P(cl = c | x)
        per.append(-sum(tr[c] * math.log(q[c]) for c in range(3)))
    assert fwd(t(Z), t(T_CL), t(Q)).item() == approx(sum(per) / 2)


def hand_partial_risks(Z, T, Q=None, ccp=None):
    """Ishida et al. 2019's partial risks as takashiishida/comp computes them, by loops.

    For each complementary class j present in the batch, the mean over its examples (soft
    rows weight example i by t_ij) of Qinv[j, k] * l_ik, weighted by the CL prior ccp_j;
    R_k sums those over j. Uniform Q: Qinv = J - (C-1) I. Default ccp: Q's column means
    (1/C for uniform Q). An absent class contributes nothing.
    """
    C = len(Z[0])
    Qinv = np.ones((C, C)) - (C - 1) * np.eye(C) if Q is None else np.linalg.inv(np.array(Q, dtype=np.float64))
    if ccp is None:
        ccp = [1.0 / C] * C if Q is None else list(np.array(Q, dtype=np.float64).mean(0))
    L = [[-math.log(pc_) for pc_ in softmax(zr)] for zr in Z]
    R = [0.0] * C
    for j in range(C):
        n_j = sum(row[j] for row in T)
        if n_j == 0:
            continue
        for k in range(C):
            mean_jk = sum(T[i][j] * Qinv[j][k] * L[i][k] for i in range(len(Z))) / n_j
            R[k] += ccp[j] * mean_jk
    return np.array(R)


def test_ure_hand_prior_weighted_group_means():
    R = hand_partial_risks(Z, T_CL)
    # written out for the 2x3 example (C = 3, ccp = 1/3, Qinv = J - 2I): group 0 = example 0
    # (weight 1), group 1 = example 1 (0.6), group 2 = example 1 (0.4)
    L = [[-math.log(pc_) for pc_ in softmax(zr)] for zr in Z]
    by_hand = [
        (-L[0][0] + L[1][0] + L[1][0]) / 3,  # j=0: -l_00; j=1,2: +l_10 (each group's mean is example 1's)
        (L[0][1] - L[1][1] + L[1][1]) / 3,
        (L[0][2] + L[1][2] - L[1][2]) / 3,
    ]
    assert R.tolist() == [approx(v) for v in by_hand]
    got = ure_partial_risks(t(Z), t(T_CL))
    assert got.tolist() == [approx(r) for r in R]
    # uniform Q given == Q=None (libcll's TNN with the uniform matrix is NN)
    assert ure_partial_risks(t(Z), t(T_CL), t(Q_UNI)).tolist() == [approx(r) for r in R]
    assert ure_tnn(t(Z), t(T_CL)).item() == approx(np.maximum(R, 0).sum())
    assert R.min() >= 0  # prior weights: URE-GA's descent branch, the full estimate
    assert ure_ga(t(Z), t(T_CL)).item() == approx(R.sum())


def test_ure_with_batch_shares_as_priors_is_the_per_example_paper_estimator():
    # ccp_j = n_j / B turns the group means back into the plain batch mean of Ishida's
    # per-example estimator -(K-1) l(ybar) + sum_j l(j) (the previous, wrong, weighting)
    shares = [sum(row[j] for row in T_CL) / 2 for j in range(3)]
    R = hand_partial_risks(Z, T_CL, ccp=shares)
    per = []
    for zr, tr in zip(Z, T_CL):
        ls = [-math.log(pc_) for pc_ in softmax(zr)]
        per.append(-2 * sum(tc * lc for tc, lc in zip(tr, ls)) + sum(ls))
    assert R.sum() == approx(sum(per) / 2)
    assert R.min() < 0  # batch shares put this example on the ascent branch (R_0 < 0)
    assert ure_partial_risks(t(Z), t(T_CL), ccp=t(shares)).tolist() == [approx(r) for r in R]
    assert ure_ga(t(Z), t(T_CL), None, ccp=t(shares)).item() == approx(-np.minimum(R, 0).sum())


def test_ure_matches_a_port_of_ishidas_loop():
    # takashiishida/comp utils_algo.non_negative_loss, loss_vector, on a random batch
    g = np.random.default_rng(0)
    B, K = 40, 5
    z = g.normal(size=(B, K)) * 2
    cl = g.integers(0, K, B)
    cl[cl == 3] = 2  # class 3 absent from the batch
    ccp = g.dirichlet(np.ones(K))
    neglog = -(z - np.log(np.exp(z).sum(1, keepdims=True)))
    loss_vector, temp = np.zeros(K), np.zeros(K)
    for k in range(K):
        idx = cl == k
        if idx.sum() > 0:
            m = neglog[idx].mean(0)
            temp[k] = -(K - 1) * ccp[k] * m[k]
            loss_vector = loss_vector + ccp[k] * m
    loss_vector = loss_vector + temp
    target = F.one_hot(torch.from_numpy(cl), K).float()
    got = ure_partial_risks(torch.tensor(z, dtype=torch.float32), target, ccp=torch.tensor(ccp))
    assert np.allclose(got.numpy(), loss_vector, atol=1e-4)


def test_ure_sign_does_not_follow_the_batch_composition():
    # The root cause of URE-GA learning below chance: at uniform predictions every partial
    # risk is (1 - (C-1) ccp_k) log C = log(C) / C > 0 with prior weights, whatever the
    # batch; with batch shares it was (1 - (C-1) n_k / B) log C, negative for an
    # over-represented CL (here CL 0 is 3 of 6 rows) -> the ascent branch at initialisation.
    C = 4
    z = torch.zeros(6, C, requires_grad=True)
    cl = F.one_hot(torch.tensor([0, 0, 0, 1, 2, 3]), C).float()
    R = ure_partial_risks(z, cl)
    assert R.tolist() == [approx(math.log(C) / C)] * C
    assert ure_ga(z, cl).item() == approx(math.log(C))  # descent branch: the full estimate
    shares = cl.mean(0)
    assert ure_partial_risks(z, cl, ccp=shares)[0].item() == approx((1 - (C - 1) * 0.5) * math.log(C))


def test_ure_absent_class_contributes_nothing_and_gradients_stay_finite():
    z = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], requires_grad=True)
    cl = t([[1.0, 0, 0], [1.0, 0, 0]])  # classes 1 and 2 never the CL here
    R = ure_partial_risks(z, cl)
    assert R.tolist() == [approx(r) for r in hand_partial_risks(z.tolist(), cl.tolist())]
    ure_tnn(z, cl).backward()
    assert torch.isfinite(z.grad).all()


def test_ure_biased_q_hand():
    R = hand_partial_risks(Z, T_CL, Q_BIAS)  # default ccp: Q_BIAS's column means
    assert ure_partial_risks(t(Z), t(T_CL), t(Q_BIAS)).tolist() == [approx(r) for r in R]
    assert ure_tnn(t(Z), t(T_CL), t(Q_BIAS)).item() == approx(np.maximum(R, 0).sum())
    ccp = [0.2, 0.5, 0.3]
    R2 = hand_partial_risks(Z, T_CL, Q_BIAS, ccp)
    assert ure_partial_risks(t(Z), t(T_CL), t(Q_BIAS), ccp=t(ccp)).tolist() == [approx(r) for r in R2]
    with pytest.raises(ValueError, match="ccp has shape"):
        ure_partial_risks(t(Z), t(T_CL), None, ccp=torch.ones(4))


def test_pc_hand():
    C = 3
    per = []
    for zr, tr in zip(Z, T_CL):
        total = 0.0
        for c in range(C):
            lbar = sum(sigmoid(zr[c] - zr[y]) for y in range(C) if y != c)  # l(z_y - z_c) = sigmoid(z_c - z_y)
            total += tr[c] * ((C - 1) * lbar - C * (C - 1) / 2 + (C - 1))
        per.append(total)
    assert pc(t(Z), t(T_CL)).item() == approx(sum(per) / 2)


def test_pc_is_unbiased_for_the_ordinary_pc_risk():
    # Averaging over the C-1 uniform CLs recovers sum_{y' != y} sigmoid-loss(z_y - z_y').
    z, y, C = [0.3, -1.2, 2.0, 0.7], 2, 4
    cl_avg = t([[1 / 3 if c != y else 0.0 for c in range(C)]])
    ordinary = sum(1 / (1 + math.exp(z[y] - z[k])) for k in range(C) if k != y)
    assert pc(t([z]), cl_avg).item() == approx(ordinary)


# ------------------------------------------------------------------ linearity under mixing
@pytest.mark.parametrize("name", ["ce", "scl_nl", "scl_exp", "fwd", "pc"])
def test_linear_in_target(name):
    g = torch.Generator().manual_seed(0)
    B, C = 5, 4
    z = torch.randn(B, C, generator=g) * 2
    ta = F.one_hot(torch.randint(C, (B,), generator=g), C).float()
    tb = F.one_hot(torch.randint(C, (B,), generator=g), C).float()
    lam = torch.rand(B, 1, generator=g)
    mixed = lam * ta + (1 - lam) * tb
    Q = torch.full((C, C), 1 / (C - 1)).fill_diagonal_(0)
    fn = LOSSES[name]
    for i in range(B):
        one = slice(i, i + 1)
        want = lam[i, 0] * fn(z[one], ta[one], Q) + (1 - lam[i, 0]) * fn(z[one], tb[one], Q)
        assert fn(z[one], mixed[one], Q).item() == approx(want.item())


# ------------------------------------------------------------------ gradients, dtypes, stability
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_finite_and_bf16_gives_float32(name):
    g = torch.Generator().manual_seed(1)
    B, C = 6, 4
    target = torch.softmax(torch.randn(B, C, generator=g), 1)
    Q = torch.full((C, C), 1 / (C - 1)).fill_diagonal_(0)
    for dtype in (torch.float32, torch.bfloat16):
        z = (torch.randn(B, C, generator=g) * 3).to(dtype).requires_grad_()
        loss = LOSSES[name](z, target, Q)
        assert loss.dtype == torch.float32 and loss.dim() == 0
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # and inside bf16 autocast (how fit calls it on GPUs; CPU autocast here)
    z = torch.randn(B, C, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LOSSES[name](z @ torch.eye(C), target, Q)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_scl_nl_stable_for_extreme_logits():
    z = torch.tensor([[100.0, -100.0, -100.0], [0.0, 50.0, -50.0]], requires_grad=True)
    target = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss = scl_nl(z, target)
    # -log(1 - p0) = lse(all) - lse(others): row 0 = 100 - (-100 + ln 2); row 1 ~ 50 - 0
    row0 = 200.0 - math.log(2.0)
    row1 = (50.0 + math.log1p(math.exp(-50) + math.exp(-100))) - math.log(1 + math.exp(-50))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_scl_nl_matches_float64_naive():
    z = torch.randn(64, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 4
    target = torch.softmax(torch.randn(64, 7, dtype=torch.float64), 1)
    naive = -(target * torch.log(1 - torch.softmax(z, 1))).sum(1).mean()
    assert scl_nl(z.float(), target.float()).item() == approx(naive.item())


def test_scl_nl_gradient_matches_naive_including_ties():
    # Tied maxima: the non-argmax of the tie (p = 1/2) must still get its gradient.
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]], requires_grad=True)
    target = t([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    scl_nl(z, target).backward()
    z64 = z.detach().double().requires_grad_()
    (-(target.double() * torch.log(1 - torch.softmax(z64, 1))).sum(1).mean()).backward()
    assert torch.allclose(z.grad.double(), z64.grad, atol=1e-6)


# ------------------------------------------------------------------ URE-GA branch
def test_ure_ga_equals_sum_when_all_partial_risks_non_negative():
    # Near-uniform predictions, each class the CL once: R_k ~ (2 - 1) log 3 / 3 > 0.
    z = t([[0.1, 0.0, -0.1], [0.0, 0.2, 0.1], [-0.1, 0.1, 0.0]])
    cl = t([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    R = hand_partial_risks(z.tolist(), cl.tolist())
    assert R.min() >= 0
    assert ure_ga(z, cl).item() == approx(R.sum())
    assert ure_tnn(z, cl).item() == approx(R.sum())


def test_ure_ga_ascends_a_negative_partial_risk():
    # Example 0 has CL 0 and a tiny p_0 (large l_00, weight -(C-1)+1 = -1); example 1
    # predicts class 0 well (small l_10, weight 1): R_0 = ccp_0 (-l_00 + l_10) = (-l_00 + l_10) / 3 < 0.
    z = torch.tensor([[-5.0, 0.0, 0.0], [2.0, 0.0, 0.0]], requires_grad=True)
    cl = t([[1.0, 0, 0], [0, 1.0, 0]])
    R_hand = hand_partial_risks(z.tolist(), cl.tolist())
    assert R_hand[0] < 0
    obj = ure_ga(z, cl)
    assert obj.item() == approx(-np.minimum(R_hand, 0).sum())
    assert ure_tnn(z, cl).item() == approx(np.maximum(R_hand, 0).sum())
    (g_obj,) = torch.autograd.grad(obj, z)
    R0 = ure_partial_risks(z, cl)[0]
    (g_r0,) = torch.autograd.grad(R0, z)
    # a descent step on the objective moves along -g_obj; R_0 then changes by -g_obj . g_r0 > 0
    assert (-(g_obj * g_r0).sum()).item() > 0
    step = z.detach() - 0.1 * g_obj
    assert ure_partial_risks(step, cl)[0].item() > R0.item()


# ------------------------------------------------------------------ table and errors
def test_get_loss_known_and_unknown():
    assert get_loss("scl_nl") is scl_nl
    assert set(LOSSES) == {"ce", "scl_nl", "scl_exp", "fwd", "ure_ga", "ure_tnn", "pc"}
    with pytest.raises(ValueError) as e:
        get_loss("nope")
    msg = str(e.value)
    assert "'nope'" in msg and all(n in msg for n in LOSSES)


def test_fwd_needs_q_and_shapes_are_checked():
    with pytest.raises(ValueError, match="Q"):
        fwd(t(Z), t(T_CL), None)
    with pytest.raises(ValueError, match="Q has shape"):
        fwd(t(Z), t(T_CL), torch.eye(4))
    with pytest.raises(ValueError, match="must both be"):
        scl_nl(t(Z), t(T_CL)[:, :2])


def test_core_losses_and_metrics_import_no_tuning_stack():
    core = Path(__file__).resolve().parents[1] / "trainables" / "core"
    for name in ("losses.py", "metrics.py"):
        src = (core / name).read_text()
        assert not any(f"import {m}" in src or f"from {m}" in src for m in ("ray", "optuna", "mlflow"))


# ------------------------------------------------------------------ Infinite Class Mixup
def hand_dual(Z, T, balance):
    B = len(Z)
    S = [[sum(Z[j][c] * T[i][c] for c in range(len(Z[0]))) for i in range(B)] for j in range(B)]  # S[j][i]
    rows = sum(-math.log(softmax(S[j])[j]) for j in range(B)) / B
    cols = sum(-math.log(softmax([S[j][i] for j in range(B)])[i]) for i in range(B)) / B
    return balance * rows + (1 - balance) * cols, rows, cols


@pytest.mark.parametrize("balance", [0.5, 0.3, 1.0, 0.0])
def test_dual_contrastive_hand(balance):
    want, _, _ = hand_dual(Z, T_ORD, balance)
    assert dual_contrastive(t(Z), t(T_ORD), balance).item() == approx(want)


def test_dual_contrastive_directions_differ_and_balance_one_is_rows():
    _, rows, cols = hand_dual(Z, T_ORD, 0.5)
    assert abs(rows - cols) > 1e-3  # the example exercises both directions distinctly
    S = t(Z) @ t(T_ORD).T
    assert dual_contrastive(t(Z), t(T_ORD), 1.0).item() == approx(F.cross_entropy(S, torch.arange(2)).item())
    assert dual_contrastive(t(Z), t(T_ORD), 0.0).item() == approx(F.cross_entropy(S.T, torch.arange(2)).item())


def test_dual_contrastive_one_hot_distinct_classes_is_plain_ce():
    z = torch.randn(3, 3, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([2, 0, 1])
    onehot = F.one_hot(y, 3).float()
    # rows: each example's softmax over the batch's classifiers = over all C classes
    assert dual_contrastive(z, onehot, 1.0).item() == approx(F.cross_entropy(z, y).item())
    # columns: class y_i's scores over the examples, target example i
    assert dual_contrastive(z, onehot, 0.0).item() == approx(F.cross_entropy(z[:, y].T, torch.arange(3)).item())


def test_dual_contrastive_rejects_bad_balance():
    with pytest.raises(ValueError, match="balance"):
        dual_contrastive(t(Z), t(T_ORD), 1.5)


def test_candidate_targets():
    cl = F.one_hot(torch.tensor([0, 2, 1, 2]), 3).float()
    cand = candidate_targets(cl)
    assert torch.allclose(cand.sum(1), torch.ones(4))
    assert (cand[cl.bool()] == 0).all() and torch.allclose(cand[~cl.bool()], torch.full((8,), 0.5))
    multi = t([[0.5, 0.5, 0.0, 0.0]])  # two CLs of four classes: (1 - 1/2) / 3 on each CL
    assert candidate_targets(multi).tolist() == [[approx(0.5 / 3), approx(0.5 / 3), approx(1 / 3), approx(1 / 3)]]
    lam = 0.3  # commutes with mixing
    assert torch.allclose(
        candidate_targets(lam * cl[:2] + (1 - lam) * cl[2:]),
        lam * candidate_targets(cl[:2]) + (1 - lam) * candidate_targets(cl[2:]),
    )


def test_infinite_class_loss_mixes_the_two_terms():
    z, tc = t(Z), t(T_CL)
    cand = candidate_targets(tc)
    dual = hand_dual(Z, cand.tolist(), 0.4)[0]
    base = scl_nl(z, tc).item()
    got = infinite_class_loss(z, tc, scl_nl, None, 0.25, 0.4, cand)
    assert got.item() == approx(0.25 * dual + 0.75 * base)
    assert infinite_class_loss(z, tc, scl_nl, None, 1.0, 0.4, cand).item() == approx(dual)
    assert infinite_class_loss(z, tc, scl_nl, None, 0.0, 0.4, cand).item() == approx(base)
    # ordinary labels: the contrastive target defaults to the target itself
    ordinary = infinite_class_loss(z, t(T_ORD), soft_cross_entropy, None, 1.0, 0.5)
    assert ordinary.item() == approx(hand_dual(Z, T_ORD, 0.5)[0])
    with pytest.raises(ValueError, match="weight"):
        infinite_class_loss(z, tc, scl_nl, None, -0.1, 0.5, cand)


# ------------------------------------------------------------------ URE with a non-uniform class prior
def _imbalanced_sample(n: int, pi: list[float], seed: int = 0):
    """n examples of C classes with prior pi; the model's logits depend on the true class only; one uniform CL each."""
    g = torch.Generator().manual_seed(seed)
    C = len(pi)
    y = torch.multinomial(torch.tensor(pi), n, replacement=True, generator=g)
    L = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.3, 1.0, 0.0, -0.5], [0.0, 0.2, 0.8, 0.1], [-1.0, 0.4, 0.0, 1.5]])
    shift = torch.randint(1, C, (n,), generator=g)
    cl = (y + shift) % C  # uniform over the C - 1 other classes
    return L, y, L[y], F.one_hot(cl, C).float()


def test_ure_partial_risks_are_unbiased_with_the_real_prior_and_biased_without():
    """E[R_k] = pi_k E[-log p_k | y = k] needs ccp = pi Q; the uniform default misses it when pi is not uniform."""
    pi = [0.55, 0.25, 0.15, 0.05]
    C = len(pi)
    L, y, logits, target = _imbalanced_sample(200_000, pi)
    Q = (torch.ones(C, C) - torch.eye(C)) / (C - 1)
    want = [pi[k] * -math.log(softmax(L[k].tolist())[k]) for k in range(C)]
    ccp = torch.tensor(pi) @ Q  # P(cl = j) = (1 - pi_j) / (C - 1)
    got = ure_partial_risks(logits, target, Q, ccp=ccp)
    assert got.tolist() == pytest.approx(want, abs=0.01)
    uniform = ure_partial_risks(logits, target, Q)  # ccp defaults to 1/C
    assert max(abs(a - b) for a, b in zip(uniform.tolist(), want)) > 0.1
    # get_loss binds the prior into the URE losses only
    for name in ("ure_ga", "ure_tnn"):
        assert get_loss(name, ccp=ccp)(logits[:512], target[:512], Q).item() == approx(
            LOSSES[name](logits[:512], target[:512], Q, ccp=ccp).item()
        )
    assert get_loss("scl_nl", ccp=ccp) is scl_nl


def test_fit_passes_the_real_class_prior_to_ure_and_it_learns():
    """imbalance_ratio > 1: prepare computes ccp = pi Q from the kept rows' classes, fit's loss uses it, and
    URE-TNN still learns on digits (bound: 2.5x chance on the balanced test split; measured 3-seed mean 36.9
    with the real prior vs 35.6 with the uniform one, 40 epochs, MLP 64)."""
    from trainables.core.config import TrainConfig
    from trainables.core.data import load_dataset
    from trainables.core.fit import fit, prepare

    ds = load_dataset(TrainConfig())
    accs = []
    for seed in (0, 1, 2):
        cfg = TrainConfig(loss="ure_tnn", imbalance_ratio=10.0, epochs=40, batch_size=128, hidden=64, device="cpu",
                          num_threads=1, seed=seed, data_seed=seed)
        data = prepare(cfg, ds, torch.device("cpu"))
        pi = torch.bincount(data.y, minlength=10).float() / len(data.y)
        assert pi.max() / pi.min() > 5  # really imbalanced
        torch.testing.assert_close(data.ccp, pi @ data.Q)
        assert abs(data.ccp.sum().item() - 1) < 1e-5
        if seed == 0:  # the loop uses it: the first epoch's loss differs without it
            uniform = prepare(cfg.replace(epochs=1), ds, torch.device("cpu"))
            uniform.ccp = None
            with_prior = prepare(cfg.replace(epochs=1), ds, torch.device("cpu"))
            assert fit(cfg.replace(epochs=1), uniform).final["train_loss"] != pytest.approx(
                fit(cfg.replace(epochs=1), with_prior).final["train_loss"], rel=1e-4)
        accs.append(fit(cfg, data).final["test_acc"])
    assert sum(accs) / 3 > 0.25 and min(accs) > 0.15, accs
    balanced = prepare(TrainConfig(loss="ure_tnn", device="cpu"), ds, torch.device("cpu"))
    assert balanced.ccp is None  # a balanced set keeps the uniform default (results unchanged)
