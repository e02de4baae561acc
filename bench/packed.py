"""Figure 5: N small trials packed on one GPU vs one process training them one after another.

    python bench/packed.py               # needs CUDA and Ray; N=4 trials, gpus_per_trial=1/N
    python bench/packed.py --smoke       # CPU, 2 tiny trials: checks the script runs

Sequential side: this process runs `fit` for the N configs back to back on the GPU (warm: CUDA
initialised, modules imported). Packed side: a Ray Tune search of the same N configs through the
real trainable (`train_trial`, checkpoint every epoch), `gpus_per_trial = 1/N`, all N at once;
its wall time includes starting the actors, their imports and CUDA initialisation.
Throughput = examples trained / wall seconds; target: packed >= 0.7 x sequential, and more than
one trial running at a time (the peak concurrency seen by a driver callback).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import as_dataset, emit, machine, synthetic_images  # noqa: E402

from trainables.core.config import TrainConfig  # noqa: E402
from trainables.core.fit import fit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--n", type=int, default=20_000, help="training examples per trial")
    p.add_argument("--epochs", type=int, default=15, help="long enough that starting N workers (imports, CUDA) is not most of it")
    p.add_argument("--model", default="cnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-cpus", type=int, default=None, help="Ray CPUs (default: all)")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    cuda = torch.cuda.is_available() and not a.smoke
    if not cuda and not a.smoke:
        emit("packed_trials", skipped="no CUDA device here; run on a GPU machine (bench/gpu_all.sh)", machine=machine())
        return
    import ray
    from ray import tune

    from trainables.trainable import train_trial

    if a.smoke:
        a.trials, a.n, a.epochs, a.batch_size = 2, 256, 1, 64
    shape = (3, 32, 32) if not a.smoke else (3, 8, 8)
    xs, ys = synthetic_images(a.n + 1000, shape, 10)
    dataset, _, _ = as_dataset(xs, ys, 1000)
    root = Path(tempfile.mkdtemp(prefix="mixtune-bench-packed-"))
    base = TrainConfig(
        labels="complementary", method="mixup", model=a.model, hidden=128, epochs=a.epochs,
        batch_size=a.batch_size, device="cuda" if cuda else "cpu", num_threads=1, cache_dir=str(root / "cache"),
    ).to_dict()
    seeds = list(range(a.trials))
    examples = a.trials * a.epochs * a.n

    # sequential: one warm process, one trial after another
    fit(TrainConfig.from_dict({**base, "epochs": 1}), dataset)  # warm-up: CUDA context, cuDNN, imports
    t0 = time.perf_counter()
    for s in seeds:
        fit(TrainConfig.from_dict({**base, "seed": s}), dataset)
    if cuda:
        torch.cuda.synchronize()
    seq_s = time.perf_counter() - t0

    # packed: N trials at once, each a fraction of the GPU
    cpus = a.num_cpus or os.cpu_count() or 1
    ray.init(num_cpus=cpus, num_gpus=1 if cuda else 0, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")

    class Concurrency(tune.Callback):
        def __init__(self):
            self.running, self.peak = 0, 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.running += 1
            self.peak = max(self.peak, self.running)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.running -= 1

    conc = Concurrency()
    per_trial = {"cpu": max(1.0, cpus / a.trials) if cpus >= a.trials else cpus / a.trials,
                 "gpu": 1.0 / a.trials if cuda else 0}
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(train_trial, dataset=dataset, base=base), per_trial),
            param_space={"seed": tune.grid_search(seeds)},
            tune_config=tune.TuneConfig(max_concurrent_trials=a.trials, reuse_actors=True),
            run_config=tune.RunConfig(name="packed", storage_path=str(root / "ray"), callbacks=[conc], verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        t0 = time.perf_counter()
        grid = tuner.fit()
        packed_s = time.perf_counter() - t0
        errors = [str(r.error) for r in grid if r.error is not None]
    finally:
        ray.shutdown()
    if errors:
        raise SystemExit(f"packed trials failed: {errors[0]}")
    seq_tp, packed_tp = examples / seq_s, examples / packed_s
    emit(
        "packed_trials",
        trials=a.trials,
        setting=f"{a.model} hidden 128, mixup, {a.n} examples x {a.epochs} epochs, batch {a.batch_size}",
        gpus_per_trial=per_trial["gpu"],
        cpus_per_trial=per_trial["cpu"],
        sequential_s=seq_s,
        packed_s=packed_s,
        sequential_examples_per_s=seq_tp,
        packed_examples_per_s=packed_tp,
        ratio=packed_tp / seq_tp,
        peak_concurrent_trials=conc.peak,
        target=">= 0.7x and > 1 trial at a time",
        met=packed_tp / seq_tp >= 0.7 and conc.peak > 1,
        smoke=a.smoke,
        machine=machine("cuda" if cuda else None),
    )


if __name__ == "__main__":
    main()
