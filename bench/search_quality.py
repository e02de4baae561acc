"""Does `mixtune search` find a better configuration with less compute than random search?

    python bench/search_quality.py run     [--datasets digits mnist] [--spaces icm all] [--seeds 0 1 2 3 4]
                                           [--strategies pool default tpe_noes gp_noes ...] [--trials 64]
    python bench/search_quality.py report  (assembles docs/search_quality.md's figures from the store)

Every search is a complete one through the real machinery (Ray Tune, the Optuna sampler, the
journaled ASHA, MLflow), selecting on the validation metric a user without true labels has
(val_scel_ts for complementary labels). Search seed s uses data seed s (its own validation split
and complementary-label draw). Strategies (`STRATEGIES`):

* default   mixtune search as shipped (TPE, ASHA, start-up sized to the budget, stopped trials PRUNED);
* before    the defaults before this benchmark (start-up 10, stopped trials told COMPLETE);
* tpe_noes  TPE, no early stopping;
* gp_noes   Optuna's GPSampler, no early stopping (Bayesian optimisation with a Gaussian process:
            the established model-based baseline for budgets of tens of trials);
* random_noes, random_asha  random sampling without / with the same ASHA: not run as searches but
            computed exactly from `pool`, a set of random configurations (Optuna's RandomSampler
            over the same space, seeded) each trained to the full budget with every epoch kept.
            random_noes with n trials is the pool's first n; random_asha replays the pool in order
            through Ray's own ASHA bracket, one trial at a time.

What is measured, against cumulative trial-epochs (the compute a user pays): the test accuracy of
the trial the search would return at that point, chosen the way mixtune chooses (`pick_best`:
the validation metric, trials that ran every epoch first; never a test label); the best test
accuracy among the trials it ran (search regret against the best anywhere in the benchmark for
that dataset, space and seed) and the selected one's gap to it (selection regret).

Each search is stored as one JSON file under --store (default bench/results/search_quality/),
so parts can run in parallel processes or in the background and `report` assembles them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
STORE = ROOT / "bench" / "results" / "search_quality"
DOC = ROOT / "docs" / "search_quality.md"
EPOCHS = 20
EXTRA = ("val_scel", "val_acc_est", "val_ure")  # other validation metrics, kept to compare selection rules
BUDGETS = (40, 80, 160, 240, 320, 427, 640, 960, 1280)  # trial-epochs; 427 = a third of 64 x 20

# strategy -> SearchSettings changes (None: computed from the pool)
# The presets' CLL losses: six when this benchmark started, three since it showed the weak ones
# cost the 64-trial search (search_spaces/presets.py). Every strategy names its losses, so a record
# means the same whatever the presets offer now; the random pools sample the six.
SIX = ["scl_nl", "scl_exp", "fwd", "ure_ga", "ure_tnn", "pc"]
THREE = ["scl_nl", "scl_exp", "fwd"]
STRATEGIES: dict[str, dict[str, Any] | None] = {
    "default": {"num_samples": 64, "losses": SIX},
    "default16": {"num_samples": 16, "losses": SIX},
    "before16": {"num_samples": 16, "startup_trials": 10, "record_pruned": False, "losses": SIX},
    "startup10_16": {"num_samples": 16, "startup_trials": 10, "losses": SIX},  # one change at a time
    "complete16": {"num_samples": 16, "record_pruned": False, "losses": SIX},
    "noliar16": {"num_samples": 16, "constant_liar": False, "losses": SIX},
    "tpe_noes": {"num_samples": 24, "scheduler": "none", "losses": SIX},
    "gp_noes": {"num_samples": 24, "sampler": "gp", "scheduler": "none", "losses": SIX},
    "grace4": {"num_samples": 64, "grace_period": 4, "losses": SIX},
    "strong16": {"num_samples": 16, "losses": THREE},  # mixtune's default now
    "strong": {"num_samples": 64, "losses": THREE},
    # the `icm` preset choosing between ICM and the authors' label sharing (issue 22): mixtune's default now
    "share16": {"num_samples": 16, "losses": THREE, "icm_methods": ["icm", "icm_share_labels_in_batch"]},
    "random_noes": None,
    "random_asha": None,
}
LABELS = {
    "default": "six losses (the presets before), 64-trial search",
    "default16": "six losses (the presets before), 16-trial search",
    "before16": "six losses, start-up 10, stopped = COMPLETE (the first default), 16 trials",
    "startup10_16": "six losses, 16 trials, but start-up 10",
    "complete16": "six losses, 16 trials, but stopped = COMPLETE",
    "noliar16": "six losses, 16 trials, but no constant liar",
    "tpe_noes": "TPE, no early stopping (six losses)",
    "gp_noes": "GP (Optuna GPSampler), no early stopping (six losses)",
    "grace4": "six losses, 64 trials, ASHA grace 4 epochs",
    "strong16": "mixtune default (three losses), 16-trial search; on icm: ICM only",
    "strong": "mixtune default (three losses), 64-trial search; on icm: ICM only",
    "share16": "mixtune default on icm (three losses; ICM or label sharing), 16-trial search",
    "random_noes": "random, no early stopping (six losses)",
    "random_asha": "random + ASHA (six losses)",
}


def use_losses(losses: list[str]) -> None:
    """The presets' CLL-loss choice for the searches of this process (the space runs in the driver)."""
    import search_spaces.presets as presets

    presets.COMPLEMENTARY_LOSSES[:] = losses


