"""Keyword arguments -> `SearchSettings`: what `mixtune search --flag value ...` builds, from Python.

A keyword is either a search option (a `SearchSettings` field: `num_samples`, `metric`,
`sampler`, `scheduler`, `results_dir`, ...) or a `TrainConfig` field given as a fixed value
(`dataset="digits"`, `epochs=3`), exactly as a flag is on the command line: a fixed value
the space searches is pinned (every trial uses it), and `config=` (a TrainConfig, a dict
or a YAML file, as `--config`) is the base the space varies. `seed` is the training seed,
as `--seed`; the sampler's seed is `search_seed`, as `--search-seed`.

The defaults are `SearchSettings`' own, but for `max_concurrent`, which both size to the CPUs:
the settings themselves are built by `tuner.search.space.search_settings`, as the CLI's are.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import types
import typing
from typing import Any

from mixtune.errors import MixtuneError
from trainables.core.config import TrainConfig, field_types
from tuner.settings import SearchSettings

# SearchSettings fields a search fills in itself (or takes as `space=` / `config=`)
INTERNAL = ("space", "base", "space_doc", "data", "parent_run_id", "experiment_id", "created")
RENAMED = {"search_seed": "seed"}  # `seed` is TrainConfig's (the training seed), as on the CLI
EXTRA = {"warm_start_other_data": bool}  # a flag read when the search plans its warm start, not saved


@functools.cache
def search_options() -> dict[str, Any]:
    """The search's keyword arguments and their types (from SearchSettings' annotations)."""
    hints = typing.get_type_hints(SearchSettings)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(SearchSettings) if f.name not in INTERNAL}
    for new, old in RENAMED.items():
        fields[new] = fields.pop(old)
    return {**fields, **EXTRA}


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` has the annotated type (int counts as float; bool is not an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return isinstance(value, hint)


def _plain(value: Any) -> Any:
    """Paths as strings, tuples as lists: what the settings (saved as JSON) hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if typing.get_args(hint) else hint.__name__


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(search options, TrainConfig fields) from the keyword arguments; an unknown or mistyped one is one line."""
    known, fields = search_options(), field_types()
    search: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in options.items():
        value = _plain(value)
        if key == "name" and value is None:
            continue  # the default name
        if key in known:
            if key == "warm_start" and isinstance(value, str):
                value = [value]  # one earlier search or exported config
            if not _fits(value, known[key]):
                raise MixtuneError(f"{key}={value!r} must be {_type_name(known[key])}")
            search[RENAMED.get(key, key)] = float(value) if known[key] is float else value
        elif key in fields:
            train[key] = value  # TrainConfig checks its own types and values
        else:
            near = difflib.get_close_matches(key, [*known, *fields, "space", "config", "verbose"], n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise MixtuneError(f"unknown argument {key}{hint}: search takes space, config, verbose, the search "
                               f"options ({', '.join(known)}) and any TrainConfig field as a fixed value")
    return search, train


def base_values(config: TrainConfig | dict[str, Any] | str | os.PathLike | None) -> tuple[dict[str, Any], str]:
    """The TrainConfig values `config=` gives (as `--config`), and what to call them in an error."""
    if config is None:
        return {}, "arguments"
    if isinstance(config, TrainConfig):
        return config.to_dict(), "config"
    if isinstance(config, dict):
        return dict(config), "config"
    if isinstance(config, (str, os.PathLike)):
        return TrainConfig.from_yaml(config).to_dict(), str(config)
    raise MixtuneError(f"config must be a TrainConfig, a dict or a YAML file's path, not {type(config).__name__}")


def train_config(config: Any, changes: dict[str, Any]) -> TrainConfig:
    """`config` (TrainConfig, dict, YAML path or None: the defaults) with `changes` on top, validated."""
    values, source = base_values(config)
    values.update({k: _plain(v) for k, v in changes.items()})
    return TrainConfig.from_dict(values, source=source)


def build_settings(space: str | os.PathLike, config: Any, options: dict[str, Any]) -> SearchSettings:
    """The SearchSettings `mixtune search` builds from the same flags: both call
    `tuner.search.space.search_settings`."""
    from tuner.search.space import search_settings

    if not isinstance(space, (str, os.PathLike)):
        raise MixtuneError(f"space must be a preset name or a YAML file's path, not {type(space).__name__}")
    search, fixed = split_options(options)
    base = train_config(config, fixed).to_dict()
    return search_settings(os.fspath(space), base, {k: base[k] for k in fixed}, **search)


def argument_names() -> list[str]:
    """Every keyword the API's functions take: error messages name these instead of flags."""
    return [*search_options(), *field_types(), "space", "config", "sort", "top", "method", "pareto", "trial",
            "within", "source", "tracking_uri", "results_dir"]

