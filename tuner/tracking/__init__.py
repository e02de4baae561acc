"""MLflow tracking: the per-trial callback and its writer, the outbox, run names and datasets, figures."""
