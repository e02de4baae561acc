"""Settings profiles, an in-process runner around `fit`, and mean ± std helpers.

Experiments call `fit` directly (no Ray, no MLflow): on a 2-core machine the search
machinery would cost more than the small MLPs it trains. Each distinct config is trained
once (`Runner.run` memoises), so configs shared between tables — ICM at the default k
appears in the main table, the k sweep and the feature comparison — cost once. Final
metrics and the per-epoch curves (`CURVE_KEYS`) are also stored under `<cache>/runs/`
keyed by the config, so an interrupted reproduction resumes where it stopped and suites
may run as parallel processes (`--only`) before one last invocation assembles the report
from the stored runs.
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

from trainables.core.config import TrainConfig, default_cache_dir
from trainables.core.files import write_text_atomic
from trainables.core.data import Dataset, load_dataset
from trainables.core.fit import fit


RUNS_VERSION = 3  # bump when fit changes what a config's metrics are (2: validation split, URE fix, tail skip; curves kept; 3: val_scel_ts)

# per-epoch metrics kept in the run store (the learning curves); the rest of an epoch's dict is timing
CURVE_KEYS = ("train_loss", "test_acc", "test_ece", "val_acc", "val_loss", "val_ece", "val_scel", "val_ure", "val_acc_est")


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
    suites: tuple[str, ...] = ("icm", "features", "multimix", "infinite")
    """The report's sections, in order (names in experiments.reproduce.SUITES)."""
    imbalance: float = 10.0
    """imbalance_ratio of the long-tailed / class-imbalanced variants."""
    mnist_dir: str = "../shared/data/mnist"
    cache_dir: str | None = None
    threads: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    alpha: float = 1.0
    """Beta(alpha, alpha) of every mixing run unless a table varies it."""
    k: int = 10
    """ICM clusters unless a table varies it."""
    cluster_features: str = "pca"
    """What ICM's k-means runs on unless a table varies it."""
    losses: tuple[str, ...] = ("scl_nl", "ure_tnn")
    """CLL losses of the main none / mixup / ICM table."""
    vary_data_seed: bool = False
    """Seed s of `seeds` also sets data_seed = s (a new validation split and new complementary labels per seed);
    False: data_seed 0 throughout, so the spread is the training seed's alone."""
    tune_trials: int = 0
    """Trials of each tuned-alike search (the same for every method)."""
    tune_seeds: tuple[int, ...] = ()
    """Training seeds the selected config of a tuned-alike search is retrained on (the search trains with seed 0)."""
    narrow_hidden: tuple[int, ...] = ()
    """Widths of the low-capacity MLPs of the open questions."""
    low_alphas: tuple[float, ...] = ()
    """Smaller alphas tried for ICM on the low-capacity models."""
    low_ks: tuple[int, ...] = ()
    """Larger k tried for ICM on the low-capacity models."""
    reuse_runs: bool = True
    """Load metrics stored by an earlier invocation for the same config (see module docstring)."""

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def full_profile(mnist_dir: str, cache_dir: str | None, threads: int) -> Profile:
    """The short budget (MNIST 8 epochs): every section of the three papers, in about 10 minutes."""
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


def paper_profile(mnist_dir: str, cache_dir: str | None, threads: int) -> Profile:
    """Converged budgets (see the learning curves in the report); the tuned-alike comparison; the open questions.

    Sized for about 45 minutes on an idle 2-core machine as two parallel parts
    (`--only main open` and `--only tuned`) and one assembling invocation.
    """
    return Profile(
        name="paper",
        suites=("main", "tuned", "open"),
        datasets=("digits", "mnist"),
        seeds=(0, 1, 2),
        cll_epochs={"digits": 100, "mnist": 60},
        ord_epochs={"digits": 60, "mnist": 30},
        hidden=256,
        batch_size=128,
        alpha=1.0,
        k=50,
        cluster_features="raw",
        losses=("scl_nl", "ure_tnn"),
        vary_data_seed=True,
        noise_k=(50,),
        train_k=(),
        num_cls=(1, 2, 3),
        Ks=(1, 2, 3, 5, 10),
        weights=(),
        tune_trials=8,
        tune_seeds=(1, 2, 3),
        narrow_hidden=(16,),
        low_alphas=(0.2,),
        low_ks=(200,),
        mnist_dir=mnist_dir,
        cache_dir=cache_dir,
        threads=threads,
    )


