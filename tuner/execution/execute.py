"""Running a search: create it (or resume it), run the Tune experiment, summarise it.

`run_search` checks everything first (`checks.check_search`), then creates the results
folder, the MLflow parent run and the state file, then runs; `resume_search` continues a
search whose driver stopped (Ctrl-C, SIGKILL, a lost machine, a storage fault) after
reconciling its stores (`restore.py`). Both end in `summarise`: the best trial's config,
the parent run's summary.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tuner.execution.assembly import (RayStart, file_loggers, make_trainable, make_tuner, quiet_logs, start_ray,
                                      stop_ray, without_tensorboard)
from tuner.execution.checks import check_search
from tuner.report.selection import describe_selection, pick_best
from tuner.settings import BEST_FILE, FRONT_FILE, STATE_FILE, SearchError, SearchSettings

if TYPE_CHECKING:
    from trainables.core.data import Dataset  # torch: imported where a dataset is used

FINISHED_FILE = "finished.json"  # written when every trial ended: `resume` then changes nothing
SUMMARY_MODES = ("wait", "background")  # how a search's end sends its summary to MLflow (`summarise`)


def mark(phase: str) -> None:
    """A phase of the driver reached, appended to $MIXTUNE_PHASES when set (bench/startup.py reads it)."""
    path = os.environ.get("MIXTUNE_PHASES")
    if path:
        with open(path, "a") as f:
            f.write(f'{{"phase": "{phase}", "t": {time.time():.4f}}}\n')


@dataclass
class SearchOutcome:
    folder: Path
    best: dict[str, Any] | None  # best trial: config, metrics, trial_id
    trials: list[dict[str, Any]]  # every trial's summary row
    seconds: float
    front: list[dict[str, Any]] | None = None  # several metrics: the Pareto front's rows (best is None)
    summary_held: bool = False  # the summary waits in the outbox file for `mixtune sync` (summary="background")


def check_summary_mode(summary: str) -> None:
    if summary not in SUMMARY_MODES:
        raise SearchError(f"summary must be one of {', '.join(map(repr, SUMMARY_MODES))}, not {summary!r}")


class SearchInterrupted(KeyboardInterrupt):
    """The driver was asked to stop (Ctrl-C); the search can be resumed."""


def run_search(settings: SearchSettings, echo: Callable[[str], None] = print,
               summary: str = "wait") -> SearchOutcome:
    """Check, create, run and summarise a new search (`summary`: see `summarise`)."""
    check_summary_mode(summary)
    mark("run_search")
    if os.environ.get("MIXTUNE_PHASES"):
        import atexit

        atexit.register(mark, "atexit")  # runs before Ray's own (registered earlier, at import)
    with quiet_logs():
        checked = check_search(settings)
        mark("checked")
        settings = checked.settings
        if (settings.folder / STATE_FILE).exists():
            raise SearchError(f"search {settings.name} already exists in {settings.folder}; use `mixtune resume`")
        from tuner.execution.lock import search_lock

        settings.folder.mkdir(parents=True, exist_ok=True)
        with search_lock(settings.folder, "start"):
            if (settings.folder / STATE_FILE).exists():  # another driver created it meanwhile
                raise SearchError(f"search {settings.name} already exists in {settings.folder}; use `mixtune resume`")
            return _create_and_run(settings, checked, echo, summary)


def _create_and_run(settings: SearchSettings, checked, echo, summary: str) -> SearchOutcome:
    """Ray starts on its own thread while the MLflow parent run and the rest are set up (issue 26).

    Not earlier: bad input (the data and space checks included) never starts Ray. Started
    after the settings' checks instead, it came up 0.6 s sooner on the 1-trial search (9.4 vs
    10.0 s, 4 runs each, 2 cores), and every data error would wait for Ray's start and stop.
    """
    ray_start = RayStart(settings)
    try:
        return _create(settings, checked, echo, ray_start, summary)
    except BaseException:
        try:
            if ray_start.wait():
                stop_ray()
        except BaseException:
            pass
        raise


def _create(settings: SearchSettings, checked, echo, ray_start: RayStart, summary: str) -> SearchOutcome:
    from tuner.tracking import callback as tracking

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
    for note in checked.notes:
        echo(note)
    if checked.warm:
        from tuner.search.warmstart import apply

        apply(checked.warm, settings)  # the study holds the prior trials before Ray's searcher loads it
    points = checked.warm.points if checked.warm else []
    mark("created")
    return execute(settings, checked.dataset, checked.space, client, echo, points=points, ray_start=ray_start,
                   summary=summary)


def finished(settings: SearchSettings) -> dict[str, Any] | None:
    """What a search that already ran to its end wrote at its end (None: it did not end).

    Searches from before `FINISHED_FILE` existed count as finished when they have their best
    config or Pareto front: both are written only once every trial ended.
    """
    import json

    path = settings.folder / FINISHED_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    if (settings.folder / BEST_FILE).exists() or (settings.folder / FRONT_FILE).exists():
        return {}
    return None


def resume_search(settings: SearchSettings, echo: Callable[[str], None] = print,
                  summary: str = "wait") -> SearchOutcome | None:
    """Continue a stopped search; a finished one is left as it is (None, after one line saying so)."""
    from tuner.execution.lock import search_lock

    check_summary_mode(summary)
    with search_lock(settings.folder, "resume"):
        done = finished(settings)
        if done is None:
            return _resume(settings, echo, summary)
        from tuner.tracking.outbox import OUTBOX_FILE, pending

        if pending(settings.folder / OUTBOX_FILE):  # its end's MLflow writes never got there: send them
            from tuner.execution.sync import sync_search

            sync_search(settings, echo)
        count = f"{done['trials']} trials, {done['failed']} failed" if "trials" in done else "every trial ended"
        echo(f"search {settings.name} has finished ({count}); nothing to resume. "
             f"See its trials with: mixtune compare {settings.folder}")
        return None


def _resume(settings: SearchSettings, echo: Callable[[str], None], summary: str) -> SearchOutcome:
    with quiet_logs():
        checked = check_search(settings)
        settings = checked.settings
        from tuner.tracking import callback as tracking

        client = tracking.client(settings.tracking_uri)
        echo(f"resuming search {settings.name} from {settings.folder}")
        return execute(settings, checked.dataset, checked.space, client, echo, restore=True, summary=summary)


def execute(settings: SearchSettings, dataset: Dataset, space: Callable, client, echo,
            restore: bool = False, points: list | None = None, ray_start: RayStart | None = None,
            summary: str = "wait") -> SearchOutcome:
    """Run (or restore and continue) the Tune experiment, then summarise it.

    Every MLflow write goes through the search's outbox (`outbox.py`): the loop never waits
    for MLflow, and an outage of the server loses nothing.
    Ctrl-C: Ray Tune's own SIGINT handler ends the loop after saving its state; the search's
    MLflow runs still RUNNING are set KILLED and the resume command is printed.
    A storage fault (the results folder or the storage path stopped being writable) stops
    the search with one line naming the path; every trial stays resumable.
    """
    from tuner.tracking import callback as tracking

    start = time.time()
    _freeze_at_exit()
    outbox = tracking.open_outbox(settings, echo)
    tracking.search_state(settings.folder).summary = summary
    own_ray = False
    try:
        try:
            searcher = None
            if not restore:  # the study and its sampler need no Ray: made while Ray is still starting
                from tuner.search.searcher import make_searcher

                searcher = make_searcher(settings, space, points or [])
            own_ray = ray_start.wait() if ray_start is not None else start_ray(settings)
            mark("ray")
            tuner = None
            if restore:
                from tuner.execution.restore import restore_tuner

                tuner = restore_tuner(settings, make_trainable(settings, dataset), client, echo, outbox)
                outbox.put({"op": "parent", "status": "RUNNING"})
            if tuner is None:  # a new search, or one stopped before Ray saved anything
                tuner = make_tuner(settings, space, dataset, callbacks(settings, echo), points or [], searcher)
            mark("fit")
            with without_tensorboard(tuner):
                results = tuner.fit()
            mark("fit_done")
        except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune's handler was installed
            stopped(settings, outbox, echo)
            raise
        except SearchError:
            raise
        except Exception as e:
            problem = storage_problem(settings, e)
            if problem is not None:
                stopped(settings, outbox, echo, say=False)
                raise SearchError(f"{problem}; the search stopped, its finished trials are kept: once the "
                                  f"path is back, continue it with: mixtune resume {settings.folder}") from None
            # Ray could not start or Tune died: leave no run RUNNING, keep it resumable
            end_runs(outbox, status="FAILED", state="FAILED")
            raise
        if results.num_terminated + results.num_errors < len(results) or len(results) < settings.num_samples:
            stopped(settings, outbox, echo, done=results.num_terminated + results.num_errors)
            raise SearchInterrupted()
        # every trial ended: a run the callback could not close (its driver was killed) is closed here
        outbox.put({"op": "close", "status": "KILLED", "state": "KILLED"})
        return summarise(settings, results, time.time() - start, outbox, echo, stop=stop_ray if own_ray else None,
                         summary=summary)
    except BaseException:
        if own_ray and ray_start is None:  # a resumed search's Ray (a new one's: _create_and_run stops it)
            stop_ray()  # now, while quiet_logs still holds: its in-flight trials' errors are the stop's echo
        raise
    finally:
        tracking.end_search(settings)


def _freeze_at_exit() -> None:
    """At exit, take every object out of the garbage collector's sight before Python's own clean-up.

    A driver holds millions of objects (torch, torch.export, Ray, MLflow); the collections
    Python runs while it tears its modules down walk them all, seconds after the search has
    ended and printed everything (bench/startup.py). Frozen, they are freed by their reference
    counts alone. Registered after Ray's own handler, so it runs first and changes nothing there.
    """
    import atexit
    import gc

    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def callbacks(settings: SearchSettings, echo) -> list:
    from tuner.tracking import callback as tracking
    from tuner.faults import FaultNotes
    from tuner.report.progress import Progress

    return [tracking.MLflowTrials(settings), Progress(settings.metric, settings.mode, settings.num_samples, echo,
                                                          settings.epochs, folder=str(settings.folder)),
            FaultNotes(echo), *file_loggers()]


def end_runs(outbox, status: str, state: str, wait: float = 10.0) -> bool:
    """Close the search's open runs and its parent run; wait a little for MLflow to take it."""
    for op in ({"op": "close", "status": status, "state": state}, {"op": "parent", "status": status}):
        try:
            outbox.put(op)
        except OSError:
            pass  # the search folder is gone: the op is still sent from memory
    return outbox.drain(limit=min(wait, outbox.limit))


