"""`mixtune train`: one config, trained with the core's `fit`, results written to a folder."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import torch

from trainables.core.config import TrainConfig
from trainables.core.files import write_text_atomic
from trainables.core.data import load_dataset
from trainables.core.fit import FitResult, fit


def run_name(cfg: TrainConfig) -> str:
    return f"{cfg.dataset}-{cfg.labels}-{cfg.method}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


# what a progress line shows, in order, with its short name and format
EPOCH_FIELDS = (("train_loss", "loss", ".4f"), ("val_acc", "val_acc", ".4f"), ("val_scel_ts", "val_scel_ts", ".4f"),
                ("val_acc_est", "val_acc_est", ".4f"), ("test_acc", "test_acc", ".4f"), ("test_ece", "test_ece", ".3f"),
                ("noise_rate", "noise", ".3f"), ("pair_impurity", "impurity", ".3f"))


def format_epoch(m: dict[str, float], epochs: int) -> str:
    """One progress line: the metrics a user watches (those this run reports), fixed width."""
    parts = [f"epoch {int(m['epoch']):>3}/{epochs}"]
    parts += [f"{short} {m[key]:{fmt}}" for key, short, fmt in EPOCH_FIELDS if key in m]
    parts.append(f"{m['epoch_time']:.2f}s")
    return "  ".join(parts)


def history_csv(history: list[dict[str, float]]) -> str:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def save_results(result: FitResult, out: Path) -> Path:
    """config.yaml (the resolved config), metrics.csv, summary.json, model.pt."""
    out.mkdir(parents=True, exist_ok=True)
    result.config.to_yaml(out / "config.yaml")
    write_text_atomic(out / "metrics.csv", history_csv(result.history))
    summary = {"final": result.final, **result.info}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    torch.save({"model": result.model.state_dict(), "config": result.config.to_dict()}, out / "model.pt")
    return out


def train_and_save(cfg: TrainConfig, out: Path | None = None, quiet: bool = False) -> Path:
    dataset = load_dataset(cfg)  # bad files fail here, before any folder is created
    out = out or Path("mixtune-results") / "train" / run_name(cfg)

    def on_epoch(m: dict[str, float], _checkpoint) -> None:
        if not quiet:
            print(format_epoch(m, cfg.epochs), flush=True)

    result = fit(cfg, dataset, on_epoch)
    save_results(result, out)
    f = result.final
    shown = "  ".join(f"{k} {f[k]:.4f}" for k in ("val_acc", "val_scel_ts", "val_acc_est", "test_acc", "test_ece") if k in f)
    print(
        f"done: {cfg.method} on {cfg.dataset} ({cfg.labels} labels, {cfg.resolved_loss}): {shown}  "
        f"{sum(h['epoch_time'] for h in result.history):.1f}s on {result.info['device']}"
    )
    return out
