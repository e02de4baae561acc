"""Clustering for Intra-Cluster Mixup: features, k-means in torch, and an on-disk cache.

A search runs many trials on the same (data, features, k, seed): the clustering is computed
once, written atomically under the cache directory keyed by a content hash, and every later
trial (on any node that shares the directory) loads it instead of recomputing.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .config import default_cache_dir
from .encoder import DEFAULT_SETTINGS as ENCODER_SETTINGS
from .encoder import encoder_features

CACHE_VERSION = 1  # bump when features or k-means change what a key maps to


# ----------------------------------------------------------------------------- features
def pca(x: Tensor, dim: int) -> Tensor:
    """Project rows of x (N, D) on their top `dim` principal components (deterministic signs)."""
    x = x - x.mean(0, keepdim=True)
    dim = min(dim, x.shape[1])
    # eigh of the (D, D) covariance: cheap for D <= a few thousand and deterministic, unlike
    # randomized low-rank PCA
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    _, vecs = torch.linalg.eigh(cov.double())
    comps = vecs[:, -dim:].flip(1).to(x.dtype)  # (D, dim), largest variance first
    # fix each component's sign so its largest-magnitude loading is positive
    signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
    return x @ (comps * signs)


def cluster_features(
    x: Tensor,
    kind: str,
    pca_dim: int = 32,
    *,
    data_key: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Tensor:
    """(N, ...) images -> (N, D) L2-normalised features for k-means: raw pixels, PCA or a trained encoder.

    `encoder` trains a small self-supervised CNN on x (see encoder.py); with `data_key` and
    `cache_dir` it is cached under `cache_dir/encoders`, so every k and seed reuses it.
    """
    flat = x.reshape(x.shape[0], -1).float()
    if kind == "raw":
        feats = flat
    elif kind == "pca":
        feats = pca(flat, pca_dim)
    elif kind == "encoder":
        # the encoder trains on x's device: its cache is per device kind too (see cache_key)
        feats = encoder_features(x, None if data_key is None else f"{data_key}|{x.device.type}", cache_dir)
    else:
        raise ValueError(f"unknown cluster_features {kind!r}; valid: raw, pca, encoder")
    return torch.nn.functional.normalize(feats, dim=1)


# ----------------------------------------------------------------------------- k-means
@dataclass
class KMeansResult:
    assign: Tensor  # (N,) int64 cluster of each row
    centers: Tensor  # (k, D)
    inertia: float  # sum of squared distances to the assigned centre
    iterations: int


def _sq_dists(x: Tensor, c: Tensor, x_sq: Tensor) -> Tensor:
    """(N, k) squared Euclidean distances via ||x||^2 - 2 x.c + ||c||^2 (one matmul)."""
    return (x_sq[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0)


def kmeans(
    x: Tensor, k: int, generator: torch.Generator, max_iter: int = 100, tol: float = 1e-4
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding, on x's device; deterministic for a generator."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of examples ({n})")
    x = x.float()
    x_sq = (x * x).sum(1)
    # greedy k-means++ (as scikit-learn): draw 2 + log(k) candidates with probability
    # proportional to D(x)^2 and keep the one that lowers the potential most
    n_local = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centers = x[first]
    d2 = _sq_dists(x, centers, x_sq).squeeze(1)  # (N,) distance to the nearest centre so far
    for _ in range(1, k):
        total = d2.sum()
        probs = d2 / total if total > 0 else torch.full_like(d2, 1.0 / n)
        cand = torch.multinomial(probs, n_local, replacement=True, generator=generator)  # (L,)
        cand_d2 = torch.minimum(d2[None, :], _sq_dists(x[cand], x, x_sq[cand]))  # (L, N)
        best = cand_d2.sum(1).argmin()
        centers = torch.cat([centers, x[cand[best]][None]])
        d2 = cand_d2[best]

    prev = float("inf")
    it = 0
    for it in range(1, max_iter + 1):
        d = _sq_dists(x, centers, x_sq)  # (N, k)
        dist, assign = d.min(1)
        inertia = float(dist.sum())  # one sync per iteration, needed for the stopping test
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        empty = counts == 0
        centers = sums / counts.clamp_min(1)[:, None]
        if empty.any():
            # re-seed empty clusters at the points farthest from their centres
            far = dist.topk(int(empty.sum())).indices
            centers[empty] = x[far]
        if not empty.any() and prev < float("inf") and prev - inertia <= tol * prev:
            break
        prev = inertia
    d = _sq_dists(x, centers, x_sq)
    dist, assign = d.min(1)
    return KMeansResult(assign=assign, centers=centers, inertia=float(dist.sum()), iterations=it)


# ----------------------------------------------------------------------------- cache
@dataclass
class Clustering:
    assign: Tensor  # (N,) int64, on the requested device
    inertia: float
    cache_hit: bool
    seconds: float  # time spent producing it (load or compute)
    path: Path


def cache_key(data_key: str, features: str, pca_dim: int, k: int, seed: int, device: str = "cpu") -> str:
    """The cache file's name. `device` is the kind of device that computes the clustering
    (cpu | cuda): k-means seeding draws from a device generator and reductions differ, so a
    clustering computed on a GPU node is not the one the CPU computes, and CPU runs must not
    depend on which node wrote the cache first."""
    text = f"v{CACHE_VERSION}|{data_key}|{features}|{pca_dim if features == 'pca' else 0}|{k}|{seed}|{device}"
    if features == "encoder":  # a change of encoder settings must not reuse old clusterings
        text += f"|{ENCODER_SETTINGS.tag()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_clusters(
    x: Tensor,
    data_key: str,
    features: str,
    k: int,
    seed: int,
    pca_dim: int = 32,
    cache_dir: str | os.PathLike | None = None,
) -> Clustering:
    """k-means assignments of the rows of x, loaded from the cache or computed and stored.

    `data_key` must identify x exactly (dataset fingerprint + which training rows): it is the
    only thing the cache looks at besides the clustering settings.
    """
    start = time.perf_counter()
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    path = root / "clusters" / f"{cache_key(data_key, features, pca_dim, k, seed, x.device.type)}.pt"
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            assign = blob["assign"]
            if assign.shape == (x.shape[0],):
                return Clustering(
                    assign.to(x.device), float(blob["inertia"]), True, time.perf_counter() - start, path
                )
        except Exception:  # a corrupt or foreign file: recompute and overwrite it
            pass
    gen = torch.Generator(device=x.device).manual_seed(seed)
    res = kmeans(cluster_features(x, features, pca_dim, data_key=data_key, cache_dir=root), k, gen)
    path.parent.mkdir(parents=True, exist_ok=True)
    # write to a unique temp name, then rename: concurrent trials never read half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    torch.save({"assign": res.assign.cpu(), "inertia": res.inertia, "k": k, "features": features}, tmp)
    os.replace(tmp, path)
    return Clustering(res.assign, res.inertia, False, time.perf_counter() - start, path)
