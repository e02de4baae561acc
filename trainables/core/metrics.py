"""Evaluation and diagnostic metrics, each returning a python float.

Each function builds its result on the tensors' device and calls `.item()` once at the end:
that is a host-device sync point, so call these once per evaluation, not per batch.
An empty input gives nan (a mean over nothing).
"""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Share of rows whose argmax is the true label. logits (N, C), y (N,) integer."""
    return (logits.argmax(1) == y).float().mean().item()  # sync point


def expected_calibration_error(probs: Tensor, y: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of the max-probability confidence, equal-width bins.

    Guo et al., 2017, "On Calibration of Modern Neural Networks" (ICML): bins
    B_m = ((m-1)/M, m/M], ECE = sum_m |B_m|/N * |acc(B_m) - conf(B_m)|
    = (1/N) sum_m |sum_{i in B_m} (correct_i - conf_i)|, the form computed here with one
    scatter_add (no loop over samples or bins). probs (N, C) rows of class probabilities
    (e.g. softmax of logits), y (N,) integer.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins={n_bins} must be >= 1")
    conf, pred = probs.double().max(1)  # (N,), (N,); float64 so the per-bin sums cancel exactly
    gap = (pred == y).double() - conf  # (N,) correct_i - conf_i
    # bin m (0-based) holds conf in (m/M, (m+1)/M]; conf > 0 always (max prob >= 1/C)
    idx = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1  # (N,)
    per_bin = torch.zeros(n_bins, dtype=torch.float64, device=probs.device).scatter_add_(0, idx, gap)
    return (per_bin.abs().sum() / conf.numel()).item()  # sync point


def noise_rate(mixed_target: Tensor, y_true: Tensor) -> float:
    """Share of mixed complementary-label rows that put weight (> 0) on the anchor's true class.

    Mai & Lin, 2025, "Intra-Cluster Mixup: An Effective Data Augmentation Technique for
    Complementary-Label Learning" (TMLR): mixing complementary labels creates noise, a mixed
    CL vector that says "not y" for the example's own class y, because the partner's CLs
    include y or the CL itself is wrong. The paper's condition (ybar_i = y_j or
    ybar_j = y_i) counts both sides of a pair; this counts the anchor's side, so an
    unordered pair enters twice when both orders are mixed. mixed_target (N, C), y_true
    (N,) the true label of the anchor (first) example of each mix.
    """
    on_true = mixed_target.gather(1, y_true.long().unsqueeze(1)).squeeze(1)  # (N,)
    return (on_true > 0).float().mean().item()  # sync point


def pair_impurity(y_anchor: Tensor, y_partner: Tensor) -> float:
    """Share of mixing pairs whose true labels differ. y_anchor, y_partner (N,) integer."""
    return (y_anchor != y_partner).float().mean().item()  # sync point