def use_icm_methods(methods: list[str]) -> None:
    """The `icm` preset's variants for the searches of this process (every strategy before share16: ICM only)."""
    import search_spaces.presets as presets

    presets.ICM_METHODS[:] = methods


# ----------------------------------------------------------------------------- settings
def base_config(dataset: str, seed: int) -> dict[str, Any]:
    from trainables.core.config import TrainConfig

    extra = {"data_dir": str(MNIST_DIR)} if dataset == "mnist" else {}
    return TrainConfig(dataset=dataset, labels="complementary", epochs=EPOCHS, data_seed=seed, num_threads=1,
                       **extra).to_dict()


def settings_for(out: Path, strategy: str, dataset: str, space: str, seed: int, trials: int | None = None):
    from tuner.settings import SearchSettings

    changes = dict(STRATEGIES.get(strategy) or {})
    changes.pop("losses", None)  # not settings: run_search_record narrows the presets' choices
    changes.pop("icm_methods", None)
    if trials is not None:
        changes["num_samples"] = trials
    return SearchSettings(
        name=f"{strategy}-{dataset}-{space}-s{seed}", space=space, base=base_config(dataset, seed), max_concurrent=2, num_cpus=2, cpus_per_trial=1.0, seed=seed,
        results_dir=str(out / "results"), tracking_uri=f"sqlite:///{out / 'mlflow.db'}",
        experiment="bench-search-quality", **changes)


def record_path(store: Path, strategy: str, dataset: str, space: str, seed: int) -> Path:
    return store / f"{strategy}-{dataset}-{space}-s{seed}.json"


# ----------------------------------------------------------------------------- real searches
def run_search_record(strategy: str, dataset: str, space: str, seed: int, trials: int | None, store: Path,
                      work: Path) -> dict[str, Any]:
    """One real search (in this process), returned as a record of every trial's epochs."""
    import optuna

    from tuner.execution.execute import run_search
    from tuner.search.searcher import RAY_TRIAL_ATTR

    settings = settings_for(work, strategy, dataset, space, seed, trials)
    use_losses((STRATEGIES.get(strategy) or {}).get("losses") or SIX)
    use_icm_methods((STRATEGIES.get(strategy) or {}).get("icm_methods") or ["icm"])
    t0 = time.time()
    run_search(settings, echo=lambda line: None)
    wall = time.time() - t0
    study = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
    finished = {t.user_attrs.get(RAY_TRIAL_ATTR): t.datetime_complete.timestamp()
                for t in study.trials if t.datetime_complete is not None}
    out = []
    for folder in sorted((settings.folder).glob("trial_*")):
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines() if line.strip()]
        by_epoch = {int(r["epoch"]): r for r in rows if "epoch" in r}  # a restored epoch once
        epochs = sorted(by_epoch)
        tid = folder.name.removeprefix("trial_")
        out.append({"id": tid, "config": rows[-1]["config"], "end": finished.get(tid, rows[-1]["timestamp"]),
                    "val": [by_epoch[e][settings.metric] for e in epochs],
                    "test": [by_epoch[e]["test_acc"] for e in epochs],
                    "extra": {m: [by_epoch[e].get(m) for e in epochs] for m in EXTRA}})
    out.sort(key=lambda t: t["end"])
    return {"strategy": strategy, "dataset": dataset, "space": space, "seed": seed, "trials": out,
            "metric": settings.metric, "mode": settings.mode, "epochs": EPOCHS, "wall": wall,
            "num_samples": settings.num_samples}


