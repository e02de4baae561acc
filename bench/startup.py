"""A search's fixed cost: how long `mixtune search` takes around its trials' training (issue 26).

    python bench/startup.py                      # this tree; 1-trial search x3 rounds, quick start x1
    python bench/startup.py --base eb7d63a       # the same, side by side with a commit, alternating
    python bench/startup.py --wait-side          # and this tree with --summary wait (sent before exit)
    python bench/startup.py --running-ray        # and this tree joining a Ray runtime already running
    python bench/startup.py --smoke              # one round, no quick start (checks the script)

Figures, each the median over rounds, each side run as a user runs it (`python -m tuner.cli
search ...` in a fresh process, its own results folder, an existing sqlite MLflow store; rounds
alternate the sides so the machine's load hits them alike):

- `one_trial`: `mixtune search --space icm --num-samples 1 --epochs 1` (targets: wall <= 8 s), in parts:
  `to_training` (process start -> the trial starts training), `trial` (its training, as the trial
  itself reports it), `after_training` (the trial's last result -> the process exits), and
  `mlflow_complete` (process start -> the summary's sender, when the command started one, has
  sent everything: when MLflow has the whole search; the next round waits for it);
- `quick_start`: `mixtune search` with the defaults (16 trials), wall (target <= 30 s), with the
  same parts: start -> the first trial's first result, last result -> exit.

Sides: this tree (`now`, the CLI's defaults); `--base REV`; `--wait-side`: this tree with
`--summary wait` (the summary sent before the command returns, as before issue 26's
background sender); `--running-ray`: this tree joining a local Ray runtime started once
beforehand (`ray start --head`, as a user iterating on searches keeps one), run after the
alternating rounds (a running runtime would be joined by the other sides too).

The trial's times come from Ray's `result.json` of each trial (the file's write time for the
last result, `time_this_iter_s` for the first epoch's start). This tree's driver also writes its
own phase marks (`MIXTUNE_PHASES`, see `tuner/execution/execute.py`): they are printed as `phases`,
seconds from process start, so a regression shows where it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, emit, machine, median  # noqa: E402

ONE = ["--space", "icm", "--num-samples", "1", "--epochs", "1"]
QUICK: list[str] = []  # the README's quick start: `mixtune search`


def checkout(rev: str, into: Path) -> Path:
    """A detached worktree of `rev` (removed at the end), to run the old code side by side."""
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), rev], check=True,
                   capture_output=True)
    return into


def trial_times(folder: Path) -> tuple[float, float, float]:
    """(first training start, last result, training seconds summed) from the trials' result.json."""
    starts, ends, train = [], [], 0.0
    for path in folder.glob("trial_*/result.json"):
        lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        if not lines:
            continue
        end = path.stat().st_mtime
        first = lines[0]
        # the first result's write time: the file's when it has one line; else its own stamp
        first_at = end if len(lines) == 1 else float(first["timestamp"])
        starts.append(first_at - float(first["time_this_iter_s"]))
        ends.append(end)
        train += float(lines[-1]["time_total_s"])
    return min(starts), max(ends), train


