"""Mixing: draw (partners, lambdas), then apply them to inputs and to dense (B, C) targets.

Drawing and applying are separate (as in timm's mixup): a pairing returns partner indices,
`draw_lambdas` returns K sorted weights per pair, and the `mix_*` functions build the mixed
batch from them. Targets are always dense soft vectors, so every loss takes the mixed
targets unchanged:

- mixup (Zhang et al., 2018): a random partner from the batch, one lambda ~ Beta(alpha, alpha).
- Intra-Cluster Mixup (ICM; Mai & Lin, "Intra-Cluster Mixup: An Effective Data Augmentation
  Technique for Complementary-Label Learning", TMLR 2025, arXiv:2509.17971): the partner is
  drawn from the anchor's own k-means cluster over the whole training set, so the partner's
  complementary labels rarely include the anchor's true class (less complementary-label noise).
- ICM variants (the authors' code): the partner from the anchor's cluster among the batch's
  rows (`batch_cluster_pairing`), the anchor itself allowed (`self_pairs`); label sharing
  (fit: the anchor's input unchanged, only the targets mix) is a MethodSpec flag.
- Multi-Mix (K interpolations per pair): K sorted lambdas per pair; the batch grows to B*K,
  ordered anchor-major, and the loss is the mean over all B*K mixed examples.

Every random draw takes an explicit generator: a torch.Generator on the data's device for
indices and boxes, a numpy Generator for the Beta draws (torch's Beta sampler has no
generator argument); lambdas are drawn on the host and copied to the device without a sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError


# ----------------------------------------------------------------------------- pairing
@dataclass(frozen=True)
class Pairs:
    partner: Tensor  # (B,) dataset indices of each anchor's partner
    perm: Tensor | None  # (B,) partner positions inside the batch, when pairing is in-batch


def random_pairing(batch_idx: Tensor, generator: torch.Generator) -> Pairs:
    """Plain mixup pairing: a random permutation of the batch."""
    perm = torch.randperm(batch_idx.numel(), generator=generator, device=batch_idx.device)
    return Pairs(partner=batch_idx[perm], perm=perm)


class ClusterIndex:
    """Members of each cluster laid out contiguously, for O(1) same-cluster partner draws."""

    def __init__(self, assign: Tensor):
        assign = assign.long()
        k = int(assign.max().item()) + 1 if assign.numel() else 0
        self.assign = assign  # (N,) cluster of each training example
        self.order = torch.argsort(assign, stable=True)  # (N,) example indices grouped by cluster
        self.size = torch.bincount(assign, minlength=k)  # (k,)
        self.start = torch.cumsum(self.size, 0) - self.size  # (k,) offset of each cluster in `order`
        self.position = torch.empty_like(self.order)  # (N,) where each example sits in `order`
        self.position[self.order] = torch.arange(assign.numel(), device=assign.device)

    def partners(self, idx: Tensor, generator: torch.Generator, self_pairs: bool = False) -> Tensor:
        """A uniformly random other member of each example's cluster (itself if alone).

        self_pairs: draw among all members, the anchor included (the authors' in-batch code).
        """
        c = self.assign[idx]
        size, start = self.size[c], self.start[c]
        u = torch.rand(idx.shape, generator=generator, device=idx.device)
        if self_pairs:
            r = (u * size).long().clamp(max=size - 1)  # (B,) any slot of the cluster
            return self.order[start + r]
        own = self.position[idx] - start  # (B,) the anchor's slot inside its cluster
        # draw among the size-1 other slots, then skip over the anchor's own slot
        r = (u * (size - 1).clamp(min=1)).long().clamp(max=(size - 2).clamp(min=0))
        r = torch.where(size > 1, r + (r >= own).long(), own)
        return self.order[start + r]


def cluster_pairing(
    batch_idx: Tensor, clusters: ClusterIndex, generator: torch.Generator, self_pairs: bool = False
) -> Pairs:
    """ICM pairing: each anchor's partner comes from its own cluster (whole training set)."""
    return Pairs(partner=clusters.partners(batch_idx, generator, self_pairs), perm=None)


def batch_cluster_pairing(
    batch_idx: Tensor, clusters: ClusterIndex, generator: torch.Generator, self_pairs: bool = True
) -> Pairs:
    """ICM pairing inside the batch (the authors' code): a partner from the anchor's cluster among the batch's rows.

    An anchor with no other member of its cluster in the batch pairs with itself (its
    target unchanged; the authors' code gives it a zero target, i.e. drops it from the loss).
    """
    local = ClusterIndex(clusters.assign[batch_idx])  # the batch's rows grouped by cluster
    perm = local.partners(torch.arange(batch_idx.numel(), device=batch_idx.device), generator, self_pairs)
    return Pairs(partner=batch_idx[perm], perm=perm)


def draw_pairs(
    pairing: str, scope: str, batch_idx: Tensor, clusters: ClusterIndex | None, generator: torch.Generator,
    self_pairs: bool = False,
) -> Pairs:
    """The partners of a batch for a method's pairing ("random" | "cluster") and scope ("set" | "batch")."""
    if pairing == "random":
        return random_pairing(batch_idx, generator)
    if scope == "batch":
        return batch_cluster_pairing(batch_idx, clusters, generator, self_pairs)
    return cluster_pairing(batch_idx, clusters, generator, self_pairs)


# ----------------------------------------------------------------------------- lambdas
def draw_lambdas(n: int, K: int, alpha: float, rng: np.random.Generator, device: torch.device) -> Tensor:
    """(n, K) anchor weights ~ Beta(alpha, alpha), sorted ascending along K (Multi-Mix's ordering)."""
    lam = np.sort(rng.beta(alpha, alpha, size=(n, K)).astype(np.float32), axis=1)
    return torch.from_numpy(lam).to(device, non_blocking=True)


# ----------------------------------------------------------------------------- applying
def _expand(a: Tensor, b: Tensor, lam: Tensor) -> Tensor:
    """lam*a + (1-lam)*b for K lambdas per row: (B, ...) x2, (B, K) -> (B*K, ...), anchor-major."""
    B, K = lam.shape
    w = lam.to(a.dtype).view(B, K, *([1] * (a.dim() - 1)))
    return (w * a.unsqueeze(1) + (1 - w) * b.unsqueeze(1)).reshape(B * K, *a.shape[1:])


def mix_inputs(x: Tensor, xp: Tensor, lam: Tensor) -> Tensor:
    """Input (or hidden-state) mixup: (B, ...) anchors and partners -> (B*K, ...)."""
    return _expand(x, xp, lam)


def mix_targets(t: Tensor, tp: Tensor, lam: Tensor) -> Tensor:
    """Dense targets mixed with the same weights: (B, C) x2 -> (B*K, C); rows keep their sums."""
    return _expand(t, tp, lam)


def repeat_anchor(y: Tensor, K: int) -> Tensor:
    """Per-anchor values aligned with a (B*K) mixed batch."""
    return y.repeat_interleave(K, dim=0)


CUTMIX_MIN_SIDE = 16
"""Smallest image side CutMix is offered for: boxes are whole pixels, so on an H x W image the
pasted area moves in steps of about 1/H; at 16 x 16 the effective weight is within ~0.03 of
the drawn one on average, at 8 x 8 (digits) whole ranges of lambda collapse onto a few
values, and a (1, 1, D) tabular row has no box to paste at all (lambda stays 1)."""


def check_cutmix_shape(in_shape: tuple[int, ...]) -> None:
    """Refuse CutMix (ConfigError, one line) on inputs whose sides are below CUTMIX_MIN_SIDE."""
    h, w = in_shape[-2:]
    if min(h, w) < CUTMIX_MIN_SIDE:
        raise ConfigError(
            f"mix_level=cutmix needs images of at least {CUTMIX_MIN_SIDE}x{CUTMIX_MIN_SIDE} pixels, these are {h}x{w}"
            " (boxes of whole pixels cannot carry the drawn weight); use mix_level=input or manifold"
        )


def cutmix(x: Tensor, xp: Tensor, lam: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """CutMix (Yun et al., 2019): paste a partner box of area ~(1-lam) into each anchor.

    Returns the (B*K, C, H, W) mixed images and the (B, K) weights corrected to the exact
    pasted area, which the targets must then use. The box sides are rounded to whole pixels
    and the box is placed entirely inside the image (Yun et al. draw the centre anywhere and
    clip the box at the border, which shrinks it: the effective weight then sits well above
    the drawn one), so the effective weight differs from the drawn one by rounding only.
    """
    B, K = lam.shape
    H, W = x.shape[-2:]
    dev = x.device
    cut = torch.sqrt(1.0 - lam)  # (B, K) side ratio of the box
    h, w = (cut * H).round(), (cut * W).round()
    y0 = (torch.rand((B, K), generator=generator, device=dev) * (H - h + 1)).floor().clamp(max=H - h)
    x0 = (torch.rand((B, K), generator=generator, device=dev) * (W - w + 1)).floor().clamp(max=W - w)
    y1, x1 = y0 + h, x0 + w
    rows = torch.arange(H, device=dev).view(1, 1, H, 1)
    cols = torch.arange(W, device=dev).view(1, 1, 1, W)
    inside = (
        (rows >= y0[..., None, None]) & (rows < y1[..., None, None]) & (cols >= x0[..., None, None]) & (cols < x1[..., None, None])
    )  # (B, K, H, W)
    lam_exact = 1.0 - ((y1 - y0) * (x1 - x0)) / float(H * W)
    mask = inside.unsqueeze(2).to(x.dtype)  # (B, K, 1, H, W)
    mixed = x.unsqueeze(1) * (1 - mask) + xp.unsqueeze(1) * mask
    return mixed.reshape(B * K, *x.shape[1:]), lam_exact


def hidden_mixer(lam: Tensor, perm: Tensor | None):
    """A callable for manifold mixup: mixes a hidden batch inside the model.

    With in-batch pairing the model runs on the B anchors and partners are `h[perm]`;
    otherwise the model runs on cat(anchors, partners) (2B) and the halves are mixed.
    """
    B = lam.shape[0]

    def mix(h: Tensor) -> Tensor:
        if perm is not None:
            return _expand(h, h[perm], lam)
        return _expand(h[:B], h[B:], lam)

    return mix