def run_pool(dataset: str, space: str, seed: int, trials: int) -> dict[str, Any]:
    """`trials` random configurations of the space, each trained to the last epoch in this process."""
    import optuna
    import torch

    from trainables.core.fit import fit, prepare, resolve_device
    from trainables.trainable import trial_config
    from tuner.execution.checks import check_search

    torch.set_num_threads(1)
    use_losses(SIX)
    use_icm_methods(["icm"])
    settings = settings_for(Path(tempfile.mkdtemp(prefix="mixtune-pool-")), "default", dataset, space, seed, trials)
    checked = check_search(settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1000 + seed))
    out, t0 = [], time.time()
    for i in range(trials):
        trial = study.ask()
        fixed = checked.space(trial) or {}  # suggests on the trial, then returns the constants
        params = {**trial.params, **fixed}
        study.tell(trial, 0.0)
        cfg = trial_config(checked.settings.base, params, 1.0)
        start = time.time()
        result = fit(cfg, prepare(cfg, checked.dataset, resolve_device(cfg.device)))
        out.append({"id": f"pool{i:03d}", "config": params, "seconds": time.time() - start,
                    "val": [h[checked.settings.metric] for h in result.history],
                    "test": [h["test_acc"] for h in result.history],
                    "extra": {m: [h.get(m) for h in result.history] for m in EXTRA}})
    return {"strategy": "pool", "dataset": dataset, "space": space, "seed": seed, "trials": out,
            "metric": checked.settings.metric, "mode": checked.settings.mode, "epochs": EPOCHS,
            "wall": time.time() - t0, "num_samples": trials}


