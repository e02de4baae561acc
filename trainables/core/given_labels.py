"""Complementary labels that come with the data (annotators gave them), not drawn by mixtune.

A user of complementary-label learning has images and, for each, one or more classes it does
NOT belong to, and no true training labels at all (the field's real benchmarks, CLCIFAR10/20,
carry three human-given complementary labels per image). This module turns what such a file
holds into the dense targets every loss takes, and supplies the transition matrix Q that
FWD, URE and the validation estimates need:

* `cl_targets`: an (N,) integer array (one CL each), an (N, m) integer array padded with -1
  (up to m CLs each), or an (N, C) 0/1 mask, into (N, C) float32 rows summing to 1. Index
  arrays count repeats (two annotators naming the same class weigh it twice), so a row is the
  empirical distribution of its draws and E[row | y] = Q[y] when annotators draw from Q; a
  mask row spreads its weight evenly over the marked classes.
* `check_transition`: a given Q (`cl_transition` in the file), checked.
* `estimate_transition`: Q from the given labels' marginals when the file gives none.

Every problem is a `DataError` naming the file, the array and the first offending row.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import DataError


def is_mask(cl: np.ndarray, num_classes: int | None) -> bool:
    """A 2-D cl_train is a mask when it is boolean, or 0/1 integers exactly num_classes wide.

    Index arrays (N, m) can also hold only 0s and 1s; saving a mask as bool removes the doubt.
    """
    if cl.ndim != 2:
        return False
    if cl.dtype == np.bool_:
        return True
    return num_classes is not None and cl.shape[1] == num_classes and bool(np.isin(cl, (0, 1)).all())


def cl_num_classes(cl: np.ndarray, num_classes: int | None) -> int:
    """The smallest class count cl_train is consistent with (its width for a mask, max index + 1 otherwise)."""
    if is_mask(cl, num_classes):
        return int(cl.shape[1])
    valid = cl[cl >= 0] if cl.size else cl
    return int(valid.max()) + 1 if valid.size else 0


def cl_targets(cl: np.ndarray, num_classes: int, where: str, name: str = "cl_train") -> np.ndarray:
    """(N,) | (N, m) padded with -1 | (N, C) 0/1 mask -> (N, C) float32 rows summing to 1."""
    C = num_classes
    if cl.ndim not in (1, 2) or len(cl) == 0:
        raise DataError(f"{where}: {name} has shape {cl.shape}; expected (N,), (N, m) padded with -1, or an (N, {C}) mask")
    if not (np.issubdtype(cl.dtype, np.integer) or cl.dtype == np.bool_):
        raise DataError(f"{where}: {name} has dtype {cl.dtype}; expected integer class indices or a bool/0-1 mask")
    if is_mask(cl, C):
        mask = cl.astype(bool)
        counts = mask.sum(1)
        _first_bad(counts == 0, where, name, "has no complementary label (an all-zero mask row)")
        _first_bad(counts == C, where, name, f"marks all {C} classes as complementary (an all-ones mask row)")
        return (mask / counts[:, None]).astype(np.float32)
    idx = cl.astype(np.int64).reshape(len(cl), -1)  # (N, m)
    if (idx < -1).any() or (cl.ndim == 1 and (idx < 0).any()):
        r, c = np.argwhere(idx < (0 if cl.ndim == 1 else -1))[0]
        raise DataError(f"{where}: {name} row {r} has complementary label {idx[r, c]}; classes are 0..{C - 1}"
                        + ("" if cl.ndim == 1 else " (-1 pads rows with fewer labels)"))
    if (idx >= C).any():
        r, c = np.argwhere(idx >= C)[0]
        raise DataError(f"{where}: {name} row {r} has complementary label {idx[r, c]}, but there are {C} classes"
                        f" (0..{C - 1}); give num_classes in the file if there are more")
    present = idx >= 0
    _first_bad(present.sum(1) == 0, where, name, "has no complementary label (only -1 padding)")
    counts = np.zeros((len(idx), C), dtype=np.float64)
    rows = np.broadcast_to(np.arange(len(idx))[:, None], idx.shape)
    np.add.at(counts, (rows[present], idx[present]), 1.0)  # repeats count: the row is its draws' distribution
    _first_bad((counts > 0).sum(1) == C, where, name, f"names all {C} classes as complementary")
    return (counts / counts.sum(1, keepdims=True)).astype(np.float32)


def _first_bad(bad: np.ndarray, where: str, name: str, what: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        more = int(bad.sum()) - 1
        raise DataError(f"{where}: {name} row {row} {what}" + (f" (and {more} more rows)" if more else ""))


def check_transition(Q: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """A given Q[i, j] = P(complementary label j | true class i): (C, C), finite, >= 0, rows sum to 1, invertible."""
    C = num_classes
    name = "cl_transition"
    if Q.shape != (C, C):
        raise DataError(f"{where}: {name} has shape {Q.shape}, expected ({C}, {C}) for {C} classes")
    if Q.dtype.kind not in "fiu" or Q.dtype == np.bool_:
        raise DataError(f"{where}: {name} has dtype {Q.dtype}, expected floats")
    Q = Q.astype(np.float64)
    if not np.isfinite(Q).all() or (Q < 0).any():
        raise DataError(f"{where}: {name} must hold finite probabilities >= 0")
    sums = Q.sum(1)
    if not np.allclose(sums, 1.0, atol=1e-4):
        row = int(np.flatnonzero(~np.isclose(sums, 1.0, atol=1e-4))[0])
        raise DataError(f"{where}: {name} row {row} sums to {sums[row]:.6g}, not 1 (rows are P(CL | true class))")
    if np.linalg.cond(Q) > 1e8:
        raise DataError(f"{where}: {name} is singular: URE and the validation estimates need its inverse")
    return (Q / sums[:, None]).astype(np.float32)


def estimate_transition(targets: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """Q from the marginals of given complementary labels: Q[i, j] = m_j / (1 - m_i) for j != i, Q[i, i] = 0.

    With no true labels, Q cannot be identified from the data alone. This assumes what the
    field's generated labels assume, that no CL names the true class (zero diagonal), and
    adds one thing the data can show: annotators prefer some "not this" answers over others
    whatever the true class is (a class-independent preference m, estimated as the share of
    each class among the given CLs, with `smoothing` pseudo-counts so that no column is zero
    and Q stays invertible). Uniform marginals give the uniform Q = (J - I) / (C - 1).
    targets (N, C) rows summing to 1 (the given CLs of the training rows). Returns (C, C) float32.
    """
    C = targets.shape[1]
    counts = targets.double().sum(0) + smoothing  # (C,)
    m = counts / counts.sum()
    Q = m[None, :].expand(C, C) / (1.0 - m)[:, None]  # (C, C): row i is m over the classes j != i
    Q = Q * (1.0 - torch.eye(C, dtype=Q.dtype))
    return (Q / Q.sum(1, keepdim=True)).float()