def wait_gone(pid: int, timeout: float = 300.0) -> None:
    """Wait until a process (not ours: the summary's sender, adopted by init) has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise SystemExit(f"the summary's sender, pid {pid}, still runs after {timeout:.0f}s")


def run_once(tree: Path, argv: list[str], work: Path, name: str) -> dict[str, float]:
    """One `mixtune search` in a fresh process of `tree`'s code; its wall time and parts."""
    results = work / "results"
    phases = work / f"{name}.phases.jsonl"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(tree), MIXTUNE_PHASES=str(phases),
               MIXTUNE_CACHE=str(work / "cache"))
    env.pop("MIXTUNE_SUMMARY", None)
    cmd = [sys.executable, "-m", "tuner.cli", "search", *argv, "--name", name, "--results-dir", str(results),
           "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    t1 = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    sender = re.search(r"^MLflow: .* sent by pid (\d+) ", proc.stdout, re.M)
    if sender:
        wait_gone(int(sender.group(1)))
    t2 = time.time()
    first, last, train = trial_times(results / name)
    row = {"wall": t1 - t0, "to_training": first - t0, "trial": last - first, "after_training": t1 - last,
           "training_s": train, "mlflow_complete": t2 - t0}
    if phases.exists():
        row["phases"] = {e["phase"]: e["t"] - t0 for e in map(json.loads, phases.read_text().splitlines())}
    return row


def summarise(rows: list[dict]) -> dict:
    out = {k: median([r[k] for r in rows])
           for k in ("wall", "to_training", "trial", "after_training", "training_s", "mlflow_complete")}
    marks = [r.get("phases", {}) for r in rows]
    keys = [k for k in marks[0]] if marks and marks[0] else []
    if keys:
        out["phases"] = {k: median([m[k] for m in marks if k in m]) for k in keys}
    out["walls"] = [r["wall"] for r in rows]
    return out


class RunningRay:
    """A local Ray runtime started once (`ray start --head --block`, its own session and temp
    folder), as a user who runs many searches keeps one; killed by its process group at the end."""

    def __init__(self, tmp: Path, port: int = 6391):
        self.address = f"127.0.0.1:{port}"
        env = dict(os.environ, RAY_AUTH_MODE="disabled")
        self.proc = subprocess.Popen(
            ["ray", "start", "--head", "--block", "--port", str(port), "--num-cpus", str(os.cpu_count() or 2),
             "--include-dashboard", "false", "--temp-dir", str(tmp / "ray")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.time() + 120
        while subprocess.run(["ray", "status", "--address", self.address], capture_output=True, env=env).returncode:
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("ray start --head did not come up")
            time.sleep(1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="a git revision to run side by side with this tree (e.g. eb7d63a)")
    p.add_argument("--wait-side", action="store_true", help="also this tree with --summary wait")
    p.add_argument("--running-ray", action="store_true",
                   help="also this tree joining a Ray runtime started once beforehand (after the other rounds)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the 1-trial search per side (default 3)")
    p.add_argument("--quick-rounds", type=int, default=1, help="rounds of the 16-trial quick start (0: skip)")
    p.add_argument("--smoke", action="store_true", help="one round, no quick start")
    args = p.parse_args()
    if args.smoke:
        args.rounds, args.quick_rounds = 1, 0
    tmp = Path(tempfile.mkdtemp(prefix="mixtune-startup-"))
    sides: dict[str, tuple[Path, list[str]]] = {"now": (REPO, [])}
    try:
        if args.base:
            sides[f"base {args.base}"] = (checkout(args.base, tmp / "base-tree"), [])
        if args.wait_side:
            sides["now --summary wait"] = (REPO, ["--summary", "wait"])
        work = {side: tmp / f"work{i}" for i, side in enumerate([*sides, "running ray"])}
        for w in work.values():
            w.mkdir()
        # a first search per side creates its MLflow store and clustering cache: a user's second search
        for side, (tree, extra) in sides.items():
            run_once(tree, ONE + extra, work[side], "warm")
        got: dict[str, dict[str, list]] = {s: {"one": [], "quick": []} for s in [*sides, "running ray"]}
        order = list(sides)
        for r in range(max(args.rounds, args.quick_rounds)):
            for side in order if r % 2 == 0 else order[::-1]:
                tree, extra = sides[side]
                if r < args.rounds:
                    got[side]["one"].append(run_once(tree, ONE + extra, work[side], f"one{r}"))
                    print(f"# {side} one_trial round {r}: {got[side]['one'][-1]['wall']:.1f}s", file=sys.stderr)
                if r < args.quick_rounds:
                    got[side]["quick"].append(run_once(tree, QUICK + extra, work[side], f"quick{r}"))
                    print(f"# {side} quick_start round {r}: {got[side]['quick'][-1]['wall']:.1f}s", file=sys.stderr)
        if args.running_ray:
            ray_rt = RunningRay(tmp)
            try:
                joined = ["--address", ray_rt.address]
                run_once(REPO, ONE + joined, work["running ray"], "warm")
                for r in range(args.rounds):
                    got["running ray"]["one"].append(run_once(REPO, ONE + joined, work["running ray"], f"one{r}"))
                    print(f"# running ray one_trial round {r}: {got['running ray']['one'][-1]['wall']:.1f}s",
                          file=sys.stderr)
            finally:
                ray_rt.stop()
        where = machine()
        for side in got:
            if not got[side]["one"]:
                continue
            one = summarise(got[side]["one"])
            emit("one_trial", side=side, **one, target_wall=8.0, met=one["wall"] <= 8.0, machine=where)
            if got[side]["quick"]:
                quick = summarise(got[side]["quick"])
                emit("quick_start", side=side, **quick, target_wall=30.0, met=quick["wall"] <= 30.0, machine=where)
    finally:
        if args.base:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp / "base-tree")],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