def stopped(settings: SearchSettings, outbox, echo, done: int | None = None, say: bool = True) -> None:
    """Close the search's open MLflow runs as KILLED and say how to continue.

    Trials still in flight when the search stops fail on their own (the same storage fault,
    the interrupt), and Ray would log each such error as "unhandled" when its reference is
    dropped, after the one line that says what happened. They are the stop's echo, not news.
    """
    os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
    if not end_runs(outbox, status="KILLED", state="INTERRUPTED"):
        echo(f"(MLflow is unreachable: {len(outbox)} writes stay in {outbox.path}; `mixtune resume` sends them)")
    if say:
        from tuner.report.progress import stop_text

        count = (stop_text(settings.folder) or f" after {done}/{settings.num_samples} trials") if done is not None else ""
        echo(f"search {settings.name} stopped{count}; continue it with: mixtune resume {settings.folder}")


def _unwritable(path: Path) -> str | None:
    """Why a folder the search writes to cannot be written now (None: it can)."""
    import tempfile

    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file now" if probe != path else "it is a file now"
    if probe != path:
        return "it is gone"
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".mixtune-probe-"):
            return None
    except OSError as e:
        return e.strerror or str(e)


def storage_problem(settings: SearchSettings, error: BaseException) -> str | None:
    """One line naming the folder the search could not write, if that is what stopped it."""
    from tuner.faults import StorageFault
    from tuner.tracking.outbox import OutboxWriteError

    checks = [("results folder", settings.folder)]
    if "://" not in settings.ray_storage or settings.ray_storage.startswith("file://"):
        checks.append(("storage path", Path(settings.ray_storage.removeprefix("file://"))))
    for what, path in checks:
        why = _unwritable(path)
        if why is not None:
            return f"{what} {path} is not writable ({why})"
    chain, e = [], error
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, (StorageFault, OutboxWriteError)):
            return str(e)
    return None


