"""Every method tuned alike: the same search for each, selected on validation, retrained on fresh seeds.

For each dataset and label kind, every method gets the same search: its own preset
parameters (`search_spaces/presets.py`: the same ranges the tuner searches) plus lr and
weight decay, the same number of trials, Optuna's TPE with the same seed, each trial trained
to the profile's (converged) budget on data_seed 0 with training seed 0. The search selects
on the final-epoch value of `default_metric(labels)` (a validation metric: complementary
labels read only the validation split's complementary labels), never on test labels. The
selected config is then retrained on `profile.tune_seeds` (training seeds other than the
search's, same data) and tested.

Methods: complementary labels: none, mixup, icm (loss fixed to SCL-NL for all three, so the
methods differ only by their own parameters); ordinary labels: none, mixup, multimix,
infinite_class (cross-entropy).

No Ray: the searches run in-process around `fit` (the runner's), one trial at a time. Every
trial's metrics are in the run store keyed by its config, and TPE with a fixed seed proposes
the same trial after the same told values, so a rerun replays the study from the store and
resumes at the first trial not yet trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from search_spaces import presets
from trainables.core.metric_table import default_metric, get_metric

from .runner import Runner, compare, mean_std, pm
from .suites import Section, Table, _verdict

SEARCH_SEED = 0  # TPE's seed, the same for every search
TRAIN_SEED = 0  # the training seed of every trial; retraining uses profile.tune_seeds


# Per-method spaces from the presets' own pieces, so the ranges are the tuner's. Each returns
# the constants that complete the config.
def _none(trial, ctx) -> dict[str, Any]:
    presets._shared(trial)
    return {"method": "none"}


def _mixup(trial, ctx) -> dict[str, Any]:
    presets._alpha(trial)
    presets._shared(trial)
    return {"method": "mixup"}


def _icm(trial, ctx) -> dict[str, Any]:
    presets._k(trial, ctx)
    presets._alpha(trial)
    presets._shared(trial)
    return {"method": "icm"}


def _multimix(trial, ctx) -> dict[str, Any]:
    return presets.multimix(trial, ctx)  # K, alpha, mix_level, lr, weight decay; loss ce


def _infinite_class(trial, ctx) -> dict[str, Any]:
    return presets.infinite_class(trial, ctx)  # alpha, contrastive weight and balance, lr, weight decay


SPACES: dict[str, dict[str, Callable[..., dict[str, Any]]]] = {
    "complementary": {"none": _none, "mixup": _mixup, "icm": _icm},
    "ordinary": {"none": _none, "mixup": _mixup, "multimix": _multimix, "infinite_class": _infinite_class},
}
FIXED = {"complementary": {"loss": "scl_nl"}, "ordinary": {"loss": "ce"}}


def search(r: Runner, dataset: str, labels: str, method: str) -> dict[str, Any]:
    """One seeded TPE search of `method`'s space; every trial trained to the profile's budget.

    Returns the trials (params, the selection metric, test_acc for reference) and the selected one.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = default_metric(labels)
    mode = get_metric(metric).mode
    base = r.base(dataset, labels=labels, seed=TRAIN_SEED, data_seed=0, **FIXED[labels])
    n_train = len(r.dataset(base).x_train) * (1 - base.val_fraction)
    ctx = presets.SpaceContext(labels=labels, max_k=max(2, int(n_train) // 2))
    space = SPACES[labels][method]
    sampler = optuna.samplers.TPESampler(seed=SEARCH_SEED, n_startup_trials=max(1, r.profile.tune_trials // 2))
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize", sampler=sampler)
    trials = []
    for _ in range(r.profile.tune_trials):
        trial = study.ask()
        fixed = space(trial, ctx) or {}
        params = {**trial.params, **fixed}
        cfg = base.replace(**params)
        final = r.run(cfg)
        study.tell(trial, final[metric])
        trials.append({"params": trial.params, "config": params, metric: final[metric], "test_acc": final["test_acc"]})
    pick = (min if mode == "min" else max)(range(len(trials)), key=lambda i: trials[i][metric])
    return {"metric": metric, "mode": mode, "trials": trials, "selected": pick, "base": base}


def _fmt(params: dict[str, Any]) -> str:
    out = []
    for k in sorted(params):
        v = params[k]
        out.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(out)


def tuned_section(r: Runner, out: Path) -> Section:
    p = r.profile
    sec = Section(
        "Every method tuned alike",
        f"For each dataset and label kind, each method gets the same search: its preset parameters (the ranges of "
        f"`search_spaces/presets.py`) plus lr (log 1e-4..1e-2) and weight decay (log 1e-6..1e-3), {p.tune_trials} "
        f"trials, Optuna TPE (seed {SEARCH_SEED}, the first {max(1, p.tune_trials // 2)} trials random), run "
        f"in-process around `fit` without Ray. Every trial trains to the profile's budget (epochs: complementary "
        f"{p.cll_epochs}, ordinary {p.ord_epochs}; MLP {p.hidden}-{p.hidden}, batch {p.batch_size}) on data_seed 0 "
        f"with training seed {TRAIN_SEED}; the search selects on the final-epoch validation metric "
        f"(`default_metric`: {default_metric('complementary')} for complementary labels, computed from the "
        f"validation split's complementary labels alone; {default_metric('ordinary')} for ordinary labels), never "
        f"on test labels. Complementary labels: SCL-NL for every method. The selected config is retrained on "
        f"training seeds {list(p.tune_seeds)} (the same data: data_seed 0) and tested; the spread is the training "
        "seed's. Gaps are to the best other method (by mean), with the verdict (2 SE).",
    )
    for labels in ("complementary", "ordinary"):
        rows = []
        for ds in p.datasets:
            results: dict[str, dict[str, Any]] = {}
            tested: dict[str, list[float]] = {}
            for method in SPACES[labels]:
                res = search(r, ds, labels, method)
                chosen = res["trials"][res["selected"]]
                cfg = res["base"].replace(**chosen["config"])
                tested[method] = [r.run(cfg.replace(seed=s))["test_acc"] for s in p.tune_seeds]
                results[method] = res
            for method, res in results.items():
                chosen = res["trials"][res["selected"]]
                others = [m for m in tested if m != method]
                best_other = max(others, key=lambda m: mean_std(tested[m])[0])
                diff, word = compare(tested[method], tested[best_other])
                oracle = max(t["test_acc"] for t in res["trials"])
                rows.append([
                    ds, method, str(len(res["trials"])), _fmt(chosen["params"]) or "–",
                    f"{chosen[res['metric']]:.4f}", pm(tested[method]),
                    f"{best_other}: {diff * 100:+.1f} ({_verdict(word)})",
                    f"{chosen['test_acc'] * 100:.1f} / {oracle * 100:.1f}",
                ])  # fmt: skip
                if method not in ("none",):
                    sec.claims.append((
                        f"tuned alike: {method} beats the best other method", f"{ds}, {labels}",
                        f"{diff * 100:+.1f} ({_verdict(word)})",
                    ))  # fmt: skip
            winner = max(tested, key=lambda m: mean_std(tested[m])[0])
            runner_up = max((m for m in tested if m != winner), key=lambda m: mean_std(tested[m])[0])
            diff, word = compare(tested[winner], tested[runner_up])
            sec.reading.append(
                f"**{ds}, {labels} labels**: the best tuned method is {winner} ({pm(tested[winner])}), ahead of "
                f"{runner_up} by {diff * 100:+.1f} points ({_verdict(word)})."
                + _method_note(labels, tested)
            )
        metric = default_metric(labels)
        sec.tables.append(Table(
            f"{labels.capitalize()} labels: the selected config of each method's search, its validation metric "
            f"({metric}, final epoch, seed {TRAIN_SEED}), its test accuracy (%) retrained on seeds {list(p.tune_seeds)}, "
            "and the gap to the best other method. The last column is for reference only (it reads test labels, "
            "nothing selects on it): the selected trial's own test accuracy and the best test accuracy among the "
            "search's trials",
            ["dataset", "method", "trials", "selected config", metric, "test acc", "gap to best other (verdict)",
             "selected / best trial test acc"],
            rows,
        ))  # fmt: skip
    return sec


def _method_note(labels: str, tested: dict[str, list[float]]) -> str:
    """The one comparison each paper claims, said plainly."""
    if labels == "complementary":
        diff, word = compare(tested["icm"], tested["none"])
        d2, w2 = compare(tested["icm"], tested["mixup"])
        return (
            f" ICM − none {diff * 100:+.1f} ({_verdict(word)}), ICM − mixup {d2 * 100:+.1f} ({_verdict(w2)})"
            + (": with the same tuning effort ICM does not beat training without mixing." if word in ("tie", "worse") else ".")
        )
    parts = []
    for m in ("multimix", "infinite_class"):
        diff, word = compare(tested[m], tested["mixup"])
        parts.append(f"{m} − mixup {diff * 100:+.1f} ({_verdict(word)})")
    return " " + "; ".join(parts) + "."
