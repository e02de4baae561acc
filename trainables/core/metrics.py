"""The functions that compute metrics; what each metric means is `metric_table.METRICS`.

The `*_t` functions return 0-d tensors on the inputs' device, so an evaluation can stack
them and sync with the host once; the float versions call `.item()` (a sync point) and are
meant for one-off use. An empty input gives nan (a mean over nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# ----------------------------------------------------------------------------- ordinary labels
def accuracy_t(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(1) == y).float().mean()


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Share of rows whose argmax is the true label. logits (N, C), y (N,) integer."""
    return accuracy_t(logits, y).item()  # sync point


def expected_calibration_error_t(probs: Tensor, y: Tensor, n_bins: int = 15) -> Tensor:
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins} must be >= 1")
    conf, pred = probs.double().max(1)  # (N,), (N,); float64 so the per-bin sums cancel exactly
    gap = (pred == y).double() - conf  # (N,) correct_i - conf_i
    # bin m (0-based) holds conf in (m/M, (m+1)/M]; conf > 0 always (max prob >= 1/C)
    idx = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1  # (N,)
    per_bin = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).scatter_add_(0, idx, gap)
    return per_bin.abs().sum() / conf.numel()


def expected_calibration_error(probs: Tensor, y: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of the max-probability confidence, equal-width bins.

    Guo et al., 2017, "On Calibration of Modern Neural Networks" (ICML): bins
    B_m = ((m-1)/M, m/M], ECE = sum_m |B_m|/N * |acc(B_m) - conf(B_m)|
    = (1/N) sum_m |sum_{i in B_m} (correct_i - conf_i)|, the form computed here with one
    scatter_add (no loop over samples or bins). probs (N, C) rows of class probabilities
    (e.g. softmax of logits), y (N,) integer.
    """
    return expected_calibration_error_t(probs, y, n_bins).item()  # sync point


def ordinary_validation(logits: Tensor, y: Tensor) -> dict[str, Tensor]:
    """val_acc, val_loss (cross-entropy), val_ece on true validation labels; 0-d tensors."""
    return {
        "val_acc": accuracy_t(logits, y),
        "val_loss": F.cross_entropy(logits.float(), y),
        "val_ece": expected_calibration_error_t(logits.float().softmax(1), y),
    }


# ----------------------------------------------------------------------------- complementary labels
def scel_t(logits: Tensor, target: Tensor, Q: Tensor) -> Tensor:
    """SCEL: -sum_c t_c log (softmax(z) Q)_c, mean over rows (libcll's `valid_type="SCEL"`).

    The cross-entropy between the observed complementary labels and the model's distribution
    over complementary labels p Q. Under uniform Q, (p Q)_c = (1 - p_c) / (C - 1), so it is
    SCL-NL's value plus log(C - 1). target (N, C) rows summing to 1; Q (C, C).
    """
    q = torch.softmax(logits.float(), dim=1) @ Q.float()
    return -(target * q.clamp_min(torch.finfo(torch.float32).tiny).log()).sum(1).mean()


# log-spaced temperatures for val_scel_ts: 0.08 .. 12, 41 points (a factor ~1.13 apart)
TEMPERATURES = tuple(float(t) for t in torch.exp(torch.linspace(-2.5, 2.5, 41)).tolist())


def scel_ts_t(logits: Tensor, target: Tensor, Q: Tensor, temperatures: tuple[float, ...] = TEMPERATURES) -> Tensor:
    """SCEL at the best temperature: min over T of scel(z / T), T on a fixed log grid.

    SCEL is a log-loss, so it ranks models by their calibration as much as by how well they
    separate the classes: an over-confident model that would win on accuracy loses on SCEL
    to a mixup-trained, under-confident one. Dividing the logits by the one temperature that
    fits the validation CLs best (temperature scaling, Guo et al. 2017, fitted on
    complementary labels) takes calibration out of the comparison; argmax, hence accuracy,
    is unchanged. One parameter fitted on the same rows makes every trial's value slightly
    optimistic, alike for all. Measured in docs/results.md: a higher Kendall tau with test
    accuracy than SCEL, with the same or lower selection regret. (T, V, C) work in a loop over
    the T values; no host sync.
    """
    z = logits.float()
    Qf = Q.float()
    values = torch.stack([scel_t(z / t, target, Qf) for t in temperatures])
    return values.min()


def cl_weights(target: Tensor, Q_inv: Tensor) -> Tensor:
    """w = t Q^-1 (N, C): E[w | y] = onehot(y) whenever E[t | y] = Q[y] (the unbiasedness behind URE)."""
    return target.double() @ Q_inv.double()


def ure_t(logits: Tensor, target: Tensor, Q_inv: Tensor) -> Tensor:
    """Unbiased estimate of the cross-entropy risk from CLs: mean_i sum_k w_ik (-log p_ik), w = t Q^-1.

    Ishida et al., 2019 (ICML), Theorem 1 generalised to any invertible Q (Yu et al., 2018):
    since E[w | y] = onehot(y), E[sum_k w_k l_k] = E[l_y]. No correction (max/min) is applied:
    as a validation metric it is the plain estimate, which may be negative.
    """
    logp = F.log_softmax(logits.float(), dim=1).double()
    return -(cl_weights(target, Q_inv) * logp).sum(1).mean()


def cl_accuracy_estimate_t(logits: Tensor, target: Tensor, Q_inv: Tensor) -> Tensor:
    """Unbiased estimate of accuracy from CLs alone: mean_i (t_i Q^-1)[argmax z_i].

    The 0-1 risk written with the URE weights: with l_k = [pred != k], sum_k w_k l_k =
    sum_k w_k - w_pred = 1 - w_pred, because Q's rows sum to 1 so Q^-1's do too and
    sum_k w_k = sum_c t_c = 1. E[w_pred | x, y] = [pred = y], hence the mean of w_pred is
    unbiased for accuracy. Uniform Q (Q^-1 = J - (C-1) I): w_pred = 1 - (C-1) t_pred, so with
    one CL per row, error = (C-1) * P(argmax = CL); with m distinct uniform CLs per row
    (t = multi-hot / m), error = (C-1)/m * P(argmax among the CLs). Unbiased only if Q is the
    true transition (E[t | y] = Q[y]): with a share eps of wrong CLs but uniform Q assumed,
    E[estimate] = acc (1 - C eps) + eps, shrunk towards chance (rankings are kept in
    expectation while eps < 1/C). Single values may leave [0, 1]; the mean is the estimate.
    """
    pred = logits.argmax(1, keepdim=True)  # (N, 1)
    return cl_weights(target, Q_inv).gather(1, pred).mean()


def complementary_validation(logits: Tensor, target: Tensor, Q: Tensor, Q_inv: Tensor) -> dict[str, Tensor]:
    """val_scel, val_scel_ts, val_ure, val_acc_est from validation complementary labels only; 0-d tensors."""
    return {
        "val_scel": scel_t(logits, target, Q),
        "val_scel_ts": scel_ts_t(logits, target, Q),
        "val_ure": ure_t(logits, target, Q_inv),
        "val_acc_est": cl_accuracy_estimate_t(logits, target, Q_inv),
    }


# ----------------------------------------------------------------------------- diagnostics
def noisy_rows(mixed_target: Tensor, y_true: Tensor) -> Tensor:
    """Count (0-d tensor, no host sync) of mixed complementary-label rows that put weight (> 0)
    on the anchor's true class: the numerator of the noise rate, summed by `fit` batch by batch.

    Mai & Lin, 2025, "Intra-Cluster Mixup: An Effective Data Augmentation Technique for
    Complementary-Label Learning" (TMLR): mixing complementary labels creates noise, a mixed
    CL vector that says "not y" for the example's own class y, because the partner's CLs
    include y or the CL itself is wrong. The paper's condition (ybar_i = y_j or
    ybar_j = y_i) counts both sides of a pair; this counts the anchor's side, so an
    unordered pair enters twice when both orders are mixed. mixed_target (N, C), y_true
    (N,) the true label of the anchor (first) example of each mix.
    """
    return (mixed_target.gather(1, y_true.long().unsqueeze(1)) > 0).sum()


def impure_pairs(y_anchor: Tensor, y_partner: Tensor) -> Tensor:
    """Count (0-d tensor, no host sync) of mixing pairs whose true labels differ. (N,) integer each."""
    return (y_anchor != y_partner).sum()


def noise_rate(mixed_target: Tensor, y_true: Tensor) -> float:
    """Share of rows `noisy_rows` counts."""
    return noisy_rows(mixed_target, y_true).item() / max(len(y_true), 1)  # sync point


def pair_impurity(y_anchor: Tensor, y_partner: Tensor) -> float:
    """Share of pairs `impure_pairs` counts."""
    return impure_pairs(y_anchor, y_partner).item() / max(len(y_anchor), 1)  # sync point
