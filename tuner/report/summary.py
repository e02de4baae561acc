"""A finished search's summary: its trials as rows, and the parent run's best result, trial table, plots and model.

`log_summary` is an op of the search's outbox, so it may be carried out more than once (a
retry after an outage, `mixtune sync` after the driver ended): each part is written so that a
repeat changes nothing. Metrics the parent run has are not logged again, the files overwrite
themselves, and the best model is logged (and registered) only if the parent run has none.
An error that is not an outage still ends the parent run (tag `summary_error`): it is never
left RUNNING.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainables.core.metric_table import METRICS
from tuner.tracking.mlflow_meta import TABLE_FILE, TRIAL_TAG, trial_table


def trial_rows(results) -> list[dict[str, Any]]:
    """Ray's ResultGrid as plain rows: trial id, searched config, last metrics, error, checkpoint."""
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append({
            "trial_id": m.get("trial_id") or Path(r.path).name,
            "config": dict(r.config or {}),
            "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "error": None if r.error is None else str(r.error).strip().splitlines()[-1][:500],
            "checkpoint": r.checkpoint,
            "path": r.path,
        })
    return rows


def log_summary(client, settings, rows: list[dict[str, Any]], best: dict[str, Any] | None, seconds: float,
                front: list[dict[str, Any]] | None = None) -> None:
    """The parent run's summary: counts, the best trial (or, with several metrics, the Pareto
    front: `pareto_front.json` and `plots/pareto_front.png`), the trial table, plots, the best model.

    Then the parent run ends FINISHED (FAILED when no trial gave a result). An outage is raised
    as it is, for the outbox to send the op again; any other error ends the parent run first.
    """
    from tuner.tracking.outbox import first_line, is_outage

    run_id = settings.parent_run_id
    status = "FINISHED" if best is not None or front else "FAILED"
    try:
        _log_summary(client, settings, rows, best, seconds, front)
    except Exception as e:
        if is_outage(e):
            raise
        try:  # the search did end: its parent run must not stay RUNNING for want of a plot or model
            client.set_tag(run_id, "summary_error", first_line(e))
            client.set_terminated(run_id, status=status)
        except Exception:
            pass
        raise
    client.set_terminated(run_id, status=status)


def _log_summary(client, settings, rows, best, seconds, front) -> None:
    import matplotlib.pyplot as plt
    from mlflow.entities import Metric, Param

    from tuner.tracking import plots

    run_id = settings.parent_run_id
    have = client.get_run(run_id).data.metrics  # a repeated op logs no metric twice
    metric = settings.metrics[0]  # the plots of one metric show the first
    failed = sum(r["error"] is not None for r in rows)
    now = 0
    metrics = [Metric("search_seconds", seconds, now, 0), Metric("trials", len(rows), now, 0),
               Metric("trials_failed", failed, now, 0)]
    values = [r["metrics"][metric] for r in rows if r["error"] is None and metric in r["metrics"]]
    if best is not None:
        metrics.append(Metric(f"best_{metric}", best["metrics"][metric], now, 0))
        for k, v in best["metrics"].items():
            if k in METRICS and METRICS[k].mode:
                metrics.append(Metric(f"best.{k}", float(v), now, 0))
        searched = {k: v for k, v in best["config"].items()}
        client.log_batch(run_id, metrics=[m for m in metrics if m.key not in have],
                         params=[Param(f"best.{k}", str(v)) for k, v in searched.items()])
        client.log_dict(run_id, best["train_config"], "best_config.yaml")
        client.set_tag(run_id, "best_trial_id", best["trial_id"])
    else:
        if front:
            metrics.append(Metric("pareto_front_size", len(front), now, 0))
        client.log_batch(run_id, metrics=[m for m in metrics if m.key not in have])
    client.set_tag(run_id, "selection_metric", settings.metric)
    if front:
        ids = [r["trial_id"] for r in front]
        client.set_tag(run_id, "pareto_front", ",".join(ids)[:5000])
        client.log_dict(run_id, [{"trial_id": r["trial_id"], "config": r["config"],
                                  "metrics": {m: r["metrics"].get(m) for m in settings.metrics}} for r in front],
                        "pareto_front.json")
        fig = plots.pareto(rows, front, settings.metrics[:2], settings.modes[:2])
        client.log_figure(run_id, fig, "plots/pareto_front.png")
        plt.close(fig)
    log_trial_table(client, settings, rows)
    _figures(client, run_id, rows, values, settings)
    if best is not None and best.get("checkpoint") is not None:
        log_model(settings, best, client)


def log_trial_table(client, settings, rows: list[dict[str, Any]]) -> None:
    """`trials.json` on the parent run: every trial as a row, an MLflow table (`log_table`), so
    the UI's artifact view and its compare view (Evaluation) show it without `mixtune compare`.

    Each row names the trial's run as MLflow has it. MLflow appends a table logged again to the
    one there, so a repeated summary op logs none.
    """
    import pandas as pd

    from tuner.tracking.callback import trial_runs

    if any(f.path == TABLE_FILE for f in client.list_artifacts(settings.parent_run_id)):
        return

    runs = {r.data.tags[TRIAL_TAG]: (r.info.run_id, r.info.run_name) for r in trial_runs(client, settings)}
    table = trial_table(rows, settings.base, settings.metrics, settings.modes, runs)
    # object columns: an int parameter some trials lack (ICM's k) stays an int, not 45.0
    client.log_table(settings.parent_run_id, data=pd.DataFrame(table, dtype=object), artifact_file=TABLE_FILE)


