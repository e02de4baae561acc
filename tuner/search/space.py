"""A search's space: a preset or a YAML file, turned into a define-by-run function and dry-run.

The dry run samples the space 48 times with a throwaway Optuna study and builds a
`TrainConfig` from every sample, so a wrong space is a one-line error before Ray or MLflow
are touched.

A value given as a flag beside a space that searches it (`--alpha 0.5 --space icm`) is
fixed: the space no longer searches that parameter and every trial runs with the given
value (`PinnedSpace`), as a fixed value in Ray Tune's or Optuna's own spaces does. The
search's state keeps the pinned values in `space_doc["pinned"]` (a preset's document is
then `{preset: name, pinned: {...}}`), so a resume pins them again. A flag that contradicts
the space (a value it fixes otherwise, or a choice it does not offer: `--method mixup --space icm`)
is a one-line error, and so is a set of flags that leaves the space nothing to search.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from search_spaces.presets import SpaceContext, get_preset
from search_spaces.yaml_space import SpaceError, space_from_dict
from trainables.core.config import ConfigError, TrainConfig
from tuner.settings import SearchSettings, default_max_concurrent, default_name

# the data every trial of a search must share: a space that varied them would compare
# trials on different validation rows (and labels)
DATA_FIELDS = ("val_fraction", "data_seed", "dataset", "data_dir", "train_fraction", "labels", "cl_type",
               "num_cl", "cl_noise", "imbalance_ratio")


def load_space_file(path: str | os.PathLike) -> tuple[Any, Callable]:
    """A YAML space file: its parsed document (kept in mixtune.json) and its space function."""
    from trainables.core.files import read_yaml

    doc = read_yaml(path, SpaceError, "space file")
    return doc, space_from_dict(doc, str(path), allowed=TrainConfig.__dataclass_fields__)


class _PinnedTrial:
    """An Optuna trial (or Ray's captor of one) whose pinned parameters are not suggested: their
    `suggest_*` returns the given value, so a conditional space still branches on it."""

    def __init__(self, trial: Any, pinned: dict[str, Any]):
        self._trial, self._pinned = trial, pinned

    def _suggest(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self._pinned:
            return self._pinned[name]
        return getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._suggest("suggest_categorical", name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


class PinnedSpace:
    """A space with some of its parameters fixed to the user's values; picklable (Ray snapshots the searcher)."""

    def __init__(self, inner: Callable, pinned: dict[str, Any]):
        self.inner, self.pinned = inner, dict(pinned)

    def __call__(self, trial: Any) -> dict[str, Any]:
        fixed = self.inner(_PinnedTrial(trial, self.pinned)) or {}
        return {**fixed, **self.pinned}


def pinned_values(settings: SearchSettings) -> dict[str, Any]:
    """The values the user's flags fixed in place of the space's (empty: none)."""
    doc = settings.space_doc
    return dict(doc.get("pinned") or {}) if isinstance(doc, dict) else {}


def with_flags(space_doc: Any, space: str, given: dict[str, Any]) -> Any:
    """The space document a new search keeps, with the values given as flags to pin (narrowed at check)."""
    if not given:
        return space_doc
    return {**(space_doc if space_doc is not None else {"preset": space}), "pinned": dict(given)}


def search_settings(space: str, base: dict[str, Any], given: dict[str, Any], name: str | None = None,
                    **options: Any) -> SearchSettings:
    """The settings of a search of `space` (a preset's name or a YAML file) over `base` (TrainConfig
    values): the one builder `mixtune search` (tuner/commands.py) and `mixtune.search` both call.

    given: the TrainConfig values the user gave beside the space (flags, keywords): those the
    space searches are pinned. options: SearchSettings fields; `max_concurrent` None (or left
    out) is as many trials as the CPUs hold. A bad space file fails here, in one line.
    """
    space_doc = None
    if space.endswith((".yaml", ".yml")) or os.path.sep in space:
        space_doc, _ = load_space_file(space)
    space_doc = with_flags(space_doc, space, given)
    if options.get("max_concurrent") is None:
        per_trial = options.get("cpus_per_trial", SearchSettings.__dataclass_fields__["cpus_per_trial"].default)
        options["max_concurrent"] = default_max_concurrent(options.get("num_cpus"), per_trial)
    return SearchSettings(name=name or default_name(space, base), space=space, space_doc=space_doc, base=base,
                          **options)


def pin(space: Callable, settings: SearchSettings) -> Callable:
    """Fix the parameters the space searches that flags gave; keep only those in the search's state."""
    from tuner.search.warmstart import FROM_BASE, space_distributions

    request = pinned_values(settings)
    if not request:
        return space
    dists, fixed = space_distributions(space)
    for name, value in request.items():
        if name in fixed and name not in dists and FROM_BASE not in fixed[name] and value not in fixed[name]:
            shown = ", ".join(map(str, fixed[name]))
            raise SpaceError(f"--{name} {value} contradicts space {settings.space}, which fixes {name}={shown}; "
                             f"drop the flag or use a space that searches {name}")
    for name, value in request.items():
        choices = getattr(dists.get(name), "choices", None)  # a categorical: its branches are the space's
        if choices is not None and value not in choices:
            shown = ", ".join(map(str, choices))
            raise SpaceError(f"--{name} {value} contradicts space {settings.space}, which searches {name} among "
                             f"{shown}; pick one of them or use a space that offers {value}")
    pinned = {k: v for k, v in request.items() if k in dists}
    doc = {k: v for k, v in settings.space_doc.items() if k != "pinned"}
    if pinned:
        doc["pinned"] = pinned
    settings.space_doc = None if doc.keys() == {"preset"} else doc
    if not pinned:
        return space
    space = PinnedSpace(space, pinned)
    left, _ = space_distributions(space)
    if not left:
        flags = " ".join(f"--{k} {v}" for k, v in pinned.items())
        raise SpaceError(f"{flags} fix every parameter space {settings.space} searches: nothing is left to "
                         "search; train the config with `mixtune train`, or drop a flag")
    return space


def pinned_note(settings: SearchSettings) -> str | None:
    """One line saying which values the user's flags fixed in place of the space's."""
    pinned = pinned_values(settings)
    if not pinned:
        return None
    shown = ", ".join(f"{k}={v}" for k, v in pinned.items())
    return f"fixed by your flags: {shown} (space {settings.space} searches {'them' if len(pinned) > 1 else 'it'}; " \
           "your value holds in every trial)"


def build_space(settings: SearchSettings, n_train: int, num_classes: int | None = None,
                min_side: int | None = None) -> Callable:
    """The define-by-run function, validated by a dry run against TrainConfig.

    min_side: the images' shorter side (1 for tabular rows): the presets offer CutMix only
    where it can cut a box (16 pixels or more); None, unknown: not offered.

    Values pinned by flags (`space_doc["pinned"]`) are taken out of the space; the state's
    document is narrowed to the parameters the space searches.
    """
    ctx = SpaceContext(labels=settings.base.get("labels", "complementary"), max_k=max(2, n_train // 2),
                       min_side=min_side)
    doc = settings.space_doc
    if doc is not None and not (isinstance(doc, dict) and "preset" in doc):
        doc = {k: v for k, v in doc.items() if k != "pinned"} if isinstance(doc, dict) else doc
        space = space_from_dict(doc, settings.space, allowed=TrainConfig.__dataclass_fields__)
    else:
        try:
            space = get_preset(settings.space, ctx)
        except ValueError as e:
            raise SpaceError(str(e)) from None
    space = pin(space, settings)
    dry_run(space, settings, n_train, num_classes)
    return space


def dry_run(space: Callable, settings: SearchSettings, n_train: int, num_classes: int | None = None,
            trials: int = 48) -> None:
    """Sample the space with a throwaway study; every sample must make a valid TrainConfig."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    where = settings.space
    for _ in range(trials):
        trial = study.ask()
        try:
            fixed = space(trial) or {}
        except (ValueError, TypeError) as e:
            raise SpaceError(f"{where}: {e}") from None
        shared = sorted(set(DATA_FIELDS) & (set(trial.params) | set(fixed)))
        if shared:
            raise SpaceError(f"{where}: {', '.join(shared)} define the data every trial shares (its validation "
                             "split and labels); set them with flags or --config, not in the space")
        values = {**settings.base, **trial.params, **fixed}
        try:
            cfg = TrainConfig.from_dict(values)
        except ConfigError as e:
            raise SpaceError(f"{where}: a sampled point is not a valid config: {e}") from None
        # what depends on the data: checked here, not by a trial hours into the search
        for name, dist in trial.distributions.items():
            high = getattr(dist, "high", None)
            if name == "k" and high is not None and high > n_train:
                raise SpaceError(f"{where}: k goes up to {high}, more than the {n_train} training examples")
        fixed_k = "k" not in trial.distributions
        if cfg.method_spec.pairing == "cluster" and cfg.k > n_train:
            what = f"k={cfg.k}" if fixed_k else f"{where}: a sampled k={cfg.k}"
            raise SpaceError(f"{what} is larger than the training set ({n_train} examples)")
        if (num_classes and cfg.labels == "complementary" and cfg.cl_type == "multiple"
                and cfg.num_cl > num_classes - 1):
            raise SpaceError(f"num_cl={cfg.num_cl} must be <= {num_classes - 1} (classes - 1) for {cfg.dataset}")
        study.tell(trial, 0.0)
