"""The API's functions: search, resume, load, compare, export_best, fit.

Each calls what the matching `mixtune` command calls (tuner/commands.py): `search` builds
the SearchSettings `mixtune search` builds and runs `tuner.execution.execute.run_search`; `resume`
runs `resume_search`; `export_best` is `tuner.report.export.export_best`; `fit` is the core's
`fit` after the data is loaded, as `mixtune train` does. What the CLI prints goes through
an echo: quiet by default (the lines are kept in `result.messages` and logged to the
`mixtune` logger at INFO), printed with `verbose=True`, or handed to `verbose=callable`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from mixtune.errors import MixtuneError, one_line_errors
from mixtune.options import argument_names, build_settings, train_config
from mixtune.result import SearchResult, from_folder, from_outcome
from trainables.core.config import TrainConfig
from tuner.settings import STATE_FILE, SearchSettings, find_search

if TYPE_CHECKING:
    import pandas as pd

    from trainables.core.data import Dataset
    from trainables.core.fit import FitResult

log = logging.getLogger("mixtune")

RESULTS_DIR = {f.name: f.default for f in dataclasses.fields(SearchSettings)}["results_dir"]
Verbose = Union[bool, Callable[[str], None]]
Search = Union[str, os.PathLike, SearchResult]  # a search's folder, its name under results_dir, or a result


def _echo(verbose: Verbose, lines: list[str]) -> Callable[[str], None]:
    if not isinstance(verbose, bool) and not callable(verbose):
        raise MixtuneError(f"verbose must be True, False or a function taking one line, not {verbose!r}")

    def echo(line: str) -> None:
        lines.append(line)
        log.info(line)
        if verbose is True:
            print(line, flush=True)
        elif callable(verbose):
            verbose(line)

    return echo


def _settings(search: Search, results_dir: str | os.PathLike) -> SearchSettings:
    """The saved settings of a search given as its folder, its name or its result."""
    if isinstance(search, SearchResult):
        search = search.folder
    if not isinstance(search, (str, os.PathLike)):
        raise MixtuneError(f"a search is its folder, its name or its SearchResult, not {type(search).__name__}")
    return SearchSettings.load(find_search(os.fspath(search), os.fspath(results_dir)))


# ----------------------------------------------------------------------------- search
def search(space: str | os.PathLike = "all", *, config: TrainConfig | dict | str | os.PathLike | None = None,
           verbose: Verbose = False, summary: str = "wait", **options: Any) -> SearchResult:
    """Run a new search, as `mixtune search`; returns its trials and best config when every trial has ended.

    space: a preset (icm, multimix, infinite_class, all) or a YAML space file.
    config: the TrainConfig the space varies (a TrainConfig, a dict of its fields or a YAML file).
    options: the search's options, named as SearchSettings' fields and the CLI's flags
        (num_samples=16, metric, mode, sampler="tpe", scheduler="asha", max_concurrent, num_cpus,
        name, results_dir, tracking_uri, experiment, warm_start, search_seed, ...), and any
        TrainConfig field as a fixed value (dataset="digits", epochs=3): every trial uses it, and a
        space that searches it no longer does.
    verbose: print the CLI's progress lines and summary (or pass each line to a function).
    summary: "wait" (default): the search's MLflow summary (parent run metrics, plots, the best
        model) is sent before this returns; "background": by a `mixtune sync` process of its
        own, as the CLI does by default (its pid and log are the result's last message).

    Ray is started for the search (num_cpus of it) and stopped after it, unless this process
    runs one already (`ray.init` before: the search uses it and leaves it running).
    Bad arguments raise `MixtuneError` (one line) before anything is created or started.
    """
    from tuner.execution.execute import run_search

    lines: list[str] = []
    echo = _echo(verbose, lines)
    with one_line_errors(argument_names()):
        settings = build_settings(space, config, options)
        try:
            outcome = run_search(settings, echo, summary=summary)
        except KeyboardInterrupt:
            _say_stopped(settings, verbose)
            raise
        return _finish(settings, outcome, lines, echo)


def _finish(settings: SearchSettings, outcome, lines: list[str], echo) -> SearchResult:
    """The result; a summary held for the background gets its sender now (the search's lock is free)."""
    from tuner.execution.sync import send_held_summary

    result = from_outcome(settings, outcome, lines, echo)
    line = send_held_summary(settings, outcome.summary_held)
    if line:
        echo(line)
    return result


def _say_stopped(settings: SearchSettings, verbose: Verbose) -> None:
    """An interrupted search is resumable: say how, also when quiet (the echoed line said it in CLI words)."""
    if verbose is not True and (settings.folder / STATE_FILE).exists():
        print(f"mixtune: search {settings.name} stopped; continue it with mixtune.resume({str(settings.folder)!r})",
              file=sys.stderr)


def resume(search: Search, *, results_dir: str | os.PathLike = RESULTS_DIR, verbose: Verbose = False,
           summary: str = "wait") -> SearchResult:
    """Continue a search whose driver stopped, as `mixtune resume`; a finished one is only read back."""
    from tuner.execution.execute import resume_search

    lines: list[str] = []
    echo = _echo(verbose, lines)
    with one_line_errors(argument_names()):
        settings = _settings(search, results_dir)
        try:
            outcome = resume_search(settings, echo, summary=summary)
        except KeyboardInterrupt:
            _say_stopped(settings, verbose)
            raise
        if outcome is None:  # it had finished (and said so): its results as they are
            return from_folder(settings, lines)
        return _finish(settings, outcome, lines, echo)


def load(search: Search, *, results_dir: str | os.PathLike = RESULTS_DIR) -> SearchResult:
    """A finished search's result, read from its folder (no Ray runtime, nothing written)."""
    from tuner.execution.execute import finished

    with one_line_errors(argument_names()):
        settings = _settings(search, results_dir)
        if finished(settings) is None:
            raise MixtuneError(f"search {settings.name} has not finished; continue it with "
                               f"mixtune.resume({str(settings.folder)!r})")
        return from_folder(settings, [])


# ----------------------------------------------------------------------------- compare, export
def compare(search: Search, *, method: str | None = None, sort: str | None = None, top: int | None = None,
            pareto: bool = False, tracking_uri: str | None = None,
            results_dir: str | os.PathLike = RESULTS_DIR) -> pd.DataFrame:
    """The trials of a search as MLflow has them, best first, as `mixtune compare` shows them.

    One row per trial run: trial, state, run_id, the searched values (typed) and every metric
    any trial reported. method: only its trials; sort: the metric to sort by (default: the
    search's); top: the first rows only; pareto: only the Pareto front (several metrics).
    """
    import pandas as pd

    from trainables.core.config import field_types
    from tuner.tracking import callback as tracking
    from tuner.report.compare import compared_runs
    from tuner.report.export import parse_param

    with one_line_errors(argument_names()):
        settings = _settings(search, results_dir)
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
            raise MixtuneError(f"top={top!r} must be a whole number >= 0 (or None: every trial)")
        runs, sort, searched, columns = compared_runs(settings, tracking_uri, method, sort, pareto)
    types = field_types()
    records = []
    for r in runs[:top]:
        params = r.data.params
        records.append({
            "trial": r.data.tags.get(tracking.TRIAL_TAG, r.info.run_id[:8]),
            "state": r.data.tags.get("state", r.info.status),
            "run_id": r.info.run_id,
            **{p: parse_param(params[p], types[p]) if p in params and p in types else params.get(p) for p in searched},
            **{m: r.data.metrics.get(m) for m in columns},
        })
    return pd.DataFrame(records, columns=["trial", "state", "run_id", *searched, *columns])


def export_best(search: Search, path: str | os.PathLike, *, source: str = "mlflow", trial: str | None = None,
                within: float | None = None, tracking_uri: str | None = None,
                results_dir: str | os.PathLike = RESULTS_DIR) -> TrainConfig:
    """Write the best trial's TrainConfig as YAML to `path`, as `mixtune export-best`; returns it.

    source: read the trials from "mlflow" (default) or Ray's results ("ray": best_config.yaml);
    trial: export this trial instead of the best; within: several metrics, the front member with
    the best first metric among those within this distance of the best second one.
    Paths in the config (data_dir, cache_dir) are written absolute.
    """
    from tuner.report.export import export_best as export

    with one_line_errors(argument_names()):
        if source not in ("mlflow", "ray"):
            raise MixtuneError(f"source={source!r} must be 'mlflow' or 'ray'")
        settings = _settings(search, results_dir)
        cfg, _, _ = export(settings.folder, source=source, tracking_uri=tracking_uri, trial=trial, within=within)
        cfg.to_yaml(os.fspath(path))
    return cfg


# ----------------------------------------------------------------------------- fit
def fit(config: TrainConfig | dict | str | os.PathLike | None = None, dataset: Dataset | None = None, *,
        on_epoch: Callable | None = None, verbose: Verbose = False, output: str | os.PathLike | None = None,
        **changes: Any) -> FitResult:
    """Train one config with the core's `fit`, as `mixtune train`; returns its FitResult.

    config: a TrainConfig (e.g. `result.best_config`), a dict of its fields, a YAML file
    (`export_best`'s), or None (the defaults); `changes`: fields to change (epochs=5).
    dataset: a loaded `Dataset` to reuse (default: the config's, loaded here).
    on_epoch(metrics, checkpoint): the core's per-epoch callback; verbose: one line per epoch.
    output: also write the results folder `mixtune train --output` writes (config.yaml,
    metrics.csv, summary.json, model.pt).
    The result holds `history` (metrics per epoch), `final` (the last), `model` and `config`.
    """
    lines: list[str] = []
    echo = _echo(verbose, lines)
    with one_line_errors(argument_names()):
        cfg = train_config(config, changes)
        from trainables.core.data import load_dataset
        from trainables.core.fit import fit as core_fit
        from tuner.train import format_epoch, save_results

        data = dataset if dataset is not None else load_dataset(cfg)  # bad files fail before training

        def each_epoch(metrics: dict[str, float], checkpoint) -> None:
            echo(format_epoch(metrics, cfg.epochs))
            if on_epoch is not None:
                on_epoch(metrics, checkpoint)

        result = core_fit(cfg, data, each_epoch)
        if output is not None:
            save_results(result, Path(os.fspath(output)))
    return result
