"""Does a warm start save trials? `python bench/warm_start.py [--seeds 0 1 2] [--out DIR]`.

For each search seed, three real `mixtune search` runs on digits with complementary labels
(preset `all`, 20 epochs, ASHA on, one trial at a time so TPE's proposals do not depend on
timing), selecting on the default validation metric:

* cold: 32 trials;
* first: 16 trials (the earlier search);
* warm: 16 trials warm-started from `first` (its 16 finished trials are prior observations).

The target is the cold search's best value of the metric (as Optuna recorded it). Reported:
how many trials each needed to reach it (the warm search counted both ways: its own trials,
and its own plus the 16 it started from), and each search's best value. JSON lines on stdout,
a summary table at the end; the searches stay under --out for inspection.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(out: Path, name: str, samples: int, seed: int, *extra: str) -> "SearchSettings":  # noqa: F821
    from tuner.cli import main
    from tuner.settings import SearchSettings

    argv = ["search", "--num-samples", str(samples), "--max-concurrent", "1", "--num-cpus", "1",
            "--search-seed", str(seed), "--num-threads", "1", "--results-dir", str(out / "results"),
            "--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--experiment", "bench-warm", "--name", name, *extra]
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"search {name} failed with exit code {rc}")
    return SearchSettings.load(out / "results" / name)


def values(settings) -> list[float]:
    """The search's own trials' objective values, in the order they were proposed."""
    import optuna

    from tuner.search.warmstart import WARM_TAG

    study = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    own = [t for t in study.trials if WARM_TAG not in t.user_attrs and t.value is not None]
    return [t.value for t in sorted(own, key=lambda t: t.number)]


def trials_to_reach(vals: list[float], target: float, mode: str) -> int | None:
    for i, v in enumerate(vals, 1):
        if (v >= target if mode == "max" else v <= target):
            return i
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="folder for the searches (default: a temp folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="mixtune-bench-warm-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        cold = run(out, f"cold-{seed}", 32, seed)
        first = run(out, f"first-{seed}", 16, seed)
        warm = run(out, f"warm-{seed}", 16, seed, "--warm-start", f"first-{seed}")
        mode = cold.mode
        vc, vf, vw = values(cold), values(first), values(warm)
        best = (max if mode == "max" else min)
        target = best(vc)
        own = trials_to_reach(vw, target, mode)
        row = {"seed": seed, "metric": cold.metric, "mode": mode, "target": target,
               "cold_trials_to_target": trials_to_reach(vc, target, mode),
               "warm_own_trials_to_target": own,
               "warm_total_trials_to_target": None if own is None else len(vf) + own,
               "best_cold": target, "best_first": best(vf), "best_warm": best(vw), "seconds": time.perf_counter() - t0}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{'seed':>4} {'cold: trials to its best':>24} {'warm: own trials to it':>23} {'warm: own + 16 prior':>21}"
          f" {'best cold':>10} {'best warm':>10}")
    for r in rows:
        fmt = lambda v: "not reached" if v is None else str(v)  # noqa: E731
        print(f"{r['seed']:>4} {r['cold_trials_to_target']:>24} {fmt(r['warm_own_trials_to_target']):>23} "
              f"{fmt(r['warm_total_trials_to_target']):>21} {r['best_cold']:>10.4f} {r['best_warm']:>10.4f}")
    cold_mean = statistics.fmean(r["cold_trials_to_target"] for r in rows)
    reached = [r["warm_total_trials_to_target"] for r in rows if r["warm_total_trials_to_target"] is not None]
    print(f"mean trials to the cold 32-trial best: cold {cold_mean:.1f}; warm (own + prior) "
          + (f"{statistics.fmean(reached):.1f} over the {len(reached)} seeds that reached it" if reached else "never"))
    print(f"searches in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
