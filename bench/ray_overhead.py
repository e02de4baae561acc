"""Figure 4: what a Ray Tune trial costs beyond its training, against Ray's own floor.

    python bench/ray_overhead.py            # CPU, 10 trials per search, about 2-3 minutes
    python bench/ray_overhead.py --smoke    # 3 trials per search, one round

Per-trial overhead = (wall time of `Tuner.fit()` - sum of the trials' training time) / trials,
with one trial at a time (so the subtraction is meaningful) and reused actors everywhere.
Training time is what `fit` reports as `epoch_time` (training + evaluation) summed over epochs.

Searches, run in alternating rounds so the machine's load hits them alike:
    floor      an empty function trainable (reports once): Ray's own cost per trial
    data       the empty trainable given the dataset through `tune.with_parameters`
    fit        a trainable that runs `fit` on the tiny setting and reports each epoch, no checkpoint
    ckpt       the real `train_trial` (checkpoint every epoch), no MLflow
    real       the real `train_trial` + the `MLflowTrials` callback (sqlite backend)
The differences between neighbours give the breakdown (data transfer, set-up, checkpointing,
MLflow); actor start and imports are measured directly (once per actor, shared by its trials).
The target is real <= 1.5 x floor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard loggers: mixtune logs to MLflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine, median  # noqa: E402

import ray  # noqa: E402
from ray import tune  # noqa: E402

from trainables.core.config import TrainConfig  # noqa: E402
from trainables.core.data import load_dataset  # noqa: E402
from trainables.core.fit import fit  # noqa: E402
from trainables.trainable import train_trial, trial_config  # noqa: E402


# ----------------------------------------------------------------------------- trainables
def empty_trial(config):
    tune.report({"epoch": 1})


def empty_with_data(config, dataset, base):
    tune.report({"epoch": 1, "n": len(dataset.y_train)})


def fit_only(config, dataset, base):
    cfg = trial_config(base, config)

    def on_epoch(metrics, _make_state):
        tune.report(dict(metrics))

    fit(cfg, dataset, on_epoch)


class TrainTimes(tune.Callback):
    """Driver side: sum of `epoch_time` over every result of every trial."""

    def __init__(self):
        self.train = 0.0
        self.trials = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.train += float(result.get("epoch_time", 0.0))
        self.trials.add(trial.trial_id)


class Timed:
    """Wraps a Tune callback's hooks and adds up the seconds spent in them (they run on the driver)."""

    def __init__(self, cb):
        self.cb = cb
        self.seconds = defaultdict(float)
        for hook in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error"):
            fn = getattr(cb, hook)

            def timed(*a, _fn=fn, _hook=hook, **k):
                t0 = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    self.seconds[_hook] += time.perf_counter() - t0

            setattr(cb, hook, timed)


# ----------------------------------------------------------------------------- one search
def run_search(kind: str, trials: int, dataset, base: dict, root: Path) -> dict:
    train_times = TrainTimes()
    callbacks: list = [train_times]
    timed = None
    if kind == "floor":
        trainable = empty_trial
    elif kind == "data":
        trainable = tune.with_parameters(empty_with_data, dataset=dataset, base=base)
    elif kind == "fit":
        trainable = tune.with_parameters(fit_only, dataset=dataset, base=base)
    else:
        trainable = tune.with_parameters(train_trial, dataset=dataset, base=base, checkpoint_every=1)
    if kind == "real":
        from tuner.tracking import callback as tracking

        uri = f"sqlite:///{root / 'mlflow.db'}"
        client = tracking.client(uri)
        exp = tracking.experiment_id(client, "bench-overhead")
        parent = client.create_run(exp, run_name=f"search-{time.time_ns()}")
        from tuner.settings import SearchSettings

        settings = SearchSettings(name=f"bench-{time.time_ns()}", space="none", base=base, metric="train_loss",
                                  mode="min", tracking_uri=uri, parent_run_id=parent.info.run_id, experiment_id=exp)
        cb = tracking.MLflowTrials(settings)
        timed = Timed(cb)
        callbacks.append(cb)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"seed": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{kind}-{time.time_ns()}",
            storage_path=str(root / "ray"),
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,
        ),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"{kind}: {len(errors)} trial(s) failed: {errors[0]}")
    out = {"wall": wall, "train": train_times.train, "per_trial": (wall - train_times.train) / trials}
    if timed is not None:
        out["mlflow_driver"] = sum(timed.seconds.values()) / trials
        out["mlflow_hooks"] = {k: v / trials for k, v in timed.seconds.items()}
    return out