def write_front(settings: SearchSettings, front: list[dict[str, Any]]) -> None:
    """pareto_front.json in the search folder: each member's trial id, searched params and metrics."""
    import json

    from trainables.core.files import write_text_atomic

    blob = [{"trial_id": r["trial_id"], "config": r["config"],
             "metrics": {m: r["metrics"].get(m) for m in (*settings.metrics, "test_acc", "epoch")}} for r in front]
    write_text_atomic(settings.folder / FRONT_FILE, json.dumps(blob, indent=1, default=str))


def mark_finished(settings: SearchSettings, rows: list[dict[str, Any]], best: dict[str, Any] | None) -> None:
    """`finished.json`: every trial ended (written after the summary op is on file, so a resume
    finds either the op to send or nothing to do)."""
    import json

    from trainables.core.files import write_text_atomic

    failed = sum(r["error"] is not None for r in rows)
    blob = {"trials": len(rows), "failed": failed, "best_trial": best["trial_id"] if best else None,
            "ended": time.time()}
    write_text_atomic(settings.folder / FINISHED_FILE, json.dumps(blob))


def log_search_params(client, settings: SearchSettings) -> None:
    from mlflow.entities import Param

    from tuner.tracking.callback import redact_uri

    s = dataclasses.asdict(settings)
    keep = ["space", "metric", "mode", "num_samples", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
            "grace_period", "reduction_factor", "sampler", "scheduler", "startup_trials", "max_failures", "seed",
            "address", "storage_path"]
    s["startup_trials"] = settings.n_startup  # the number used, also when sized to the budget
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


