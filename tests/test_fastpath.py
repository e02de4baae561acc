"""Speed must not change results: `fit`'s per-epoch train_loss equals a plain reimplementation.

The reference below does the same epoch the slow, obvious way: the same model initialisation
and optimiser, the same batches (the same generator draws in the same order), mixing written
as a per-example Python loop with the same lambdas, the loss written out by hand, and the
running loss summed on the host with `.item()` every step. On the CPU in fp32 the two must
agree to float tolerance, epoch by epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.core.config import TrainConfig
from trainables.core.data import Dataset
from trainables.core.fit import _build_schedule, fit, prepare
from trainables.core.losses import get_loss
from trainables.core.models import build_model


def tiny_dataset(n: int = 128, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n + 64,), generator=g)
    x = torch.randn(n + 64, 1, 6, 6, generator=g) + y.float().view(-1, 1, 1, 1)  # learnable
    return Dataset("tiny", x[:n], y[:n], x[n:], y[n:], 4, f"tiny-fastpath-{seed}")


def reference_losses(cfg: TrainConfig, dataset: Dataset) -> list[float]:
    """The plain path: same draws as `fit`, everything else done one obvious step at a time."""
    data = prepare(cfg, dataset, torch.device("cpu"))  # same labels/targets as fit uses
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, tuple(data.x.shape[1:]), data.num_classes, cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _build_schedule(cfg, opt)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rng = np.random.Generator(np.random.PCG64(cfg.seed + 2))
    mixing = cfg.method_spec.pairing == "random"
    K = cfg.K
    cll = get_loss(cfg.resolved_loss)
    out = []
    N = len(data.x)
    for _ in range(cfg.epochs):
        order = torch.randperm(N, generator=gen)
        total, seen = 0.0, 0
        for i in range(0, N, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if len(idx) < max(2, min(cfg.batch_size, N) // 2):  # fit skips a short last slice
                continue
            x, t = data.x[idx], data.targets[idx]
            B = len(idx)
            if mixing:
                perm = torch.randperm(B, generator=gen)
                lam = np.sort(rng.beta(cfg.alpha, cfg.alpha, size=(B, K)).astype(np.float32), axis=1)
                xs, ts = [], []
                for b in range(B):  # anchor-major, K mixes per anchor
                    for k in range(K):
                        w = torch.tensor(lam[b, k])
                        xs.append(w * x[b] + (1 - w) * x[perm[b]])
                        ts.append(w * t[b] + (1 - w) * t[perm[b]])
                x, t = torch.stack(xs), torch.stack(ts)
            logits = model(x)
            if cfg.labels == "ordinary":
                loss = -(t * F.log_softmax(logits, dim=1)).sum(1).mean()  # soft-target cross-entropy
            else:
                loss = cll(logits, t, data.Q)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * B
            seen += B
        sched.step()
        out.append(total / seen)
    return out


@pytest.mark.parametrize(
    "method,labels,K",
    [("none", "ordinary", 1), ("mixup", "ordinary", 1), ("multimix", "ordinary", 3), ("mixup", "complementary", 1)],
)
def test_fit_loss_matches_plain_path(method, labels, K):
    cfg = TrainConfig(
        method=method, labels=labels, K=K, model="mlp", hidden=16, epochs=2, batch_size=32, lr=3e-3,
        device="cpu", num_threads=1, precision="fp32",
    )
    ds = tiny_dataset()
    fast = [h["train_loss"] for h in fit(cfg, ds).history]
    plain = reference_losses(cfg, ds)
    assert len(fast) == len(plain) == cfg.epochs
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-6)
    assert fast[-1] < fast[0] or method != "none"  # it really trained
