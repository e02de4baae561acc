"""mixtune from Python: the searches and training runs of the `mixtune` CLI, for a notebook.

    import mixtune

    result = mixtune.search(space="icm", dataset="digits", epochs=3, num_samples=4)
    result.trials                  # a pandas DataFrame, one row per trial, best first
    result.best_config             # the best trial's TrainConfig
    run = mixtune.fit(result.best_config)   # train it again: run.history, run.final, run.model
    mixtune.compare(result)        # the trials as MLflow has them (a DataFrame)
    mixtune.export_best(result, "best.yaml")

Keyword arguments are the CLI's flags (`num_samples` for `--num-samples`) and any TrainConfig
field; a bad one raises `MixtuneError` with a one-line message. Importing this package is
cheap: Ray, Optuna, MLflow, torch and pandas are imported by the function that needs them.
"""

from mixtune.api import compare, export_best, fit, load, resume, search
from mixtune.errors import MixtuneError
from mixtune.result import SearchResult
from trainables.core.config import TrainConfig

__all__ = ["MixtuneError", "SearchResult", "TrainConfig", "compare", "export_best", "fit", "load", "resume", "search"]
