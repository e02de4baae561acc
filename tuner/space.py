"""A search's space: a preset or a YAML file, turned into a define-by-run function and dry-run.

The dry run samples the space 48 times with a throwaway Optuna study and builds a
`TrainConfig` from every sample, so a wrong space is a one-line error before Ray or MLflow
are touched.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from search_spaces.presets import SpaceContext, get_preset
from search_spaces.yaml_space import SpaceError, space_from_dict
from trainables.core.config import ConfigError, TrainConfig
from tuner.settings import SearchSettings

# the data every trial of a search must share: a space that varied them would compare
# trials on different validation rows (and labels)
DATA_FIELDS = ("val_fraction", "data_seed", "dataset", "data_dir", "train_fraction", "labels", "cl_type",
               "num_cl", "cl_noise", "imbalance_ratio")


def load_space_file(path: str | os.PathLike) -> tuple[Any, Callable]:
    """A YAML space file: its parsed document (kept in mixtune.json) and its space function."""
    from trainables.core.files import read_yaml

    doc = read_yaml(path, SpaceError, "space file")
    return doc, space_from_dict(doc, str(path), allowed=TrainConfig.__dataclass_fields__)


def build_space(settings: SearchSettings, n_train: int, num_classes: int | None = None) -> Callable:
    """The define-by-run function, validated by a dry run against TrainConfig."""
    ctx = SpaceContext(labels=settings.base.get("labels", "complementary"), max_k=max(2, n_train // 2))
    if settings.space_doc is not None:
        space = space_from_dict(settings.space_doc, settings.space, allowed=TrainConfig.__dataclass_fields__)
    else:
        try:
            space = get_preset(settings.space, ctx)
        except ValueError as e:
            raise SpaceError(str(e)) from None
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
