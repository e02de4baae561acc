"""Complementary labels (each example is told a class it does NOT belong to) and class imbalance.

Everything is drawn from an explicit `torch.Generator`, vectorised over examples, and returned
as new tensors: the same seed gives the same labels on every run. Targets are dense (N, C)
rows summing to 1, the form every loss and the mixing code take. True labels stay with the
dataset and serve only evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import CL_TYPES

BIAS_STRENGTH = 2.0  # std of the biased scores: exp(2 * N(0,1)) spans ~50x between likely and rare CLs


def _check(num_classes: int, cl_type: str, cl_noise: float) -> None:
    if num_classes < 2:
        raise ValueError(f"complementary labels need num_classes >= 2, got {num_classes}")
    if cl_type not in CL_TYPES:
        raise ValueError(f"cl_type={cl_type!r} is not one of {', '.join(CL_TYPES)}")
    if not 0.0 <= cl_noise < 1.0:
        raise ValueError(f"cl_noise={cl_noise} must be in [0, 1)")


def _check_y(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-D integer tensor, got shape {tuple(y.shape)} dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):  # one sync, once per run
        raise ValueError(f"labels must lie in [0, {num_classes}), found {int(y.min())}..{int(y.max())}")
    return y.long()


def transition_matrix(
    num_classes: int, cl_type: str, cl_noise: float, generator: torch.Generator, num_cl: int = 1
) -> torch.Tensor:
    """(C, C) float32 Q with Q[i, j] = E[target_j | true label i]; rows sum to 1.

    For one CL per example that is P(complementary label j | true label i). For num_cl > 1
    (cl_type=multiple) a target row is multi-hot / num_cl and only its first label can be
    the wrong one (see `complementary_targets`), so the true class gets weight cl_noise /
    num_cl: the Q under which E[target | y] = Q[y] holds, which FWD, URE and the validation
    estimates rely on.
    """
    _check(num_classes, cl_type, cl_noise)
    if num_cl > 1:
        cl_noise = cl_noise / num_cl
    C = num_classes
    eye = torch.eye(C, device=generator.device)
    if cl_type == "biased":
        # Softmax of Gaussian scores over the C-1 other classes: each row favours a few
        # complementary labels strongly, as when annotators prefer some "not this" answers.
        scores = torch.randn(C, C, generator=generator, device=generator.device) * BIAS_STRENGTH
        off = torch.softmax(scores.masked_fill(eye.bool(), float("-inf")), dim=1)
    else:  # uniform and multiple: every other class equally likely
        off = (1.0 - eye) / (C - 1)
    # cl_noise moves that share of each row onto the true class: a "wrong" complementary label
    return ((1.0 - cl_noise) * off + cl_noise * eye).float()


def complementary_targets(
    y: torch.Tensor,
    num_classes: int,
    cl_type: str,
    num_cl: int,
    cl_noise: float,
    Q: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """(N, C) float32 soft complementary-label rows (each sums to 1), drawn with `generator`."""
    _check(num_classes, cl_type, cl_noise)
    y = _check_y(y, num_classes)
    C, dev = num_classes, generator.device
    yg = y.to(dev)  # draw where the generator lives, return where y lives
    if cl_type != "multiple":
        if num_cl != 1:
            raise ValueError(f"num_cl={num_cl} needs cl_type=multiple; {cl_type} draws one label per example")
        if Q.shape != (C, C):
            raise ValueError(f"Q has shape {tuple(Q.shape)}, expected ({C}, {C})")
        # one draw per example from its true class's row; with cl_noise, Q[y, y] > 0 makes some wrong
        cl = torch.multinomial(Q.to(dev, torch.float32)[yg], 1, generator=generator).squeeze(1)  # (N,)
        return F.one_hot(cl, C).float().to(y.device)
    if not 1 <= num_cl <= C - 1:
        raise ValueError(f"num_cl={num_cl} must be in [1, {C - 1}] for {C} classes (the other classes)")
    N = y.shape[0]
    # num_cl distinct classes other than y: sort random keys with the true class's key at +inf
    keys = torch.rand(N, C, generator=generator, device=dev)
    keys.scatter_(1, yg[:, None], float("inf"))
    cls = keys.argsort(dim=1)[:, :num_cl]  # (N, num_cl), a uniform random subset of the others
    # the noisy share has its first (already random) label replaced by the true class
    wrong = torch.rand(N, generator=generator, device=dev) < cl_noise  # (N,) bool
    cls[:, 0] = torch.where(wrong, yg, cls[:, 0])
    targets = torch.zeros(N, C, device=dev).scatter_(1, cls, 1.0 / num_cl)
    return targets.to(y.device)


def imbalance_indices(y: torch.Tensor, num_classes: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted int64 indices of a subset where class c keeps n_max * ratio**(-c/(C-1)) examples."""
    if not ratio >= 1.0:
        raise ValueError(f"imbalance ratio={ratio} must be >= 1")
    y = _check_y(y, num_classes)
    N, C, dev = y.shape[0], num_classes, generator.device
    if ratio == 1.0 or C < 2:
        return torch.arange(N, device=y.device)
    yg = y.to(dev)
    counts = torch.bincount(yg, minlength=C).double()  # (C,)
    share = ratio ** (-torch.arange(C, device=dev, dtype=torch.float64) / (C - 1))  # (C,) from 1 down to 1/ratio
    # n_max: the largest head size every present class can supply at its rank, so the profile is exact
    present = counts > 0
    n_max = torch.floor((counts[present] / share[present]).min())
    keep = torch.minimum(torch.round(n_max * share).clamp_min(1), counts).long()  # (C,)
    # random order within each class: shuffle by random keys, then a stable sort by class
    order = torch.randperm(N, generator=generator, device=dev)
    order = order[torch.sort(yg[order], stable=True).indices]  # grouped by class, random inside
    starts = torch.cumsum(counts.long(), 0) - counts.long()  # (C,) first position of each class
    rank = torch.arange(N, device=dev) - starts[yg[order]]  # position of each example within its class
    chosen = order[rank < keep[yg[order]]]
    return torch.sort(chosen).values.to(y.device)


def ordinary_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C) float32 one-hot rows of the true labels."""
    return F.one_hot(_check_y(y, num_classes), num_classes).float()
