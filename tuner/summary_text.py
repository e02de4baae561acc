"""What a finished search prints: where its results are and how to look at them."""

from __future__ import annotations

from tuner.progress import describe
from tuner.selection import describe_selection, with_test


def print_outcome(settings, outcome) -> None:
    from tuner.tracking import redact_uri

    ok = sum(r["error"] is None for r in outcome.trials)
    n = len(outcome.trials)
    print(f"\nsearch {settings.name} finished: {n} trials ({n - ok} failed) in {outcome.seconds:.1f}s")
    print(f"the search {describe_selection(settings)}")
    if outcome.best is not None:
        print(f"best {with_test(outcome.best['metrics'], settings.metric)}: {describe(outcome.best['config'])}")
    print(f"results:      {outcome.folder}")
    print(f"best config:  {outcome.folder / 'best_config.yaml'}  (retrain: mixtune train --config <it>)")
    print(f"compare:      mixtune compare {outcome.folder}")
    uri = settings.tracking_uri
    if uri.startswith(("sqlite:", "file:", "postgresql:", "mysql:")):
        print(f"MLflow UI:    mlflow ui --backend-store-uri {redact_uri(uri)} --host 127.0.0.1  "
              "(then open http://127.0.0.1:5000)")
    else:
        print(f"MLflow UI:    {redact_uri(uri)}  (experiment '{settings.experiment}')")
    print(f"Optuna study: optuna-dashboard {settings.study_storage}")
