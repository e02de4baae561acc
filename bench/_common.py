"""Helpers shared by the bench scripts: machine description, timing, one JSON line per figure.

Every script prints one JSON object per figure on its own line, with both sides, their ratio
and the machine, so `python bench/x.py | tee -a results.jsonl` is a complete record.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def machine(device: torch.device | str | None = None) -> str:
    """One line naming where a figure came from: CPU model and cores, GPU, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu} x{os.cpu_count()}"
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        text += f" | {torch.cuda.get_device_name(dev)}"
    try:
        load = os.getloadavg()[0]
        text += f" | load {load:.1f}"
    except OSError:
        pass
    return text + f" | torch {torch.__version__} | py {sys.version.split()[0]}"


def emit(figure: str, **fields: Any) -> dict[str, Any]:
    """Print one figure as a JSON line (floats rounded for reading) and return it."""

    def tidy(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.4g}")
        if isinstance(v, dict):
            return {k: tidy(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [tidy(x) for x in v]
        return v

    row = {"figure": figure, **{k: tidy(v) for k, v in fields.items()}}
    print(json.dumps(row), flush=True)
    return row


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock seconds of a block, after a device sync on both ends."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> "Timer":
        if self.device is not None:
            sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device is not None:
            sync(self.device)
        self.seconds = time.perf_counter() - self._t0


def mnist_like(n: int, seed: int = 0, real: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """(n, 1, 28, 28) uint8 images and (n,) labels: the real MNIST test set repeated, else synthetic."""
    if real and (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        from trainables.core.config import TrainConfig
        from trainables.core.vision import idx_arrays

        raw = idx_arrays(TrainConfig(dataset="mnist", data_dir=str(MNIST_DIR)))  # uint8, via torchvision's idx reader
        x, y = np.concatenate([raw.x_train, raw.x_test]), np.concatenate([raw.y_train, raw.y_test])
        reps = -(-n // len(x))
        return np.tile(x, (reps, 1, 1, 1))[:n], np.tile(y, reps)[:n], f"MNIST t10k repeated to {n}"
    return synthetic_images(n, (1, 28, 28), 10, seed) + (f"synthetic {n}x1x28x28",)


def synthetic_images(n: int, shape: tuple[int, int, int], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images with a class-dependent mean, so a model has something to learn."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int64)
    base = rng.integers(0, 256, (classes, *shape)).astype(np.float32)
    noise = rng.integers(0, 256, (n, *shape), dtype=np.uint8).astype(np.float32)
    x = (0.5 * base[y] + 0.5 * noise).astype(np.uint8)
    return x, y


def as_dataset(x: np.ndarray, y: np.ndarray, n_test: int, classes: int = 10, name: str = "bench"):
    """A core `Dataset` (float32, normalised per channel with train statistics) from uint8 arrays."""
    from trainables.core.data import Dataset

    xt = torch.from_numpy(x.astype(np.float32) / 255.0)
    std, mean = torch.std_mean(xt, dim=(0, 2, 3), correction=0, keepdim=True)
    xt = (xt - mean) / std.clamp_min(1e-6)
    yt = torch.from_numpy(y)
    return Dataset(
        name=name,
        x_train=xt[n_test:].contiguous(),
        y_train=yt[n_test:].contiguous(),
        x_test=xt[:n_test].contiguous(),
        y_test=yt[:n_test].contiguous(),
        num_classes=classes,
        fingerprint=f"{name}-{x.shape}-{int(x[:64].sum())}",
    ), mean.flatten().tolist(), std.flatten().tolist()