# ----------------------------------------------------------------------------- direct measures
def actor_start_seconds() -> float:
    @ray.remote(num_cpus=1)
    class Probe:
        def ping(self):
            return 1

    t0 = time.perf_counter()
    a = Probe.remote()
    ray.get(a.ping.remote())
    s = time.perf_counter() - t0
    ray.kill(a)
    return s


def worker_warmup_seconds() -> tuple[float, float]:
    """What a fresh worker pays once: importing the trainable, then torch's lazy imports in the
    first `fit` (the first optimizer pulls in torch._dynamo: hundreds of modules)."""
    code = (
        "import time; t=time.perf_counter(); import trainables.trainable; i=time.perf_counter()-t\n"
        "from trainables.core.config import TrainConfig; from trainables.core.data import load_dataset\n"
        "from trainables.core.fit import fit; import tempfile\n"
        "cfg=TrainConfig(method='mixup', hidden=32, epochs=1, batch_size=128, device='cpu', num_threads=1,"
        " cache_dir=tempfile.mkdtemp()); ds=load_dataset(cfg)\n"
        "t=time.perf_counter(); r=fit(cfg, ds); f=time.perf_counter()-t-sum(h['epoch_time'] for h in r.history)\n"
        "print(i, f)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    i, f = out.stdout.strip().splitlines()[-1].split()
    return float(i), float(f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    if a.smoke:
        a.trials, a.rounds = 3, 1

    root = Path(tempfile.mkdtemp(prefix="mixtune-bench-ray-"))
    base = TrainConfig(
        method="mixup", hidden=32, epochs=a.epochs, batch_size=128, device="cpu", num_threads=1,
        cache_dir=str(root / "cache"),
    ).to_dict()
    dataset = load_dataset(TrainConfig.from_dict(base))
    # the same worker set-up hook as `mixtune search` (tuner/execution/assembly.py start_ray): workers import
    # torch and the core when they start rather than inside their first trial
    ray.init(num_cpus=a.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"worker_process_setup_hook": "trainables.trainable.warm_worker"})
    try:
        kinds = ["floor", "data", "fit", "ckpt", "real"]
        runs: dict[str, list[dict]] = defaultdict(list)
        run_search("floor", 2, dataset, base, root)  # warm-up: first actor, first imports
        for r in range(a.rounds):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                runs[kind].append(run_search(kind, a.trials, dataset, base, root))
        actor = median([actor_start_seconds() for _ in range(3)])
    finally:
        ray.shutdown()
    warm = [worker_warmup_seconds() for _ in range(2)]
    imports, first_fit = median([w[0] for w in warm]), median([w[1] for w in warm])
    once = imports + first_fit  # paid once per actor, i.e. once per search here (one actor)
    ovh = {k: median([x["per_trial"] for x in v]) for k, v in runs.items()}
    train = {k: median([x["train"] / a.trials for x in v]) for k, v in runs.items()}
    mlflow_driver = median([x["mlflow_driver"] for x in runs["real"]])
    hooks = runs["real"][-1]["mlflow_hooks"]
    ratio = ovh["real"] / ovh["floor"]
    emit(
        "ray_trial_overhead",
        trials=a.trials,
        epochs=a.epochs,
        setting="digits, MLP hidden 32, mixup, 2 epochs, checkpoint every epoch, MLflow sqlite",
        real_s=ovh["real"],
        floor_s=ovh["floor"],
        ratio=ratio,
        target="<= 1.5x",
        met=ratio <= 1.5,
        train_s_per_trial=train["real"],
        overhead_by_search=ovh,
        breakdown_s_per_trial={
            "ray_floor": ovh["floor"],
            "data_transfer": ovh["data"] - ovh["floor"],
            "fit_setup_and_reports": ovh["fit"] - ovh["data"],
            "checkpointing": ovh["ckpt"] - ovh["fit"],
            "mlflow": ovh["real"] - ovh["ckpt"],
            "mlflow_driver_hooks_measured": mlflow_driver,
            "actor_start_once_per_actor": actor,
            "imports_once_per_worker": imports,
            "torch_lazy_imports_in_first_fit_once_per_worker": first_fit,
        },
        ratio_without_once_per_worker_costs=(ovh["real"] - once / a.trials) / ovh["floor"],
        mlflow_hooks_s_per_trial=hooks,
        rounds=a.rounds,
        smoke=a.smoke,
        machine=machine(),
    )


if __name__ == "__main__":
    main()
