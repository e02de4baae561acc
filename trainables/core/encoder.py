"""A small self-supervised image encoder for ICM's clustering features (`cluster_features: encoder`).

Intra-Cluster Mixup (Mai & Lin, TMLR 2025, arXiv:2509.17971) clusters *learned* embeddings
(SimSiam in the paper), not pixels: two images of one digit drawn in different places or
thicknesses are far apart in pixel space but close in a representation trained to ignore
such changes. This module trains such a representation on the training images only (no
labels, so the complementary-label setting is respected) and caches it on disk, keyed like
the clusterings, so a search trains it once per training set.

The objective is SimCLR's NT-Xent (Chen et al., 2020, "A Simple Framework for Contrastive
Learning of Visual Representations"): two random augmentations of each image must pick each
other out among the 2B views of a batch. It is chosen over SimSiam because with small
batches and few epochs it does not need SimSiam's stop-gradient / predictor balance to
avoid collapse. The backbone is a 3-layer strided CNN (a few hundred thousand
multiply-adds per 28x28 image), so training takes seconds to a minute on a CPU.

Every random draw uses an explicit torch.Generator seeded from the settings: the same
images and settings give the same encoder on the same device and thread count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODER_VERSION = 1  # bump when the architecture, augmentations or loss change what a key maps to


@dataclass(frozen=True)
class EncoderSettings:
    """Everything that decides which encoder (and so which features) a training set gets."""

    width: int = 16
    """Channels of the first conv layer (doubled, then quadrupled, in the next two)."""
    dim: int = 64
    """Size of the representation k-means clusters (the backbone's output)."""
    proj_dim: int = 64
    """Output of the projection head the contrastive loss sees (discarded afterwards)."""
    epochs: int = 6
    """Passes over the training images."""
    batch_size: int = 256
    """Images per step; the loss contrasts 2 * batch_size views."""
    lr: float = 2e-3
    """Adam learning rate, cosine-annealed to 0 over all steps."""
    temperature: float = 0.2
    """NT-Xent softmax temperature."""
    seed: int = 0
    """Seeds initialisation, batch order and augmentations (independent of a run's seed)."""

    def tag(self) -> str:
        """A string naming these settings, for cache keys."""
        values = ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"encoder-v{ENCODER_VERSION}({values})"


DEFAULT_SETTINGS = EncoderSettings()


# ----------------------------------------------------------------------------- augmentations
def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random affine warp (rotation, scale, shift) + light pixel noise, batched: (B, C, H, W) -> same.

    Digit-appropriate views: no flips (a mirrored 2 is not a 2) and no colour jitter (one
    channel). Border padding keeps the background value of normalised images, which zero
    padding (the mean pixel) would not.
    """
    B, dev = x.shape[0], x.device

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(B, generator=generator, device=dev)

    angle = uniform(-math.pi / 12, math.pi / 12)  # +-15 degrees
    scale = uniform(0.85, 1.2)  # of the sampling grid: > 1 shrinks the digit
    tx, ty = uniform(-0.2, 0.2), uniform(-0.2, 0.2)  # in units of half the image side
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out + 0.1 * torch.randn(out.shape, generator=generator, device=dev)


# ----------------------------------------------------------------------------- model
def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Encoder(nn.Module):
    """(B, C, H, W) -> (B, dim): three 3x3 conv stages (strides 2, 2, 1), global average pool, linear."""

    def __init__(self, channels: int, width: int = 16, dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv(channels, width, 2),  # 28x28 -> 14x14 (8x8 -> 4x4)
            *_conv(width, 2 * width, 2),  # -> 7x7 (-> 2x2)
            *_conv(2 * width, 4 * width, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def projection_head(dim: int, proj_dim: int) -> nn.Module:
    """SimCLR's MLP head; the loss is taken on its output, the features before it."""
    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim))


def nt_xent(z: Tensor, temperature: float) -> Tensor:
    """NT-Xent over 2B projections, rows [view-1 of images 0..B-1, view-2 of the same]: each row's positive is its twin."""
    n = z.shape[0]
    B = n // 2
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.T / temperature  # (2B, 2B) cosine similarities / T
    sim.fill_diagonal_(float("-inf"))  # a view is not its own candidate
    twin = torch.cat([torch.arange(B, n), torch.arange(0, B)]).to(z.device)  # (2B,)
    return F.cross_entropy(sim, twin)


# ----------------------------------------------------------------------------- training
def train_encoder(x: Tensor, settings: EncoderSettings = DEFAULT_SETTINGS) -> Encoder:
    """Train an Encoder on images x (N, C, H, W) with NT-Xent; returns it in eval mode, on x's device."""
    if x.dim() != 4:
        raise ValueError(f"encoder features need images (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"encoder features need at least 2 training images, got {x.shape[0]}")
    dev = x.device
    x = x.float()
    torch.manual_seed(settings.seed)  # module initialisation has no generator argument
    model = Encoder(x.shape[1], settings.width, settings.dim).to(dev)
    head = projection_head(settings.dim, settings.proj_dim).to(dev)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=settings.lr, weight_decay=1e-5)
    N = x.shape[0]
    bs = max(2, min(settings.batch_size, N))
    steps_per_epoch = max(1, N // bs)  # drop the ragged last batch: few negatives, noisy BatchNorm
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs * steps_per_epoch)
    gen = torch.Generator(device=dev).manual_seed(settings.seed)
    model.train()
    head.train()
    for _ in range(settings.epochs):
        order = torch.randperm(N, generator=gen, device=dev)
        for s in range(steps_per_epoch):
            xb = x[order[s * bs : (s + 1) * bs]]  # (B, C, H, W)
            views = torch.cat([augment(xb, gen), augment(xb, gen)])  # (2B, C, H, W)
            loss = nt_xent(head(model(views)), settings.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def embed(model: Encoder, x: Tensor, batch_size: int = 2048) -> Tensor:
    """(N, C, H, W) -> (N, dim) representations, in eval mode (BatchNorm running statistics)."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size].float()) for i in range(0, x.shape[0], batch_size)])


def cache_key(data_key: str, settings: EncoderSettings) -> str:
    return hashlib.sha256(f"{data_key}|{settings.tag()}".encode()).hexdigest()[:32]


def encoder_features(
    x: Tensor,
    data_key: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    settings: EncoderSettings = DEFAULT_SETTINGS,
) -> Tensor:
    """(N, dim) encoder representations of x, trained on x itself; cached when data_key and cache_dir are given.

    `data_key` must identify x exactly (as for the clustering cache). The cache holds the
    encoder's weights and the features; a corrupt or mismatched file is retrained and
    overwritten. Writes are atomic (temp file + rename), so concurrent trials are safe.
    """
    path = None
    if data_key is not None and cache_dir is not None:
        path = Path(cache_dir) / "encoders" / f"{cache_key(data_key, settings)}.pt"
        if path.exists():
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                feats = blob["features"]
                if feats.shape == (x.shape[0], settings.dim):
                    return feats.to(x.device)
            except Exception:  # a corrupt or foreign file: retrain and overwrite it
                pass
    start = time.perf_counter()
    model = train_encoder(x, settings)
    feats = embed(model, x)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        torch.save(
            {"features": feats.cpu(), "state_dict": state, "settings": settings.tag(), "seconds": time.perf_counter() - start},
            tmp,
        )
        os.replace(tmp, path)
    return feats
