"""The search a user writes without mixtune: Ray Tune + Optuna + MLflow, as their docs show them.

    python bench/user_script.py --num-samples 16 --tracking-uri sqlite:////tmp/u/mlflow.db

The baseline of bench/vs_script.py (issue 26): the same 16 Intra-Cluster Mixup trials as
`mixtune search --space icm --method icm --scheduler none`, trained by the same code (`trainables.core.fit`,
the function mixtune's trainable calls), so the two differ only in what surrounds training:

- `tune.Tuner` over a function trainable, `OptunaSearch` with a define-by-run space (the `icm`
  preset's parameters and ranges), no scheduler, one CPU per trial (Tune runs as many at once as
  the machine has cores);
- the dataset passed with `tune.with_parameters` (what Ray's docs advise for data, rather than
  loading it in each trial);
- every epoch reported with a checkpoint (`torch.save` into a temporary folder), as in Ray's
  "function trainable" example; mixtune checkpoints every epoch too;
- `MLflowLoggerCallback`: a run per trial with its parameters and every epoch's metrics. It logs
  no model, plot or search summary, which mixtune does: the comparison favours this script.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRIC = "val_scel_ts"


def space(trial) -> dict[str, Any]:
    """The `icm` preset's parameters with ICM pinned, as a user would write them (define-by-run)."""
    trial.suggest_int("k", 2, 300, log=True)
    trial.suggest_float("alpha", 0.2, 2.0, log=True)
    trial.suggest_categorical("loss", ["scl_nl", "scl_exp", "fwd"])
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    return {"method": "icm"}


def train(config: dict[str, Any], dataset=None, epochs: int = 20) -> None:
    import torch
    from ray import tune

    from trainables.core.config import TrainConfig
    from trainables.core.fit import fit

    cfg = TrainConfig(**config, epochs=epochs, num_threads=1)

    def on_epoch(metrics: dict[str, float], checkpoint) -> None:
        with tempfile.TemporaryDirectory() as d:
            torch.save(checkpoint(), os.path.join(d, "checkpoint.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    fit(cfg, dataset, on_epoch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", default="user-script")
    parser.add_argument("--storage", default=None, help="Ray Tune's results folder")
    args = parser.parse_args(argv)
    t0 = time.time()

    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    from trainables.core.config import TrainConfig
    from trainables.core.data import load_dataset

    dataset = load_dataset(TrainConfig(seed=args.seed))
    searcher = OptunaSearch(space=space, metric=METRIC, mode="min", seed=args.seed)
    tuner = tune.Tuner(
        tune.with_parameters(train, dataset=dataset, epochs=args.epochs),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=args.num_samples),
        run_config=tune.RunConfig(
            name=args.experiment,
            storage_path=args.storage,
            callbacks=[MLflowLoggerCallback(tracking_uri=args.tracking_uri, experiment_name=args.experiment)],
            verbose=0,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result(metric=METRIC, mode="min")
    print(f"best {METRIC} {best.metrics[METRIC]:.6f} test_acc {best.metrics.get('test_acc', float('nan')):.4f} "
          f"config {best.config} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