def summarise(settings: SearchSettings, results, seconds: float, outbox, echo=print,
              stop: Callable[[], None] | None = None, summary: str = "wait") -> SearchOutcome:
    """Best trial -> best_config.yaml, parent run metrics, plots and model; raises if all failed.

    The parent run's summary is the outbox's last op. `summary="wait"` sends it before
    returning; `"background"` holds it in the outbox file (`Outbox.hold`) for a `mixtune sync`
    the caller starts once the search's lock is released (`sync.send_in_background`): the
    trials' own writes are still sent before returning, the summary's plots and model (seconds
    of imports and writes, issue 26) no longer hold the user. If MLflow is still down when the
    outage has lasted `--tracking-outage-limit`, the search ends anyway, with the writes in the
    outbox file for `mixtune sync` (or `mixtune resume`).
    """
    from tuner.report.pareto import front_of
    from tuner.report.summary import log_summary, trial_rows
    from tuner.tracking.callback import redact_uri

    rows = trial_rows(results)
    front = None
    if settings.multi:
        front = front_of(rows, settings)
        best = None  # a front has no single best: export-best takes --trial or a rule
        write_front(settings, front)
    else:
        best = pick_best(rows, settings.metric, settings.mode, settings.epochs)
    if best is not None:
        from trainables.trainable import trial_config

        cfg = trial_config(settings.base, best["config"], settings.cpus_per_trial)
        cfg.to_yaml(settings.folder / BEST_FILE)
        best["train_config"] = cfg.to_dict()
    op = {"op": "summary", "seconds": seconds}
    if summary == "background":
        outbox.hold(op)
    else:
        outbox.apply.summary = lambda op: log_summary(outbox.apply.client, settings, rows, best, op["seconds"], front)
        outbox.put(op)
    mark_finished(settings, rows, best)
    mark("summary_queued")
    if stop is not None:
        stop()  # Ray's runtime is done with: stopped here while the outbox sends, not at exit
        mark("ray_stopped")
    sent = outbox.drain()
    if not sent:
        echo(f"MLflow at {redact_uri(settings.tracking_uri)} has been unreachable for {outbox.down_for:.0f}s "
             f"(--tracking-outage-limit {settings.tracking_outage_limit:g}s): the search is done, and the "
             f"{len(outbox) + outbox.held} writes MLflow lacks are kept in {outbox.path}; send them with: "
             f"mixtune sync {settings.folder}")
    mark("drained")
    outcome = SearchOutcome(folder=settings.folder, best=best, trials=rows, seconds=seconds, front=front,
                            summary_held=sent and summary == "background")
    if best is None and not front:
        errors = [r["error"] for r in rows if r["error"]]
        first = errors[0] if errors else "no trial reported the metric"
        raise SearchError(f"every trial failed ({len(rows)} trials); first error: {first}")
    return outcome
