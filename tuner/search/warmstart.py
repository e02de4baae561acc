"""`mixtune search --warm-start ...`: begin a search from what earlier searches and configs know.

Two sources, planned (and checked) before anything is written, applied when the search starts:

* an earlier search (its folder or its name under the results folder): its finished Optuna
  trials become prior observations of the new study (`Study.add_trials`), so TPE starts from
  them instead of relearning them. The searches must select on the same metric(s), and every
  earlier parameter must lie in the new space (same name, value inside the new range or
  among its choices);
* exported configs (`mixtune export-best` YAML files): their searched parameters are
  evaluated first (`enqueue_trial`, Ray's `points_to_evaluate`).

Parameters the spaces do not share are a one-line error listing them, or, with
`--warm-start-partial`, dropped with one line saying which. An earlier search must have
used the same data (its dataset's content digest, `mlflow_meta.data_digest`: the arrays and
the label and split settings): another data set's values are no evidence about this one,
so it is a one-line error unless `--warm-start-other-data` asks for them anyway. Optuna's sampler sees the prior
trials as ordinary COMPLETE trials tagged `mixtune.warm_start`; Ray does not run them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainables.core.config import TrainConfig
from tuner import compat
from tuner.tracking.mlflow_meta import data_digest, data_settings
from tuner.settings import SearchError, SearchSettings, find_search

# fields that say where and how fast a config ran, not what it is: never a reason to refuse
NEUTRAL_FIELDS = ("data_dir", "cache_dir", "device", "num_threads", "precision", "compile")
WARM_TAG = "mixtune.warm_start"


@dataclass
class WarmStart:
    """What a search starts from: prior trials for the study, points to evaluate first, notes to print."""

    prior: list[Any] = field(default_factory=list)  # optuna FrozenTrial, ready for Study.add_trials
    points: list[dict[str, Any]] = field(default_factory=list)  # searched params of exported configs
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.prior or self.points)


class _FromBase:
    def __repr__(self) -> str:
        return "FROM_BASE"


FROM_BASE = _FromBase()
"""In `space_distributions`' fixed values: some branches leave the field to the search's base config."""


def space_distributions(space: Callable, samples: int = 96) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Every parameter the define-by-run space can suggest with its distribution (all branches),
    and the values it fixes (a preset's method, an ordinary loss) with every value it fixes them to;
    a value only some branches fix (the `icm` preset's self pairing) also lists FROM_BASE."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dists: dict[str, Any] = {}
    fixed: dict[str, list[Any]] = {}
    times: dict[str, int] = {}
    for _ in range(samples):
        trial = study.ask()
        for name, value in (space(trial) or {}).items():
            times[name] = times.get(name, 0) + 1
            if value not in fixed.setdefault(name, []):
                fixed[name].append(value)
        dists.update(trial.distributions)
        study.tell(trial, 0.0)
    for name, n in times.items():
        if n < samples:
            fixed[name].append(FROM_BASE)
    return dists, fixed


def fixed_values(fixed: dict[str, list[Any]], name: str, base: dict[str, Any]) -> list[Any]:
    """The values a search's trials can have for `name`, a field its space does not suggest."""
    return [base.get(name) if v is FROM_BASE else v for v in fixed.get(name, [FROM_BASE])]


def _contains(dist, value: Any) -> bool:
    return compat.distribution_contains(dist, value)


def _fit(params: dict[str, Any], dists: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the params the new space holds, the names it does not: unknown, or outside its range)."""
    kept, foreign = {}, []
    for name, value in params.items():
        if name in dists and _contains(dists[name], value):
            kept[name] = value
        else:
            foreign.append(f"{name}={value!r}" + ("" if name not in dists else " (outside the new range)"))
    return kept, foreign


def _refuse_or_drop(what: str, foreign: list[str], partial: bool, notes: list[str]) -> None:
    if not foreign:
        return
    if not partial:
        raise SearchError(f"--warm-start {what}: the spaces do not share {', '.join(sorted(foreign))}; "
                          "use --warm-start-partial to drop them")
    notes.append(f"warm start from {what}: dropped {', '.join(sorted(foreign))} (not in this search's space)")


def data_identity(settings: SearchSettings) -> tuple[str, str] | None:
    """(name, digest) of the data a search used; None when its state records none (not checked yet)."""
    data = settings.data
    if not data or not data.get("fingerprint"):
        return None
    return str(data.get("name")), data_digest(data["fingerprint"], settings.base)


def _data_difference(earlier: SearchSettings, settings: SearchSettings) -> str:
    """What differs between two searches' data, in words (for the refusal)."""
    a, b = earlier.data or {}, settings.data or {}
    if a.get("name") != b.get("name"):
        return f"{a.get('name')} vs {b.get('name')}"
    if a.get("fingerprint") != b.get("fingerprint"):
        return f"other contents of {a.get('name')}"
    sa, sb = data_settings(earlier.base), data_settings(settings.base)
    return ", ".join(f"{k}={sa.get(k)!r} vs {sb.get(k)!r}" for k in sb if sa.get(k) != sb.get(k)) or "other settings"


