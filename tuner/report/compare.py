"""`mixtune compare`: a search's trials from MLflow, as a table."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from trainables.core.metric_table import METRICS
from tuner.tracking import callback as tracking
from tuner.report.selection import metric_columns
from tuner.settings import SearchError, SearchSettings


def search_trial_runs(settings: SearchSettings, tracking_uri: str | None = None) -> list:
    """Every nested (trial) run of a search, from its store or the one given."""
    uri = tracking_uri or settings.tracking_uri
    tracking.check_tracking_uri(uri)
    return tracking.trial_runs(tracking.client(uri), settings)


COUNTS = ("epoch",)  # metrics that count something: printed as whole numbers
SELECT_DECIMALS = 6  # the sort and selection metrics: enough to tell close trials apart


def save_runs_view(settings: SearchSettings, params: list[str], tracking_uri: str | None = None) -> bool:
    """Write the search's runs view (mlflow_meta.runs_view) as the experiment tag its link names.

    Idempotent; False (and the link then opens the experiment's runs unfiltered) when the
    store cannot take it now: a link is never worth failing or delaying a command for.
    """
    import json

    from tuner.tracking.mlflow_meta import VIEW_TAG, runs_view, view_key

    uri = tracking_uri or settings.tracking_uri
    if not uri or settings.experiment_id is None:
        return False
    try:
        tracking.check_tracking_uri(uri, timeout=3.0)  # a server that is down fails here, fast
        view = runs_view(settings.name, settings.metric or "", settings.mode or "", params)
        tracking.client(uri).set_experiment_tag(settings.experiment_id, VIEW_TAG + view_key(settings.name),
                                                json.dumps(view))
        return True
    except Exception:
        return False


def _fmt(v: Any, decimals: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v.is_integer() and decimals == 0:
            return str(int(v))
        return f"{v:.{decimals}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _decimals(metric: str, selected: set[str]) -> int:
    return 0 if metric in COUNTS else SELECT_DECIMALS if metric in selected else 4


def _param(v: str) -> str:
    """Searched values as logged (full precision) shortened for the table."""
    try:
        f = float(v)
    except ValueError:
        return v
    return v if v.lstrip("-").isdigit() else f"{f:.4g}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def front_runs(settings: SearchSettings, runs: list) -> list:
    """The FINISHED runs on the Pareto front (among those that ran every epoch, when any did)."""
    from tuner.report.pareto import pareto_front

    rows = [{"metrics": r.data.metrics, "run": r} for r in runs if r.info.status == "FINISHED"]
    full = [x for x in rows if x["metrics"].get("epoch") == settings.epochs]
    return [x["run"] for x in pareto_front(full or rows, settings.metrics, settings.modes)]


def compared_runs(settings: SearchSettings, tracking_uri: str | None = None, method: str | None = None,
                  sort: str | None = None, pareto: bool = False) -> tuple[list, str, list[str], list[str]]:
    """(runs best first, the sort metric, searched parameters, metric columns): what `compare`
    shows, as values; the CLI's table and the Python API's DataFrame both read it."""
    if pareto and not settings.multi:
        raise SearchError(f"--pareto needs a search of several metrics; {settings.name} selects on {settings.metric}")
    sort = sort or settings.metrics[0]
    if sort not in METRICS or not METRICS[sort].mode:
        raise SearchError(f"--sort {sort!r} is not a metric; use one of "
                          f"{', '.join(m for m, s in METRICS.items() if s.mode)}")
    runs = search_trial_runs(settings, tracking_uri)
    if method:
        runs = [r for r in runs if r.data.tags.get("method") == method]
    if pareto:
        runs = front_runs(settings, runs)
    sign = -1.0 if METRICS[sort].mode == "max" else 1.0  # the best first, trials without the metric last

    def key(r):
        v = r.data.metrics.get(sort)
        ok = v is not None and not math.isnan(v)
        return (not ok, sign * v if ok else 0.0)

    runs.sort(key=key)
    searched = sorted({p for r in runs for p in r.data.tags.get("mixtune.searched_params", "").split(",") if p})
    # the selection metric first, then the others any trial reported (a metric no trial has is no column)
    columns = [m for m in metric_columns(settings.metric) if any(m in r.data.metrics for r in runs)]
    return runs, sort, searched, columns


def compare(folder: Path, tracking_uri: str | None = None, method: str | None = None, sort: str | None = None,
            top: int = 10, pareto: bool = False) -> str:
    """The top trials as a table; `pareto`: only the Pareto front of a search of several metrics."""
    settings = SearchSettings.load(folder)
    runs, sort, searched, columns = compared_runs(settings, tracking_uri, method, sort, pareto)
    header = ["trial", "state", *searched, *columns]
    selected = {sort, *settings.metrics}
    rows = [header]
    for r in runs[:top]:
        rows.append([r.data.tags.get(tracking.TRIAL_TAG, r.info.run_id[:8]), r.data.tags.get("state", r.info.status)]
                    + [_param(r.data.params.get(p, "-")) for p in searched]
                    + [_fmt(r.data.metrics.get(m), _decimals(m, selected)) for m in columns])
    shown = (f"{min(top, len(runs))} of {len(runs)} {'Pareto-front ' if pareto else ''}trials"
             + (f" with method={method}" if method else ""))
    foot = f"\n{shown} of search {settings.name}, sorted by {sort} (best first); the search selects on {settings.metric}.\n"
    shown_in = dataclasses.replace(settings, tracking_uri=tracking_uri or settings.tracking_uri)
    save_runs_view(shown_in, searched)  # the view the runs link opens: these columns
    foot += "\n".join(tracking.ui_lines(shown_in))  # the search's runs in MLflow's runs table, best first
    if len(rows) == 1:
        return f"no trials logged yet for search {settings.name}{foot}"
    return table(rows) + foot