def quick_profile(mnist_dir: str, cache_dir: str | None, threads: int) -> Profile:
    """Tiny: digits only, one seed, a few epochs, every section; for the test and a smoke check, not for conclusions."""
    return Profile(
        name="quick",
        suites=("icm", "features", "multimix", "infinite", "main", "tuned", "open"),
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
        tune_trials=2,
        tune_seeds=(1,),
        narrow_hidden=(8,),
        low_alphas=(0.2,),
        low_ks=(20,),
        mnist_dir=mnist_dir,
        cache_dir=cache_dir,
        threads=threads,
    )


PROFILES = {"quick": quick_profile, "full": full_profile, "paper": paper_profile}


# ----------------------------------------------------------------------------- running
@dataclass
class Runner:
    profile: Profile
    runs: list[dict[str, Any]] = field(default_factory=list)  # every fit: config + final metrics (+ curve if plotted)
    _memo: dict[str, dict[str, Any]] = field(default_factory=dict)  # config key -> stored entry
    _data: dict[str, Dataset] = field(default_factory=dict)
    _listed: dict[str, dict[str, Any]] = field(default_factory=dict)  # config key -> its entry in `runs`
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
            weight_decay=p.weight_decay,
            alpha=p.alpha,
            k=p.k,
            cluster_features=p.cluster_features,
            device="cpu",
            num_threads=p.threads,
            cache_dir=p.cache_dir,
        )
        values.update(changes)
        return TrainConfig(**values)

    def seeded(self, dataset: str, seed: int, **changes: Any) -> TrainConfig:
        """The config at one profile seed: the training seed, and the data's too where the profile varies it."""
        if self.profile.vary_data_seed:
            changes.setdefault("data_seed", seed)
        return self.base(dataset, seed=seed, **changes)

    def dataset(self, cfg: TrainConfig) -> Dataset:
        key = f"{cfg.dataset}|{cfg.data_dir}|{cfg.train_fraction}"
        if key not in self._data:
            self._data[key] = load_dataset(cfg)
        return self._data[key]

    def _entry(self, cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
        """(key, {"final": ..., "curve": {metric: [per epoch]}}) of cfg, trained once and kept in the run store."""
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in self._memo:
            store = self._store(key)
            entry = None
            if self.profile.reuse_runs and store.exists():
                try:
                    stored = json.loads(store.read_text())
                    entry = {"final": stored["final"], "curve": stored["curve"]}
                    self.loaded += 1
                except (OSError, ValueError, KeyError):
                    entry = None  # a damaged entry: train again and overwrite it
            if entry is None:
                t0 = time.perf_counter()
                result = fit(cfg, self.dataset(cfg))
                final = dict(result.final)
                final["seconds"] = time.perf_counter() - t0
                curve = {m: [h[m] for h in result.history] for m in CURVE_KEYS if m in result.final}
                entry = {"final": final, "curve": curve}
                write_text_atomic(store, json.dumps({"config": cfg.to_dict(), **entry}))
                print(
                    f"[run] {cfg.dataset} {cfg.labels} {cfg.method} loss={cfg.resolved_loss} seed={cfg.seed}: "
                    f"acc {final['test_acc']:.3f} in {final['seconds']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
            self._memo[key] = entry
            changed = {k: v for k, v in cfg.to_dict().items() if k not in ("data_dir", "cache_dir", "device")}
            self._listed[key] = {"config": changed, "final": entry["final"]}
            self.runs.append(self._listed[key])
        return key, self._memo[key]

    def run(self, cfg: TrainConfig) -> dict[str, float]:
        """Final-epoch metrics of cfg (trained once per process); test metrics are never used to pick epochs."""
        return self._entry(cfg)[1]["final"]

    def curve(self, cfg: TrainConfig, metric: str = "test_acc") -> list[float]:
        """`metric` after every epoch of cfg; the curve also goes into results.json with the run."""
        key, entry = self._entry(cfg)
        self._listed[key].setdefault("curve", {})[metric] = entry["curve"][metric]
        return entry["curve"][metric]

    def seeds(self, dataset: str, metric: str = "test_acc", **changes: Any) -> list[float]:
        """`metric` of the config over every profile seed."""
        return [self.run(self.seeded(dataset, s, **changes))[metric] for s in self.profile.seeds]


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
