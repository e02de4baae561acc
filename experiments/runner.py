"""Settings profiles, an in-process runner around `fit`, and mean ± std helpers.

Experiments call `fit` directly (no Ray, no MLflow): on a 2-core machine the search
machinery would cost more than the small MLPs it trains. Each distinct config is trained
once (`Runner.run` memoises), so configs shared between tables — ICM at the default k
appears in the main table, the k sweep and the feature comparison — cost once. Final
metrics are also stored under `<cache>/runs/` keyed by the config, so an interrupted
reproduction resumes where it stopped and suites may run as parallel processes
(`--only`) before one last invocation assembles the report from the stored runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainables.core.clustering import default_cache_dir
from trainables.core.config import TrainConfig
from trainables.core.files import write_text_atomic
from trainables.core.data import Dataset, load_dataset
from trainables.core.fit import fit


RUNS_VERSION = 1  # bump when fit changes what a config's final metrics are


@dataclass(frozen=True)
class Profile:
    """Everything that sets the size of a reproduction run; printed into the report."""

    name: str
    datasets: tuple[str, ...]
    """digits (embedded) and/or mnist (the 10k MNIST test set, split 80/20 by train_fraction)."""
    seeds: tuple[int, ...]
    cll_epochs: dict[str, int]
    """Epochs of complementary-label runs, per dataset."""
    ord_epochs: dict[str, int]
    """Epochs of ordinary-label runs (Multi-Mix, Infinite Class Mixup), per dataset."""
    hidden: int
    """MLP width (two hidden layers)."""
    noise_k: tuple[int, ...]
    """k values of the training-free noise-rate / purity sweep."""
    train_k: tuple[int, ...]
    """k values ICM is trained with for accuracy vs k."""
    num_cls: tuple[int, ...]
    """Complementary labels per example for the open question (cl_type=multiple)."""
    Ks: tuple[int, ...]
    """Multi-Mix interpolations per pair."""
    weights: tuple[float, ...]
    """Infinite Class Mixup contrastive_weight values."""
    imbalance: float = 10.0
    """imbalance_ratio of the long-tailed / class-imbalanced variants."""
    mnist_dir: str = "../shared/data/mnist"
    cache_dir: str | None = None
    threads: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    reuse_runs: bool = True
    """Load final metrics stored by an earlier invocation for the same config (see module docstring)."""

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def full_profile(mnist_dir: str, cache_dir: str | None, threads: int) -> Profile:
    return Profile(
        name="full",
        datasets=("digits", "mnist"),
        seeds=(0, 1, 2),
        cll_epochs={"digits": 30, "mnist": 8},
        ord_epochs={"digits": 20, "mnist": 5},
        hidden=128,
        noise_k=(1, 2, 5, 10, 20, 50, 100, 200),
        train_k=(5, 10, 50),
        num_cls=(1, 2, 3),
        Ks=(1, 3, 5),
        weights=(0.0, 0.25, 0.5, 0.75, 1.0),
        mnist_dir=mnist_dir,
        cache_dir=cache_dir,
        threads=threads,
    )


def quick_profile(mnist_dir: str, cache_dir: str | None, threads: int) -> Profile:
    """Tiny: digits only, one seed, a few epochs; for the test and a smoke check, not for conclusions."""
    return Profile(
        name="quick",
        datasets=("digits",),
        seeds=(0,),
        cll_epochs={"digits": 3},
        ord_epochs={"digits": 2},
        hidden=32,
        noise_k=(2, 10),
        train_k=(5, 10),
        num_cls=(1, 2),
        Ks=(1, 3),
        weights=(0.0, 1.0),
        mnist_dir=mnist_dir,
        cache_dir=cache_dir,
        threads=threads,
    )


# ----------------------------------------------------------------------------- running
@dataclass
class Runner:
    profile: Profile
    runs: list[dict[str, Any]] = field(default_factory=list)  # every fit: config + final metrics
    _memo: dict[str, dict[str, float]] = field(default_factory=dict)
    _data: dict[str, Dataset] = field(default_factory=dict)
    loaded: int = 0  # runs whose metrics came from the run store

    def _store(self, key: str) -> Path:
        root = Path(self.profile.cache_dir) if self.profile.cache_dir else default_cache_dir()
        digest = hashlib.sha256(f"runs-v{RUNS_VERSION}|{key}".encode()).hexdigest()[:32]
        return root / "runs" / f"{digest}.json"

    def base(self, dataset: str, **changes: Any) -> TrainConfig:
        p = self.profile
        labels = changes.get("labels", "complementary")
        epochs = (p.cll_epochs if labels == "complementary" else p.ord_epochs)[dataset]
        values: dict[str, Any] = dict(
            dataset=dataset,
            data_dir=p.mnist_dir if dataset == "mnist" else None,
            model="mlp",
            hidden=p.hidden,
            epochs=epochs,
            batch_size=p.batch_size,
            lr=p.lr,
            device="cpu",
            num_threads=p.threads,
            cache_dir=p.cache_dir,
        )
        values.update(changes)
        return TrainConfig(**values)

    def dataset(self, cfg: TrainConfig) -> Dataset:
        key = f"{cfg.dataset}|{cfg.data_dir}|{cfg.train_fraction}"
        if key not in self._data:
            self._data[key] = load_dataset(cfg)
        return self._data[key]

    def run(self, cfg: TrainConfig) -> dict[str, float]:
        """Final-epoch metrics of cfg (trained once per process); test metrics are never used to pick epochs."""
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in self._memo:
            store = self._store(key)
            final = None
            if self.profile.reuse_runs and store.exists():
                try:
                    final = json.loads(store.read_text())["final"]
                    self.loaded += 1
                except (OSError, ValueError, KeyError):
                    final = None  # a damaged entry: train again and overwrite it
            if final is None:
                t0 = time.perf_counter()
                result = fit(cfg, self.dataset(cfg))
                final = dict(result.final)
                final["seconds"] = time.perf_counter() - t0
                write_text_atomic(store, json.dumps({"config": cfg.to_dict(), "final": final}))
                print(
                    f"[run] {cfg.dataset} {cfg.labels} {cfg.method} loss={cfg.resolved_loss} seed={cfg.seed}: "
                    f"acc {final['test_acc']:.3f} in {final['seconds']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
            self._memo[key] = final
            changed = {k: v for k, v in cfg.to_dict().items() if k not in ("data_dir", "cache_dir", "device")}
            self.runs.append({"config": changed, "final": final})
        return self._memo[key]

    def seeds(self, dataset: str, metric: str = "test_acc", **changes: Any) -> list[float]:
        """`metric` of the config over every profile seed."""
        return [self.run(self.base(dataset, seed=s, **changes))[metric] for s in self.profile.seeds]


def data_key(dataset: Dataset, keep: torch.Tensor) -> str:
    """The clustering cache key `fit.prepare` uses for these training rows (so caches are shared)."""
    rows = hashlib.sha256(keep.numpy().tobytes()).hexdigest()[:16]
    return f"{dataset.fingerprint}:{rows}"


# ----------------------------------------------------------------------------- statistics
def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else 0.0)


def pm(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std' of values * scale (percent by default)."""
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def compare(a: list[float], b: list[float]) -> tuple[float, str]:
    """(mean(a) - mean(b), verdict): 'better' / 'worse' when the gap exceeds 2 standard errors, else 'tie'.

    With one seed there is no error bar and the verdict is the sign alone ('better?' / 'worse?').
    """
    ma, sa = mean_std(a)
    mb, sb = mean_std(b)
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:
        return diff, "better?" if diff > 0 else "worse?"
    se = math.sqrt(sa**2 / len(a) + sb**2 / len(b))
    if abs(diff) <= 2 * se:
        return diff, "tie"
    return diff, "better" if diff > 0 else "worse"
