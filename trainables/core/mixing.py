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

    def partners(self, idx: Tensor, generator: torch.Generator) -> Tensor:
        """A uniformly random other member of each example's cluster (itself if alone)."""
        c = self.assign[idx]
        size, start = self.size[c], self.start[c]
        own = self.position[idx] - start  # (B,) the anchor's slot inside its cluster
        u = torch.rand(idx.shape, generator=generator, device=idx.device)
        # draw among the size-1 other slots, then skip over the anchor's own slot
        r = (u * (size - 1).clamp(min=1)).long().clamp(max=(size - 2).clamp(min=0))
        r = torch.where(size > 1, r + (r >= own).long(), own)
        return self.order[start + r]


def cluster_pairing(batch_idx: Tensor, clusters: ClusterIndex, generator: torch.Generator) -> Pairs:
    """ICM pairing: each anchor's partner comes from its own cluster (whole training set)."""
    return Pairs(partner=clusters.partners(batch_idx, generator), perm=None)


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


def cutmix(x: Tensor, xp: Tensor, lam: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """CutMix (Yun et al., 2019): paste a partner box of area ~(1-lam) into each anchor.

    Returns the (B*K, C, H, W) mixed images and the (B, K) weights corrected to the exact
    pasted area (the box is clipped at the border), which the targets must then use.
    """
    B, K = lam.shape
    H, W = x.shape[-2:]
    dev = x.device
    cut = torch.sqrt(1.0 - lam)  # (B, K) side ratio of the box
    h, w = (cut * H).floor(), (cut * W).floor()
    cy = (torch.rand((B, K), generator=generator, device=dev) * H).floor()
    cx = (torch.rand((B, K), generator=generator, device=dev) * W).floor()
    y0, y1 = (cy - h // 2).clamp(0, H), (cy + h // 2).clamp(0, H)
    x0, x1 = (cx - w // 2).clamp(0, W), (cx + w // 2).clamp(0, W)
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