def _figures(client, run_id: str, rows, values, settings) -> None:
    import matplotlib.pyplot as plt

    from tuner.tracking import plots

    metric = settings.metrics[0]
    if values:
        fig = plots.best_so_far(values, settings.modes[0], metric)
        client.log_figure(run_id, fig, "plots/best_so_far.png")
        plt.close(fig)
    ok = [{**r["config"], metric: r["metrics"].get(metric)} for r in rows if r["error"] is None]
    params = sorted({k for r in rows for k in r["config"]})
    if ok and params:
        fig = plots.param_scatter(ok, params, metric)
        client.log_figure(run_id, fig, "plots/params_vs_metric.png")
        plt.close(fig)
    scores = importances(settings)
    if scores:
        fig = plots.importances(scores)
        client.log_figure(run_id, fig, "plots/param_importances.png")
        plt.close(fig)
        client.log_dict(run_id, scores, "param_importances.json")


def importances(settings) -> dict[str, float]:
    """Optuna's parameter importances over the study's completed trials (empty if too few)."""
    import warnings

    import optuna

    try:
        study = optuna.load_study(study_name=settings.study_name, storage=settings.study_storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(done) < 3:
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "few trials per regime" is expected in small searches
            # several metrics: importances for the first (the one ASHA stops on)
            target = (lambda t: t.values[0]) if settings.multi else None
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study, target=target).items()}
    except Exception:  # e.g. a single distinct value: importances are undefined, not an error
        return {}


class ModelUnavailable(RuntimeError):
    """The best trial's checkpoint cannot be read: sending the op again cannot help (not an outage)."""


MODEL_NAME = "model"


def logged_model(client, settings):
    """The parent run's logged best model, if an earlier summary logged it (None: none yet)."""
    from mlflow.entities import LoggedModelStatus

    found = client.search_logged_models(experiment_ids=[settings.experiment_id],
                                        filter_string=f"source_run_id = '{settings.parent_run_id}'")
    ready = [m for m in found if m.name == MODEL_NAME and m.status == LoggedModelStatus.READY]
    return ready[0] if ready else None


def log_model(settings, best: dict[str, Any], client=None) -> None:
    """The best trial's final model (from its checkpoint) as an MLflow PyTorch model, once.

    The model is built from CPU tensors and logged with MLflow's serving-input validation off:
    that check loads the saved model on the GPU whenever the machine has one, where a model
    saved from CPU tensors cannot be loaded, and it would print a warning with the example's
    JSON. The model is checked here instead, on the device it was saved from, by running it on
    the example before logging. Whoever loads it picks the device (`model_config={"device": ...}`).
    """
    import warnings

    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from trainables.core.config import TrainConfig
    from trainables.core.models import build_model
    from trainables.trainable import load_state
    from tuner.tracking.callback import client as make_client

    client = client or make_client(settings.tracking_uri)
    existing = logged_model(client, settings)
    if existing is not None:  # a repeated summary op: register it if that is what did not happen
        _register(client, settings, existing)
        return
    try:
        state = load_state(best["checkpoint"])
    except OSError as e:
        raise ModelUnavailable(f"the best trial's checkpoint cannot be read ({e.strerror or e})") from None
    cfg = TrainConfig.from_dict(best["train_config"])
    in_shape = tuple(state["in_shape"])
    model = build_model(cfg.model, in_shape, int(state["num_classes"]), cfg.hidden)
    model.load_state_dict(state["model"])
    model.eval().to("cpu")
    example = torch.zeros((2, *in_shape))  # a batch of 2 keeps the batch size dynamic in pt2
    with torch.no_grad():
        output = model(example)
    signature = infer_signature(example.numpy(), output.numpy())
    mlflow.set_tracking_uri(settings.tracking_uri)
    with warnings.catch_warnings(), mlflow.start_run(run_id=settings.parent_run_id):
        warnings.simplefilter("ignore")  # MLflow's and torch.export's notes are not the user's concern
        # explicit requirements: inferring them would import-scan the model in a subprocess
        mlflow.pytorch.log_model(
            model,
            name=MODEL_NAME,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            registered_model_name=settings.register_model,
            signature=signature,
            input_example=example.numpy(),  # pt2 (torch.export) traces the model on it
            tags={"mixtune.device": "cpu", "mixtune.trial_id": str(best.get("trial_id", ""))},
            validate_serving_input=False,
        )


def _register(client, settings, model) -> None:
    """Register the logged model under `--register-model` unless a version of it from this run exists."""
    name = settings.register_model
    if not name:
        return
    versions = client.search_model_versions(f"name = '{name}'")
    if any(v.run_id == settings.parent_run_id for v in versions):
        return
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.register_model(f"models:/{model.model_id}", name)
