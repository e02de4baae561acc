"""The one training loop: `fit(cfg, dataset, on_epoch) -> FitResult`.

`mixtune train`, the Ray trainable, the benchmarks and the experiments all call this. It
does, in order: pick the device, hold out the validation split and label both splits
(`split.py`: ordinary one-hot, generated or given complementary labels), cluster the
training rows, move everything to the device once, then per epoch slice batches out of a
device-side permutation, mix, take the loss, step, evaluate on the validation split (with
the labels a user has) and the test split, and hand a dict of metrics (and a lazy
checkpoint) to `on_epoch`.

Reproducibility: the data (split, labels) comes from `cfg.data_seed`, every training choice
from generators seeded by `cfg.seed`, so the same config on the CPU gives identical metrics; a run resumed from a checkpoint restores those
generators too and continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .clustering import Clustering, cached_clusters
from .config import ConfigError, TrainConfig
from .errors import DivergedError
from .data import Dataset
from .losses import candidate_targets, get_loss, infinite_class_loss
from .metrics import (accuracy_t, complementary_validation, expected_calibration_error_t, impure_pairs, noisy_rows,
                      ordinary_validation)
from .mixing import (
    ClusterIndex,
    check_cutmix_shape,
    cutmix,
    draw_lambdas,
    draw_pairs,
    hidden_mixer,
    mix_inputs,
    mix_targets,
    repeat_anchor,
)
from .models import auto_model_name, build_model
from .split import split_and_label

EpochCallback = Callable[[dict[str, float], Callable[[], dict[str, Any]]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available")
    return dev


# ----------------------------------------------------------------------------- data on device
@dataclass
class TrainData:
    """Everything the loop touches, resident on one device."""

    x: Tensor  # (N, C, H, W) training inputs
    targets: Tensor  # (N, C) dense soft training targets: one-hot or complementary vectors
    y: Tensor | None  # (N,) true training labels: diagnostics only, never used by a loss; None if unknown
    x_val: Tensor  # (V, C, H, W) validation inputs (V = 0 without a validation split)
    val_targets: Tensor  # (V, C) the validation rows' labels, the same kind as `targets`
    y_val: Tensor | None  # (V,) true validation labels: read by ordinary labels' val metrics only
    x_test: Tensor | None
    y_test: Tensor | None  # None: no test metrics
    num_classes: int
    Q: Tensor | None  # (C, C) complementary-label transition matrix (FWD, URE, validation estimates)
    clusters: Clustering | None
    train_index: Tensor  # (N,) rows of the dataset's training split used for training
    labels: str = "complementary"  # cfg.labels: which validation metrics apply
    Q_inv: Tensor | None = None  # (C, C) inverse of Q, computed once
    q_source: str | None = None  # uniform | biased | given | estimated
    ccp: Tensor | None = None  # (C,) complementary-label prior pi Q when the class prior pi is not uniform (URE losses)


def prepare(cfg: TrainConfig, dataset: Dataset, device: torch.device) -> TrainData:
    """Split, labels and clustering for this config; all tensors moved to `device` once."""
    split = split_and_label(cfg, dataset)
    keep = split.train_index
    x = dataset.x_train[keep].to(device, non_blocking=True)
    clusters = None
    if cfg.method_spec.pairing == "cluster":
        if cfg.k > len(keep):
            raise ConfigError(f"k={cfg.k} is larger than the training set ({len(keep)} examples)")
        # the key names exactly the training rows: validation rows never shape a clustering
        rows = hashlib.sha256(keep.numpy().tobytes()).hexdigest()[:16]
        clusters = cached_clusters(
            x, f"{dataset.fingerprint}:{rows}", cfg.cluster_features, cfg.k, cfg.seed, cfg.pca_dim, cfg.cache_dir
        )

    def dev(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(device, non_blocking=True)

    Q = dev(split.Q)
    ccp = None
    if cfg.imbalance_ratio > 1 and Q is not None and split.y_train is not None:
        # the URE losses default to a uniform class prior; a subsampled set has its own
        prior = torch.bincount(split.y_train, minlength=dataset.num_classes).float() / len(split.y_train)
        ccp = prior.to(device) @ Q
    return TrainData(
        x=x,
        targets=dev(split.train_targets),
        y=dev(split.y_train),
        x_val=dataset.x_train[split.val_index].to(device, non_blocking=True),
        val_targets=dev(split.val_targets),
        y_val=dev(split.y_val),
        x_test=dev(dataset.x_test) if dataset.has_test else None,
        y_test=dev(dataset.y_test) if dataset.has_test else None,
        num_classes=dataset.num_classes,
        Q=Q,
        clusters=clusters,
        train_index=keep,
        labels=cfg.labels,
        Q_inv=None if Q is None else torch.linalg.inv(Q.double()).float(),
        q_source=split.q_source,
        ccp=ccp,
    )


# ----------------------------------------------------------------------------- result
@dataclass
class FitResult:
    history: list[dict[str, float]]  # one dict of metrics per epoch
    model: torch.nn.Module
    config: TrainConfig
    info: dict[str, Any] = field(default_factory=dict)  # clustering time, cache hit, device...

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


# ----------------------------------------------------------------------------- the loop
def _build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _build_schedule(cfg: TrainConfig, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    # stepped once per epoch, so a checkpoint at an epoch boundary resumes it exactly
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        miles = sorted({max(1, int(cfg.epochs * 0.5)), max(1, int(cfg.epochs * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=miles, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Batched random horizontal flip + 4-pixel translation (pad-and-crop), on the device."""
    B, _, H, W = x.shape
    flip = torch.rand(B, generator=gen, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    dy = torch.randint(0, 9, (B,), generator=gen, device=x.device)
    dx = torch.randint(0, 9, (B,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device)[None, :])[:, None, :, None]  # (B,1,H,1)
    cols = (dx[:, None] + torch.arange(W, device=x.device)[None, :])[:, None, None, :]  # (B,1,1,W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return pad[b, c, rows, cols]


@torch.no_grad()
def predict(model: torch.nn.Module, x: Tensor, autocast, batch_size: int = 2048) -> Tensor:
    """(N, C) float32 logits of `x` in eval mode, in batches."""
    model.eval()
    logits = []
    for i in range(0, len(x), batch_size):
        with autocast():
            logits.append(model(x[i : i + batch_size]).float())
    model.train()
    return torch.cat(logits) if logits else torch.zeros(0, 0, device=x.device)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: TrainData, autocast) -> dict[str, float]:
    """Validation metrics from the labels a user has, and test metrics where test labels exist.

    Computed on the device; one host sync for all of them. Validation with ordinary labels:
    val_acc, val_loss, val_ece; with complementary labels (generated or given), only their
    CLs and Q: val_scel, val_scel_ts, val_ure, val_acc_est (metrics.py). Test: test_acc, test_ece.
    """
    values: dict[str, Tensor] = {}
    if len(data.x_val):
        z = predict(model, data.x_val, autocast)
        if data.labels == "ordinary":
            values.update(ordinary_validation(z, data.y_val))
        else:
            values.update(complementary_validation(z, data.val_targets, data.Q, data.Q_inv))
    if data.x_test is not None and data.y_test is not None:
        z = predict(model, data.x_test, autocast)
        values["test_acc"] = accuracy_t(z, data.y_test)
        values["test_ece"] = expected_calibration_error_t(z.softmax(1), data.y_test, n_bins=15)
    if not values:
        return {}
    host = torch.stack([v.double() for v in values.values()]).tolist()  # sync point: once per epoch
    return dict(zip(values, host))


