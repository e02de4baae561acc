"""Running a search: create it (or resume it), run the Tune experiment, summarise it.

`run_search` checks everything first (`checks.check_search`), then creates the results
folder, the MLflow parent run and the state file, then runs; `resume_search` continues a
search whose driver stopped (Ctrl-C, SIGKILL, a lost machine) after reconciling its stores
(`restore.py`). Both end in `summarise`: the best trial's config, the parent run's summary.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trainables.core.data import Dataset
from tuner.assembly import make_trainable, make_tuner, quiet_logs, start_ray
from tuner.checks import check_search
from tuner.selection import describe_selection, pick_best
from tuner.settings import BEST_FILE, STATE_FILE, SearchError, SearchSettings


@dataclass
class SearchOutcome:
    folder: Path
    best: dict[str, Any] | None  # best trial: config, metrics, trial_id
    trials: list[dict[str, Any]]  # every trial's summary row
    seconds: float


class SearchInterrupted(KeyboardInterrupt):
    """The driver was asked to stop (Ctrl-C); the search can be resumed."""


def run_search(settings: SearchSettings, echo: Callable[[str], None] = print) -> SearchOutcome:
    """Check, create, run and summarise a new search."""
    quiet_logs()
    checked = check_search(settings)
    settings = checked.settings
    if (settings.folder / STATE_FILE).exists():
        raise SearchError(f"search {settings.name} already exists in {settings.folder}; use `mixtune resume`")

    from tuner import tracking

    client = tracking.client(settings.tracking_uri)
    settings.experiment_id = tracking.experiment_id(
        client, settings.experiment, tracking.artifact_location(settings.tracking_uri)
    )
    parent = client.create_run(
        settings.experiment_id,
        run_name=settings.name,
        tags={tracking.SEARCH_TAG: settings.name, tracking.ROLE_TAG: "search"},
    )
    settings.parent_run_id = parent.info.run_id
    settings.folder.mkdir(parents=True, exist_ok=True)
    settings.save()
    log_search_params(client, settings)
    echo(f"search {settings.name}: {settings.num_samples} trials of space '{settings.space}' on "
         f"{settings.base['dataset']} ({settings.base['labels']} labels); {describe_selection(settings)}")
    if checked.note:
        echo(checked.note)
    return execute(settings, checked.dataset, checked.space, client, echo)


def resume_search(settings: SearchSettings, echo: Callable[[str], None] = print) -> SearchOutcome:
    quiet_logs()
    checked = check_search(settings)
    settings = checked.settings
    from tuner import tracking

    client = tracking.client(settings.tracking_uri)
    client.update_run(settings.parent_run_id, status="RUNNING")
    echo(f"resuming search {settings.name} from {settings.folder}")
    return execute(settings, checked.dataset, checked.space, client, echo, restore=True)


def execute(settings: SearchSettings, dataset: Dataset, space: Callable, client, echo,
            restore: bool = False) -> SearchOutcome:
    """Run (or restore and continue) the Tune experiment, then summarise it.

    Ctrl-C: Ray Tune's own SIGINT handler ends the loop after saving its state; the search's
    MLflow runs still RUNNING are set KILLED and the resume command is printed.
    """
    from tuner import tracking
    from tuner.progress import Progress

    start = time.time()
    try:
        start_ray(settings)
        tuner = None
        if restore:
            from tuner.restore import restore_tuner

            tuner = restore_tuner(settings, make_trainable(settings, dataset), client, echo)
        if tuner is None:  # a new search, or one stopped before Ray saved anything
            callbacks = [tracking.MLflowTrials(settings), Progress(settings.metric, settings.mode,
                                                                   settings.num_samples, echo)]
            tuner = make_tuner(settings, space, dataset, callbacks)
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune's handler was installed
        stopped(settings, client, echo)
        raise
    except Exception:  # Ray could not start or Tune died: leave no run RUNNING, keep it resumable
        try:
            tracking.close_runs(client, settings, status="FAILED", state="FAILED")
            client.set_terminated(settings.parent_run_id, status="FAILED")
        except Exception:
            pass
        raise
    if results.num_terminated + results.num_errors < len(results) or len(results) < settings.num_samples:
        stopped(settings, client, echo, done=results.num_terminated + results.num_errors)
        raise SearchInterrupted()
    # every trial ended: a run the callback could not close (its driver was killed) is closed here
    tracking.close_runs(client, settings, status="KILLED", state="KILLED")
    return summarise(settings, results, time.time() - start, client)


def stopped(settings: SearchSettings, client, echo, done: int | None = None) -> None:
    """Close the search's open MLflow runs as KILLED and say how to continue."""
    from tuner import tracking

    try:
        tracking.close_runs(client, settings, status="KILLED", state="INTERRUPTED")
        client.set_terminated(settings.parent_run_id, status="KILLED")
    except Exception as e:  # the tracking store may be what failed: still print the way out
        echo(f"(could not close the MLflow runs: {str(e).splitlines()[0] if str(e) else type(e).__name__})")
    count = f" after {done}/{settings.num_samples} trials" if done is not None else ""
    echo(f"search {settings.name} stopped{count}; continue it with: mixtune resume {settings.folder}")


def log_search_params(client, settings: SearchSettings) -> None:
    from mlflow.entities import Param

    from tuner.tracking import redact_uri

    s = dataclasses.asdict(settings)
    keep = ["space", "metric", "mode", "num_samples", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
            "grace_period", "reduction_factor", "max_failures", "seed", "address", "storage_path"]
    for k in ("address", "storage_path"):  # URIs may carry user:password
        s[k] = redact_uri(s[k]) if s[k] else s[k]
    params = [Param(f"search.{k}", str(s[k])) for k in keep]
    params += [Param(f"base.{k}", str(v)) for k, v in settings.base.items()]
    params.append(Param("search.results_folder", str(settings.folder)))
    client.log_batch(settings.parent_run_id, params=params)
    client.log_dict(settings.parent_run_id, settings.space_doc or {"preset": settings.space}, "space.yaml")
    client.set_tag(settings.parent_run_id, "selection", describe_selection(settings))
    if settings.address:
        client.set_tag(settings.parent_run_id, "ray.address", redact_uri(settings.address))


def summarise(settings: SearchSettings, results, seconds: float, client) -> SearchOutcome:
    """Best trial → best_config.yaml, parent run metrics, plots and model; raises if all failed."""
    from tuner.summary import log_summary, trial_rows

    rows = trial_rows(results)
    best = pick_best(rows, settings.metric, settings.mode, settings.epochs)
    if best is not None:
        from trainables.trainable import trial_config

        cfg = trial_config(settings.base, best["config"], settings.cpus_per_trial)
        cfg.to_yaml(settings.folder / BEST_FILE)
        best["train_config"] = cfg.to_dict()
    log_summary(client, settings, rows, best, seconds)
    outcome = SearchOutcome(folder=settings.folder, best=best, trials=rows, seconds=seconds)
    if best is None:
        errors = [r["error"] for r in rows if r["error"]]
        first = errors[0] if errors else "no trial reported the metric"
        raise SearchError(f"every trial failed ({len(rows)} trials); first error: {first}")
    return outcome