# ----------------------------------------------------------------------------- replays
def sequence(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials in the order they ended, each with the epochs it ran."""
    return [{**t, "epochs": len(t["val"])} for t in record["trials"]]


def random_noes(pool: dict[str, Any]) -> list[dict[str, Any]]:
    return sequence(pool)


def random_asha(pool: dict[str, Any], grace: int = 2, factor: int = 3) -> list[dict[str, Any]]:
    """The pool's trials in order through Ray's ASHA bracket (one at a time): each is cut at the
    rung where the bracket would stop it."""
    from types import SimpleNamespace

    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = _Bracket(min_t=grace, max_t=pool["epochs"], reduction_factor=factor, s=0)
    sign = 1.0 if pool["mode"] == "max" else -1.0
    out = []
    for t in pool["trials"]:
        trial, ran = SimpleNamespace(trial_id=t["id"]), len(t["val"])
        for epoch, value in enumerate(t["val"], 1):
            if bracket.on_result(trial, epoch, sign * value) == "STOP":
                ran = epoch
                break
        out.append({**t, "val": t["val"][:ran], "test": t["test"][:ran], "epochs": ran})
    return out


# ----------------------------------------------------------------------------- reading a search
def select(done: list[dict[str, Any]], metric: str, mode: str, epochs: int) -> dict[str, Any] | None:
    """The trial mixtune would return: `tuner.report.selection.pick_best` on the validation metric."""
    from tuner.report.selection import pick_best

    rows = [{"error": None, "trial": t, "metrics": {metric: t["val"][-1], "epoch": t["epochs"]}} for t in done]
    best = pick_best(rows, metric, mode, epochs)
    return None if best is None else best["trial"]


def anytime(trials: list[dict[str, Any]], metric: str, mode: str, epochs: int,
            budgets=BUDGETS) -> list[dict[str, Any]]:
    """At each budget (trial-epochs of the trials ended by then): selected and best-run test accuracy."""
    points = []
    for budget in budgets:
        done, cost = [], 0
        for t in trials:
            if cost + t["epochs"] > budget:
                break
            cost += t["epochs"]
            done.append(t)
        if not done or cost < 0.9 * budget and len(done) == len(trials):
            points.append(None)  # the search ended before this budget
            continue
        chosen = select(done, metric, mode, epochs)
        full = [t for t in done if t["epochs"] == epochs] or done
        points.append({"budget": budget, "cost": cost, "trials": len(done), "selected": chosen["test"][-1],
                       "best_run": max(t["test"][-1] for t in full)})
    return points


def trials_of(strategy: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    if strategy == "random_noes":
        return random_noes(record)
    if strategy == "random_asha":
        return random_asha(record)
    return sequence(record)


# ----------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seeds outermost: every strategy has a seed before any has two
        for dataset in args.datasets:
            for space in args.spaces:
                for strategy in args.strategies:
                    name = "pool" if strategy == "pool" else strategy
                    path = record_path(store, name, dataset, space, seed)
                    if path.exists():
                        continue
                    t0 = time.time()
                    if strategy == "pool":
                        record = run_pool(dataset, space, seed, args.trials)
                    else:  # a fresh process per search: its own Ray runtime, shut down after
                        cmd = [sys.executable, __file__, "one", strategy, dataset, space, str(seed),
                               "--store", str(store), "--work", args.work]
                        rc = subprocess.run(cmd).returncode
                        if rc != 0:
                            print(f"{strategy} {dataset} {space} seed {seed}: exit {rc}", flush=True)
                        continue
                    path.write_text(json.dumps(record))
                    print(f"{name} {dataset} {space} seed {seed}: {time.time() - t0:.0f}s", flush=True)
    return 0


def cmd_one(args) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    store = Path(args.store)
    work = Path(args.work) / f"{args.strategy}-{args.dataset}-{args.space}-s{args.seed}"
    if work.exists():
        import shutil

        shutil.rmtree(work)  # a search killed half-way: run it again whole
    work.mkdir(parents=True)
    t0 = time.time()
    record = run_search_record(args.strategy, args.dataset, args.space, args.seed, args.trials, store, work)
    from trainables.core.files import write_text_atomic

    write_text_atomic(record_path(store, args.strategy, args.dataset, args.space, args.seed), json.dumps(record))
    cost = sum(len(t["val"]) for t in record["trials"])
    print(f"{args.strategy} {args.dataset} {args.space} seed {args.seed}: {len(record['trials'])} trials, "
          f"{cost} trial-epochs, {time.time() - t0:.0f}s", flush=True)
    return 0


def load(store: Path) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    out = {}
    for path in sorted(store.glob("*-s*.json")):
        r = json.loads(path.read_text())
        out[(r["strategy"], r["dataset"], r["space"], r["seed"])] = r
    return out


def pm(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values) * scale
    s = (statistics.stdev(values) * scale) if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def end_point(trials: list[dict[str, Any]], metric: str, mode: str, epochs: int) -> dict[str, Any]:
    """The whole search: what it returns at its end, what it cost, the best trial it ran."""
    chosen = select(trials, metric, mode, epochs)
    full = [t for t in trials if t["epochs"] == epochs] or trials
    return {"cost": sum(t["epochs"] for t in trials), "trials": len(trials), "selected": chosen["test"][-1],
            "best_run": max(t["test"][-1] for t in full)}


def summarise(records, strategies=tuple(STRATEGIES)) -> dict[str, Any]:
    """Per (dataset, space): each strategy's anytime points and end point per seed, and the best anywhere."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for (strategy, dataset, space, seed), rec in records.items():
        cell = cells.setdefault((dataset, space), {"best": {}, "curves": {}, "ends": {}, "walls": {}})
        full = [t["test"][-1] for t in rec["trials"] if len(t["test"]) == rec["epochs"]]
        if full:
            cell["best"][seed] = max(cell["best"].get(seed, 0.0), max(full))
        sources = ["random_noes", "random_asha"] if strategy == "pool" else [strategy]
        for name in sources:
            if name not in strategies:
                continue
            trials = trials_of(name, rec)
            args = (rec["metric"], rec["mode"], rec["epochs"])
            cell["curves"].setdefault(name, {})[seed] = anytime(trials, *args)
            if strategy == "pool":  # random search of 16 and of 64 trials, as a user would run them
                for n in (16, 64):
                    if len(trials) >= n:
                        cell["ends"].setdefault(f"{name}{n}", {})[seed] = end_point(trials[:n], *args)
            else:
                cell["ends"].setdefault(name, {})[seed] = end_point(trials, *args)
                cell["walls"].setdefault(name, {})[seed] = rec["wall"]
    return cells


def regrets(cell: dict[str, Any], pts: dict[int, dict[str, Any]]) -> dict[str, Any]:
    sel = [p["selected"] for p in pts.values()]
    run = [p["best_run"] for p in pts.values()]
    best = [cell["best"][s] for s in pts]
    return {"seeds": len(pts), "selected": sel, "search_regret": [b - r for b, r in zip(best, run)],
            "selection_regret": [r - s for r, s in zip(run, sel)],
            "regret": [b - s for b, s in zip(best, sel)],
            "trials": statistics.fmean(p["trials"] for p in pts.values()),
            "cost": statistics.fmean(p["cost"] for p in pts.values())}


def table_rows(cell: dict[str, Any], strategy: str) -> list[dict[str, Any]]:
    curves = cell["curves"].get(strategy, {})
    rows = []
    for i, budget in enumerate(BUDGETS):
        pts = {seed: c[i] for seed, c in curves.items() if c[i] is not None}
        if pts:
            rows.append({"budget": budget, **regrets(cell, pts)})
    return rows


END_LABELS = {
    "random_noes16": "random, 16 trials, no early stopping (six losses)",
    "random_noes64": "random, 64 trials, no early stopping (six losses)",
    "random_asha16": "random + ASHA, 16 trials (six losses)", "random_asha64": "random + ASHA, 64 trials (six losses)",
}


def end_rows(cell: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    order = ["random_noes16", "random_asha16", "before16", "startup10_16", "complete16", "noliar16", "default16",
             "strong16", "share16", "random_noes64", "random_asha64",
             "default", "grace4", "strong", "tpe_noes", "gp_noes"]
    return [(name, regrets(cell, cell["ends"][name])) for name in order if cell["ends"].get(name)]


def cmd_report(args) -> int:
    records = load(Path(args.store))
    cells = summarise(records)
    lines = ["## Whole searches (what each returns at its end)", ""]
    for (dataset, space), cell in sorted(cells.items()):
        lines.append(f"\n### {dataset}, space `{space}`: best test accuracy anywhere in the benchmark "
                     f"{pm(list(cell['best'].values()))} (seeds {', '.join(map(str, sorted(cell['best'])))})\n")
        lines.append("| strategy | seeds | trials | trial-epochs | selected test acc | regret | search regret | "
                     "selection regret | wall s |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for name, row in end_rows(cell):
            walls = cell["walls"].get(name, {})
            wall = f"{statistics.fmean(walls.values()):.0f}" if walls else "-"
            lines.append(f"| {END_LABELS.get(name) or LABELS[name]} | {row['seeds']} | {row['trials']:.0f} | "
                         f"{row['cost']:.0f} | {pm(row['selected'])} | {pm(row['regret'])} | "
                         f"{pm(row['search_regret'])} | {pm(row['selection_regret'])} | {wall} |")
    lines += ["", "## Anytime: selected test accuracy at a budget of trial-epochs", ""]
    for (dataset, space), cell in sorted(cells.items()):
        lines.append(f"\n### {dataset}, space `{space}`\n")
        strategies = [s for s in STRATEGIES if cell["curves"].get(s)]
        lines.append("| trial-epochs | " + " | ".join(LABELS[s] for s in strategies) + " |")
        lines.append("|---" * (len(strategies) + 1) + "|")
        for budget in BUDGETS:
            cols = []
            for strategy in strategies:
                row = next((r for r in table_rows(cell, strategy) if r["budget"] == budget), None)
                cols.append("-" if row is None else f"{pm(row['selected'])} (n={row['seeds']})")
            if any(c != "-" for c in cols):
                lines.append(f"| {budget} | " + " | ".join(cols) + " |")
    lines += ["", targets(cells), "", gamed_section(records), "", asha_section(records), "", selection_section(records), "",
              choices_section(records), "", losses_section(records)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.plot:
        plot(cells, Path(args.plot))
    return 0


def targets(cells) -> str:
    """The issue's two targets, per dataset and space, stated either way."""
    out = ["## Targets", "", "| dataset, space | searches | 64-trial search at <= 427 trial-epochs | random 64, no ES "
           "(1280) | holds? | 16-trial search's regret (search + selection) | <= 1 point? |", "|---|---|---|---|---|---|---|"]
    for (dataset, space), cell in sorted(cells.items()):
        for big, small in (("default", "default16"), ("strong", "strong16")):
            if cell["ends"].get(big) or cell["ends"].get(small):
                out.append(_target_row(dataset, space, cell, big, small))
        if cell["ends"].get("share16"):
            out.append(_target_row(dataset, space, cell, "strong", "share16",
                                   "icm with label sharing (its 64-trial column: ICM only)"))
    return "\n".join(out)


def _target_row(dataset: str, space: str, cell: dict[str, Any], big: str, small: str, label: str = "") -> str:
    """One row of the targets: the 64-trial search `big` at a third of the compute, the 16-trial `small`."""
    row = next((r for r in table_rows(cell, big) if r["budget"] == 427), None)
    rnd = cell["ends"].get("random_noes64")
    a = "-" if row is None else pm(row["selected"])
    b = "-" if not rnd else pm([p["selected"] for p in rnd.values()])
    holds = "-"
    if row is not None and rnd:
        diff = statistics.fmean(row["selected"]) - statistics.fmean(p["selected"] for p in rnd.values())
        holds = f"{'yes' if diff >= -1e-6 else 'no'} ({diff * 100:+.2f})"  # equal up to float rounding: not below
    d16 = cell["ends"].get(small)
    if d16:
        r = regrets(cell, d16)
        reg = (f"{statistics.fmean(r['regret']) * 100:.1f} ({statistics.fmean(r['search_regret']) * 100:.1f} + "
               f"{statistics.fmean(r['selection_regret']) * 100:.1f})")
        ok = "yes" if statistics.fmean(r["regret"]) <= 0.01 else "no"
    else:
        reg, ok = "-", "-"
    label = label or LABELS[big].split(",")[0]
    return f"| {dataset}, {space} | {label} | {a} | {b} | {holds} | {reg} | {ok} |"


def gamed_section(records) -> str:
    """Which loss the returned configuration uses, per search: where a search returns a URE-TNN
    configuration, the validation metric ranked it best while it tests far below the others."""
    out = ["## The configuration each 64-trial search returns: its loss and test accuracy, per seed", "",
           "| dataset, space | strategy | " + " | ".join(f"seed {s}" for s in range(5)) + " |", "|---|---|" + "---|" * 5]
    names = {"default": LABELS["default"], "strong": LABELS["strong"],
             "tpe_noes": "TPE, no early stopping", "gp_noes": "GP, no early stopping",
             "random_noes": "random, 64 trials, no early stopping"}
    cells: dict[tuple[str, str, str], dict[int, str]] = {}
    for (strategy, dataset, space, seed), rec in records.items():
        name = "random_noes" if strategy == "pool" else strategy
        if name not in names:
            continue
        trials = trials_of(name, rec)[:64]
        chosen = select(trials, rec["metric"], rec["mode"], rec["epochs"])
        if chosen is not None:
            cells.setdefault((dataset, space, name), {})[seed] = f"{chosen['config'].get('loss')} {chosen['test'][-1] * 100:.1f}"
    for (dataset, space, name), by_seed in sorted(cells.items()):
        out.append(f"| {dataset}, {space} | {names[name]} | " + " | ".join(by_seed.get(s, "-") for s in range(5)) + " |")
    return "\n".join(out)


def asha_section(records) -> str:
    """ASHA's grace period and reduction factor, replayed exactly on the random pools."""
    settings = [(1, 2), (1, 3), (2, 2), (2, 3), (4, 2), (4, 3)]
    out = ["## ASHA settings, replayed on the random pools (searches of 16 and of 64 trials)", "",
           "| dataset, space | " + " | ".join(f"grace {g}, factor {f}" for g, f in settings) + " |",
           "|---" * (len(settings) + 1) + "|"]
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (strategy, dataset, space, seed), rec in records.items():
        if strategy == "pool":
            by_cell.setdefault((dataset, space), []).append(rec)
    for key, recs in sorted(by_cell.items()):
        for n in (16, 64):
            cols = []
            for g, f in settings:
                sel, cost = [], []
                for rec in recs:
                    for i in range(0, len(rec["trials"]) - n + 1, n):  # searches of n trials from the pool
                        part = {**rec, "trials": rec["trials"][i:i + n]}
                        p = end_point(random_asha(part, g, f), rec["metric"], rec["mode"], rec["epochs"])
                        sel.append(p["selected"])
                        cost.append(p["cost"])
                cols.append(f"{pm(sel)} at {statistics.fmean(cost):.0f}")
            out.append(f"| {key[0]}, {key[1]}, {n} trials | " + " | ".join(cols) + " |")
    out.append("\n(selected test accuracy at the end of each replayed search, at its mean trial-epochs)")
    return "\n".join(out)


RULES: dict[str, tuple[str, Any]] = {
    # name -> (direction, score of a trial): how the validation values could be read
    "val_scel_ts, last epoch (mixtune's rule)": ("min", lambda t: t["val"][-1]),
    "val_scel_ts, mean of last 3 epochs": ("min", lambda t: statistics.fmean(t["val"][-3:])),
    "val_scel_ts, best epoch": ("min", lambda t: min(t["val"])),
    "val_acc_est, last epoch": ("max", lambda t: (t.get("extra") or {}).get("val_acc_est", [None])[-1]),
}


def rule_regret(trials: list[dict[str, Any]], epochs: int, direction: str, score) -> float | None:
    """Best test accuracy among the trials that ran every epoch minus that of the one the rule picks."""
    full = [t for t in trials if t["epochs"] == epochs] or trials
    scored = [(score(t), t) for t in full]
    if any(v is None or not math.isfinite(v) for v, _ in scored):
        return None
    sign = 1.0 if direction == "max" else -1.0
    chosen = max(scored, key=lambda vt: sign * vt[0])[1]
    return max(t["test"][-1] for t in full) - chosen["test"][-1]


def selection_section(records) -> str:
    """Selection regret of other readings of the validation values, on the same searches."""
    groups: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
    for (strategy, dataset, space, seed), rec in records.items():
        if strategy == "pool":  # four random searches of 16 trials, without early stopping
            trials = random_noes(rec)
            for i in range(0, len(trials) - 15, 16):
                groups.setdefault((dataset, space, "random 16, no ES"), []).append(trials[i:i + 16])
        elif strategy in ("default16", "default"):
            groups.setdefault((dataset, space, LABELS[strategy]), []).append(sequence(rec))
    out = ["## Reading the validation values: selection regret (points) of other rules on the same trials", "",
           "| dataset, space, searches | n | " + " | ".join(RULES) + " |", "|---" * (len(RULES) + 2) + "|"]
    for (dataset, space, what), searches in sorted(groups.items()):
        cols = []
        for direction, score in RULES.values():
            vals = [rule_regret(tr, EPOCHS, direction, score) for tr in searches]
            vals = [v for v in vals if v is not None]
            cols.append(pm(vals) if vals else "-")
        out.append(f"| {dataset}, {space}, {what} | {len(searches)} | " + " | ".join(cols) + " |")
    return "\n".join(out)


STRONG_LOSSES = ("scl_nl", "scl_exp", "fwd")


def losses_section(records) -> str:
    """Would the presets do better offering only the strong CLL losses? Random search on that
    smaller space is the pool's trials that drew one of them (the loss is drawn independently)."""
    out = ["## Random search with the presets' six CLL losses vs only " + ", ".join(STRONG_LOSSES), "",
           "| dataset, space | n trials | six losses: selected | searches | three losses: selected | searches |",
           "|---|---|---|---|---|---|"]
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (strategy, dataset, space, seed), rec in records.items():
        if strategy == "pool":
            by_cell.setdefault((dataset, space), []).append(rec)
    for (dataset, space), recs in sorted(by_cell.items()):
        for n in (8, 16, None):  # None: the whole pool, one search per seed (the 64-trial baseline's counterpart)
            cols = []
            sizes = []
            for keep in (None, STRONG_LOSSES):
                sel = []
                for rec in recs:
                    trials = [t for t in random_noes(rec) if keep is None or t["config"].get("loss") in keep]
                    size = n or len(trials)
                    sizes.append(len(trials))
                    for i in range(0, len(trials) - size + 1, size):
                        chosen = select(trials[i:i + size], rec["metric"], rec["mode"], rec["epochs"])
                        sel.append(chosen["test"][-1])
                cols += [pm(sel), str(len(sel))]
            label = str(n) if n else f"whole pool ({min(sizes)}-{max(sizes)})"
            out.append(f"| {dataset}, {space} | {label} | " + " | ".join(cols) + " |")
    return "\n".join(out)


def choices_section(records) -> str:
    """What the pools say about the presets' ranges: each categorical choice's trials."""
    out = ["## The presets' choices, seen in the random pools (final test accuracy of trials that made each choice)", "",
           "| dataset, space | parameter | choice | trials | median | best |", "|---|---|---|---|---|---|"]
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (strategy, dataset, space, seed), rec in records.items():
        if strategy == "pool":
            by_cell.setdefault((dataset, space), []).extend(rec["trials"])
    for (dataset, space), trials in sorted(by_cell.items()):
        for param in ("loss", "method", "mix_level"):
            groups: dict[str, list[float]] = {}
            for t in trials:
                if param in t["config"]:
                    groups.setdefault(str(t["config"][param]), []).append(t["test"][-1])
            for choice, accs in sorted(groups.items(), key=lambda kv: -statistics.median(kv[1])):
                out.append(f"| {dataset}, {space} | {param} | {choice} | {len(accs)} | "
                           f"{statistics.median(accs) * 100:.1f} | {max(accs) * 100:.1f} |")
    return "\n".join(out)


def plot(cells, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(cells)
    cols = 2
    rows_n = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(11, 3.8 * rows_n), squeeze=False)
    colours = {name: f"C{i}" for i, name in enumerate(STRATEGIES)}  # one colour per strategy in every panel
    for ax, key in zip(axes.flat, keys):
        cell = cells[key]
        for strategy in STRATEGIES:
            rows = table_rows(cell, strategy)
            if not rows:
                continue
            xs = [r["budget"] for r in rows]
            ms = [statistics.fmean(r["selected"]) * 100 for r in rows]
            ss = [(statistics.stdev(r["selected"]) * 100 if len(r["selected"]) > 1 else 0) for r in rows]
            ax.errorbar(xs, ms, yerr=ss, label=LABELS[strategy], color=colours[strategy], capsize=2, marker="o",
                        ms=3, alpha=0.85)
        ax.set_xscale("log")
        ax.set_title(f"{key[0]}, space {key[1]} (mean ± std over seeds)")
        ax.set_xlabel("trial-epochs (compute paid)")
        ax.set_ylabel("selected trial's test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--datasets", nargs="+", default=["digits", "mnist"])
    r.add_argument("--spaces", nargs="+", default=["icm", "all"])
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    r.add_argument("--strategies", nargs="+", default=["pool", "default16", "before16", "default", "tpe_noes", "gp_noes"],
                   choices=["pool", *[s for s, v in STRATEGIES.items() if v is not None]])
    r.add_argument("--trials", type=int, default=64, help="the pool's size")
    o = sub.add_parser("one")
    o.add_argument("strategy", choices=[s for s, v in STRATEGIES.items() if v is not None])
    o.add_argument("dataset")
    o.add_argument("space")
    o.add_argument("seed", type=int)
    o.add_argument("--trials", type=int, default=None, help="trials (default: the strategy's)")
    for p in (r, o):
        p.add_argument("--store", default=str(STORE))
        p.add_argument("--work", default="/tmp/mixtune-search-quality", help="search folders and MLflow store")
    rep = sub.add_parser("report")
    rep.add_argument("--store", default=str(STORE))
    rep.add_argument("--plot", default=str(ROOT / "docs" / "search_quality.png"))
    rep.add_argument("--out", default=str(STORE / "report.md"), help="the tables, as markdown")
    args = parser.parse_args(argv)
    return {"run": cmd_run, "one": cmd_one, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
