"""A head start for the end of a search: the summary's imports, on a thread while trials run.

The summary (`summary.py`) needs torch.export, MLflow's PyTorch flavour, pandas and matplotlib,
and MLflow's model logging first scans every installed package: seconds of work that would
otherwise come after the last trial, with the user waiting (bench/startup.py). Of the tuner it
imports only `plots` (a leaf), and that on its thread, so any module may start it.
"""

from __future__ import annotations

_PREWARMED = False


def prewarm() -> None:
    """Import what the summary needs (torch.export, MLflow's PyTorch flavour, pandas) and fill
    MLflow's installed-packages map, on a thread while the trials run: seconds that would
    otherwise come after the last trial, with the user waiting (bench/startup.py).

    Started once per process, at the first trial result (`tracking.MLflowTrials`): not earlier,
    where it would compete with Tune starting the first trials.
    """
    import threading

    global _PREWARMED
    if _PREWARMED:
        return
    _PREWARMED = True

    def work() -> None:
        try:
            # plots first: it picks matplotlib's backend and then imports pyplot, under its own import
            # lock. A pyplot import started here before it would let another thread's import of
            # plots call matplotlib.use on a half-imported pyplot (the trials' learning curves).
            import tuner.tracking.plots  # noqa: F401
            import mlflow.pytorch  # noqa: F401
            import pandas  # noqa: F401
            import torch.export  # noqa: F401
            from mlflow.models import infer_signature  # noqa: F401

            from tuner import compat

            compat.mlflow_scan_installed_packages()  # what log_model's requirement check does first
        except Exception:
            pass  # only a head start: the summary imports what it needs anyway

    threading.Thread(target=work, name="mixtune-summary-prewarm", daemon=True).start()