def check_same_data(earlier: SearchSettings, settings: SearchSettings, other_data: bool, notes: list[str]) -> None:
    """An earlier search's trials are evidence only about the data it ran on: refuse others unless asked."""
    mine = data_identity(settings)
    if mine is None:
        return  # this search's data is not known yet (planning outside check_search)
    theirs = data_identity(earlier)
    if theirs == mine:
        return
    if theirs is None:
        why = f"{earlier.name} records no data identity (made by an older mixtune)"
    else:
        why = (f"{earlier.name} ran on other data ({_data_difference(earlier, settings)}; "
               f"digest {theirs[1]} vs {mine[1]})")
    if not other_data:
        raise SearchError(f"--warm-start {earlier.name}: {why}: its values are no evidence for this data; "
                          "give --warm-start-other-data to use them anyway")
    notes.append(f"warm start from {why}: used anyway (--warm-start-other-data)")


def _from_search(folder: Path, settings: SearchSettings, dists: dict[str, Any], partial: bool,
                 notes: list[str], other_data: bool = False) -> list[Any]:
    import optuna

    earlier = SearchSettings.load(folder)
    if earlier.name == settings.name:
        raise SearchError(f"--warm-start {folder}: a search cannot warm-start from itself")
    if (earlier.metric, earlier.mode) != (settings.metric, settings.mode):
        raise SearchError(f"--warm-start {earlier.name} selected on {earlier.metric} ({earlier.mode}); this search "
                          f"selects on {settings.metric} ({settings.mode}): give --metric {earlier.metric} to reuse it")
    check_same_data(earlier, settings, other_data, notes)
    study = optuna.load_study(study_name=earlier.study_name, storage=earlier.study_storage)
    # PRUNED: stopped by ASHA; they stay PRUNED with their values per epoch, which TPE ranks below
    # every finished trial (a 2-epoch value is no finished trial's equal)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = [t for t in study.trials if t.state in finished and t.values is not None]
    prior, dropped = [], set()
    for t in done:
        kept, foreign = _fit(t.params, dists)
        if foreign and not partial:
            _refuse_or_drop(earlier.name, foreign, partial, notes)  # raises
        dropped.update(f.split("=")[0] for f in foreign)
        prior.append(optuna.trial.create_trial(
            params=kept, distributions={k: dists[k] for k in kept}, state=t.state,
            values=t.values, intermediate_values=t.intermediate_values,
            user_attrs={WARM_TAG: f"{earlier.name}#{t.number}"}))
    if dropped:
        notes.append(f"warm start from {earlier.name}: dropped {', '.join(sorted(dropped))} (not in this search's space)")
    notes.append(f"warm start: {len(prior)} finished trials of {earlier.name} added to the study as prior observations")
    return prior


def _from_config(path: Path, settings: SearchSettings, dists: dict[str, Any], fixed: dict[str, list[Any]],
                 partial: bool, notes: list[str]) -> dict[str, Any]:
    cfg = TrainConfig.from_yaml(path).to_dict()
    base = settings.base
    searched = {k: v for k, v in cfg.items() if k in dists}
    kept, foreign = _fit(searched, dists)
    # what the config fixes differently from this search and the space cannot vary
    foreign += [f"{k}={v!r}" for k, v in cfg.items()
                if k not in dists and k not in NEUTRAL_FIELDS and v not in fixed_values(fixed, k, base)]
    _refuse_or_drop(str(path), foreign, partial, notes)
    notes.append(f"warm start: {path.name} is evaluated first ({', '.join(f'{k}={v}' for k, v in kept.items())})")
    return kept


def plan(refs: list[str], settings: SearchSettings, space: Callable, partial: bool = False,
         other_data: bool | None = None) -> WarmStart:
    """Check every --warm-start reference against this search; nothing is written.

    other_data: accept earlier searches on other data (`--warm-start-other-data`); None reads
    the search's `warm_start_other_data` (set by the CLI; not part of the saved state).
    """
    if other_data is None:
        other_data = bool(getattr(settings, "warm_start_other_data", False))
    out = WarmStart()
    if not refs:
        return out
    dists, fixed = space_distributions(space)
    for ref in refs:
        path = Path(ref)
        if ref.endswith((".yaml", ".yml")):
            if not path.is_file():
                raise SearchError(f"--warm-start {ref}: no such config file")
            out.points.append(_from_config(path, settings, dists, fixed, partial, out.notes))
        else:
            folder = find_search(ref, settings.results_dir)
            out.prior += _from_search(folder, settings, dists, partial, out.notes, other_data)
        out.sources.append(ref)
    return out


def apply(warm: WarmStart, settings: SearchSettings) -> None:
    """Create the new search's study holding the prior trials (Ray's OptunaSearch then loads it)."""
    if not warm.prior:
        return
    import optuna

    modes = settings.mode.split(",")
    study = optuna.create_study(
        study_name=settings.study_name, storage=settings.study_storage, load_if_exists=True,
        directions=["maximize" if m == "max" else "minimize" for m in modes])
    study.add_trials(warm.prior)
