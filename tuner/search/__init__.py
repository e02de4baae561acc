"""Search algorithms: the Optuna searcher Ray Tune drives, the spaces' glue, warm starts."""
