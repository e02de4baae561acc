"""mixtune against the Ray Tune + Optuna + MLflow script a user would write (issue 26, target >= 2.5x).

    python bench/vs_script.py                 # 16 ICM trials x 20 epochs, 2 rounds per side
    python bench/vs_script.py --rounds 1 --num-samples 4 --epochs 2    # checks the script

Both sides train the same trials' maths with the same code (`trainables.core.fit`) and search
the same space (the `icm` preset with ICM pinned: k, alpha, the CLL loss, lr, weight decay) without early
stopping, 20 epochs, on digits with complementary labels, each in a fresh process with a fresh
sqlite MLflow store, run one after the other with the order alternating each round:

- `mixtune`: `mixtune search --space icm --method icm --scheduler none --num-samples 16 --summary wait`
  (ICM only, as the script; everything it logs, before it exits: a run per trial with metrics, a
  parent run, the summary, plots, the best model);
- `script`: `bench/user_script.py` (Tune + OptunaSearch + MLflowLoggerCallback, see there).

Figures per side, the median over rounds: `wall` (process start to exit), `training_s` (the
trials' own `time_total_s`, summed: the work both must do) and `outside_s` (wall minus the
training time divided by the trials running at once, the cost of everything around training);
`speedup` is the script's wall over mixtune's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, emit, machine, median  # noqa: E402


def training_seconds(folder: Path) -> tuple[float, int]:
    """The trials' summed `time_total_s` and how many trials, from Ray's result.json files."""
    total, n = 0.0, 0
    for path in folder.rglob("result.json"):
        lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            total += float(lines[-1]["time_total_s"])
            n += 1
    return total, n


def run_side(side: str, work: Path, args: argparse.Namespace, name: str) -> dict[str, float]:
    results = work / f"{name}-results"
    store = f"sqlite:///{work / f'{name}-mlflow.db'}"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO), MIXTUNE_CACHE=str(work / "cache"))
    common = ["--num-samples", str(args.num_samples), "--epochs", str(args.epochs), "--tracking-uri", store]
    if side == "mixtune":
        cmd = [sys.executable, "-m", "tuner.cli", "search", "--space", "icm", "--method", "icm", "--scheduler", "none",
               "--summary", "wait", "--name", name, "--results-dir", str(results), *common]
    else:
        cmd = [sys.executable, str(REPO / "bench" / "user_script.py"), "--experiment", name,
               "--storage", str(results), *common]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    train, n = training_seconds(results)
    if n != args.num_samples:
        raise SystemExit(f"{side}: {n} trials finished, expected {args.num_samples}")
    concurrent = min(os.cpu_count() or 1, args.num_samples)
    return {"wall": wall, "training_s": train, "outside_s": wall - train / concurrent}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mixtune-vs-script-"))
    sides = ["mixtune", "script"]
    got: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
    try:
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                got[side].append(run_side(side, work, args, f"{side}{r}"))
                print(f"# {side} round {r}: {got[side][-1]['wall']:.1f}s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fig = {s: {k: median([row[k] for row in got[s]]) for k in ("wall", "training_s", "outside_s")} for s in sides}
    speedup = fig["script"]["wall"] / fig["mixtune"]["wall"]
    emit("vs_script", trials=args.num_samples, epochs=args.epochs, mixtune=fig["mixtune"], script=fig["script"],
         walls={s: [row["wall"] for row in got[s]] for s in sides}, speedup=speedup, target=2.5,
         met=speedup >= 2.5, machine=machine())


if __name__ == "__main__":
    main()