def fit(
    cfg: TrainConfig,
    dataset: Dataset | TrainData,
    on_epoch: EpochCallback | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train `cfg` on `dataset`; call `on_epoch(metrics, checkpoint)` after every epoch.

    `checkpoint()` returns a dict (model, optimizer, schedule, generators, epoch, history)
    that `fit(..., resume=that_dict)` continues from. Raises DivergedError on a NaN/inf loss.
    """
    device = resolve_device(cfg.device)
    if cfg.num_threads > 0:  # before prepare: clustering and encoders run on these threads too
        torch.set_num_threads(cfg.num_threads)
    data = dataset if isinstance(dataset, TrainData) else prepare(cfg, dataset, device)
    cuda = device.type == "cuda"
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)

    def autocast():
        if use_bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    torch.manual_seed(cfg.seed)  # model initialisation
    in_shape = tuple(data.x.shape[1:])
    model = build_model(cfg.model, in_shape, data.num_classes, cfg.hidden).to(device)
    conv = (cfg.model if cfg.model != "auto" else auto_model_name(in_shape)) not in ("mlp", "mlp1", "linear")
    if cuda and conv:
        # batch shapes repeat every step: let cuDNN time its algorithms once per shape and keep
        # the fastest (GPU results are not bit-reproducible anyway: bf16, atomic reductions)
        torch.backends.cudnn.benchmark = True
        # channels_last lets cuDNN pick NHWC tensor-core kernels under bf16
        model = model.to(memory_format=torch.channels_last)
        data.x = data.x.contiguous(memory_format=torch.channels_last)
        data.x_val = data.x_val.contiguous(memory_format=torch.channels_last)
        if data.x_test is not None:
            data.x_test = data.x_test.contiguous(memory_format=torch.channels_last)
    opt = _build_optimizer(cfg, model)
    sched = _build_schedule(cfg, opt)
    forward = torch.compile(model) if cfg.compile else model
    loss_fn = get_loss(cfg.resolved_loss, ccp=data.ccp)
    spec = cfg.method_spec
    if cfg.mix_level == "cutmix" and spec.pairing is not None:
        check_cutmix_shape(in_shape)
    K = cfg.K if spec.multi else 1
    clusters = ClusterIndex(data.clusters.assign) if data.clusters is not None else None
    complementary = cfg.complementary
    diagnose = data.y is not None  # true training labels known: noise rate and pair impurity

    # generators: one on the device (batches, partners, boxes, augmentation), one on the
    # host (Beta draws, manifold layer choice)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    rng = np.random.Generator(np.random.PCG64(cfg.seed + 2))
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["schedule"])
        gen.set_state(resume["generator"].to(gen.get_state().device))
        rng.bit_generator.state = resume["rng"]
        history = list(resume["history"])
        start_epoch = int(resume["epoch"])

    N = len(data.x)
    bs = min(cfg.batch_size, N)
    tail_min = max(2, bs // 2)  # the smallest batch worth a step (see the loop)
    info = {
        "device": str(device),
        "train_size": N,
        "val_size": len(data.x_val),
        "transition_matrix": data.q_source,
        "cluster_cache_hit": None if data.clusters is None else data.clusters.cache_hit,
        "cluster_seconds": 0.0 if data.clusters is None else data.clusters.seconds,
    }

    def checkpoint(epoch: int) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            return {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(),
                "generator": gen.get_state(),
                "rng": rng.bit_generator.state,
                "epoch": epoch,
                "history": list(history),
                "config": cfg.to_dict(),
                "in_shape": list(data.x.shape[1:]),
                "num_classes": data.num_classes,
            }

        return make

    model.train()
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(N, generator=gen, device=device)
        # accumulate on the device; one host sync at the end of the epoch
        loss_sum = torch.zeros((), device=device)
        noisy = torch.zeros((), device=device)
        impure = torch.zeros((), device=device)
        seen = 0
        mixed_seen = 0
        for i in range(0, N, bs):
            idx = order[i : i + bs]
            if idx.numel() < tail_min:
                # a short last slice (N % bs rows) is a noisy step: under BatchNorm it cost the
                # URE losses ~40 points on digits (1294 rows, batch 256: a 14-row step). The
                # permutation is redrawn each epoch, so its rows are trained on in later epochs.
                continue
            x, t = data.x[idx], data.targets[idx]  # (B, C, H, W), (B, C)
            if cfg.augment:
                x = _augment(x, gen)
            B = idx.numel()
            if spec.pairing is None:
                with autocast():
                    logits = forward(x)
                target = t
            else:
                pairs = draw_pairs(spec.pairing, spec.scope, idx, clusters, gen, cfg.self_pairing)
                lam = draw_lambdas(B, K, cfg.alpha, rng, device)  # (B, K)
                if pairs.perm is not None:
                    xp = x[pairs.perm]
                else:
                    xp = data.x[pairs.partner]
                    if cfg.augment:
                        xp = _augment(xp, gen)
                with autocast():
                    if not spec.mix_inputs:  # label sharing: the anchor's own input
                        logits = forward(x)
                    elif cfg.mix_level == "cutmix":
                        xm, lam = cutmix(x, xp, lam, gen)
                        logits = forward(xm)
                    elif cfg.mix_level == "manifold":
                        layer = int(rng.integers(model.num_mix_layers))
                        inp = x if pairs.perm is not None else torch.cat([x, xp])
                        logits = forward(inp, mix=hidden_mixer(lam, pairs.perm), layer=layer)
                    else:
                        logits = forward(mix_inputs(x, xp, lam))
                target = mix_targets(t, data.targets[pairs.partner], lam)  # (B*K, C)
                if diagnose:
                    impure += impure_pairs(repeat_anchor(data.y[idx], K), repeat_anchor(data.y[pairs.partner], K))
                mixed_seen += B * K
            if spec.contrastive:
                contrast = candidate_targets(target) if complementary else target
                loss = infinite_class_loss(
                    logits, target, loss_fn, data.Q, cfg.contrastive_weight, cfg.contrastive_balance, contrast
                )
            else:
                loss = loss_fn(logits.float(), target, data.Q)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * B
            if complementary and diagnose:
                # ICM's noise: the (mixed) complementary vector puts weight on the true class
                anchor_y = data.y[idx] if spec.pairing is None else repeat_anchor(data.y[idx], K)
                noisy += noisy_rows(target, anchor_y)
            seen += B
        sched.step()
        train_loss = float(loss_sum) / max(seen, 1)  # sync point: the epoch's only one in training
        train_time = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise DivergedError(f"training loss became {train_loss} at epoch {epoch}")
        metrics: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
        metrics.update(evaluate(model, data, autocast))
        if complementary and diagnose:
            metrics["noise_rate"] = float(noisy) / max(mixed_seen if spec.pairing else seen, 1)
        if spec.pairing is not None and diagnose:
            metrics["pair_impurity"] = float(impure) / max(mixed_seen, 1)
        metrics["epoch_time"] = time.perf_counter() - t0  # training + evaluation
        metrics["samples_per_s"] = seen / train_time  # training throughput only
        metrics["lr"] = opt.param_groups[0]["lr"]
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, checkpoint(epoch))
    return FitResult(history=history, model=model, config=cfg, info=info)
