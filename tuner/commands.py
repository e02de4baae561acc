"""The subcommands: train, search, resume, sync, compare, export-best (each parser and what it runs).

Each command parses its flags, calls the function that does the work, and prints; errors a
user can fix propagate as one-line exceptions for `cli.main` to print.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tuner.flags import add_config_flags, config_from_args
from tuner.settings import find_search


# ----------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from tuner.train import train_and_save

    cfg = config_from_args(args)
    out = train_and_save(cfg, Path(args.output) if args.output else None, quiet=args.quiet)
    print(f"results: {out}")
    return 0


# ----------------------------------------------------------------------------- search
SUMMARY_ENV = "MIXTUNE_SUMMARY"  # the default of --summary


def summary_mode(args: argparse.Namespace) -> str:
    """--summary, else $MIXTUNE_SUMMARY, else background; checked before anything is created."""
    from tuner.errors import UserError
    from tuner.execution.execute import SUMMARY_MODES

    mode = args.summary or os.environ.get(SUMMARY_ENV) or "background"
    if mode not in SUMMARY_MODES:
        raise UserError(f"${SUMMARY_ENV}={mode!r} is not a summary mode; use one of: {', '.join(SUMMARY_MODES)}")
    return mode


def finish(settings, outcome) -> None:
    """Print the outcome; a summary held for the background starts its sender (the lock is free now)."""
    from tuner.execution.sync import send_held_summary
    from tuner.report.summary_text import print_outcome

    print_outcome(settings, outcome)
    line = send_held_summary(settings, outcome.summary_held)
    if line:
        print(line)


def cmd_search(args: argparse.Namespace) -> int:
    from tuner.execution.execute import run_search
    from tuner.search.space import search_settings

    summary = summary_mode(args)
    base = config_from_args(args).to_dict()
    given = {k[4:]: base[k[4:]] for k in vars(args) if k.startswith("cfg.")}  # flags beside the space: pinned
    settings = search_settings(
        args.space, base, given,
        name=args.name,
        metric=args.metric,
        mode=args.mode,
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        sampler=args.sampler,
        scheduler=args.scheduler,
        startup_trials=args.startup_trials,
        max_failures=args.max_failures,
        max_node_losses=args.max_node_losses,
        tracking_outage_limit=args.tracking_outage_limit,
        results_dir=args.results_dir,
        storage_path=args.storage_path,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        address=args.address,
        num_cpus=args.num_cpus,
        seed=args.search_seed,
        register_model=args.register_model,
        checkpoint_every=args.checkpoint_every,
        warm_start=list(args.warm_start or []),
        warm_start_partial=args.warm_start_partial,
        warm_start_other_data=args.warm_start_other_data,
    )
    outcome = run_search(settings, summary=summary)
    finish(settings, outcome)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from tuner.execution.execute import resume_search
    from tuner.settings import SearchSettings

    summary = summary_mode(args)
    folder = find_search(args.search, args.results_dir)
    settings = SearchSettings.load(folder)
    outcome = resume_search(settings, summary=summary)
    if outcome is not None:  # None: the search had finished, and said so
        finish(settings, outcome)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from tuner.settings import SearchSettings
    from tuner.execution.sync import sync_search

    settings = SearchSettings.load(find_search(args.search, args.results_dir))
    if args.tracking_uri:
        settings.tracking_uri = args.tracking_uri
    sync_search(settings)
    return 0


# ----------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    from tuner.report.compare import compare

    folder = find_search(args.search, args.results_dir)
    print(compare(folder, tracking_uri=args.tracking_uri, method=args.method, sort=args.sort, top=args.top,
                  pareto=args.pareto))
    return 0


def cmd_export_best(args: argparse.Namespace) -> int:
    from tuner.report.export import export_best

    folder = find_search(args.search, args.results_dir)
    cfg, source, trial = export_best(folder, source=args.source, tracking_uri=args.tracking_uri, trial=args.trial,
                                     within=args.within)
    out = Path(args.output)
    cfg.to_yaml(out)
    which = "trial" if args.trial else "best trial" if args.within is None else f"front member (--within {args.within:g})"
    which += f" {trial}" if trial else ""
    print(f"wrote {out} ({which} from {source}); retrain it with: mixtune train --config {out}")
    return 0


# ----------------------------------------------------------------------------- parser
def add_commands(sub) -> None:
    t = sub.add_parser("train", help="train one config and print per-epoch metrics")
    t.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    t.add_argument("--output", help="results folder (default: mixtune-results/train/<run name>)")
    t.add_argument("--quiet", action="store_true", help="print only the final summary")
    add_config_flags(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("search", help="run a hyperparameter search (Ray Tune + Optuna + ASHA, MLflow logging)")
    s.add_argument("--space", default="all",
                   help="preset (icm, multimix, infinite_class, all) or a YAML space file (default: all). A "
                        "parameter given as a flag (--alpha 0.5) is fixed: the space no longer searches it and "
                        "every trial uses your value (values from --config are the base the space varies)")
    s.add_argument("--config", help="YAML file of fixed TrainConfig fields (flags override it)")
    s.add_argument("--num-samples", type=int, default=16, help="trials to run (default 16)")
    s.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default: CPUs / cpus-per-trial)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0)
    s.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions pack trials on a GPU (0.25: four)")
    s.add_argument("--metric", default=None,
                   help="what to select on (default: val_scel_ts for complementary labels, val_acc for ordinary;"
                        " test_* read the test split's true labels and are taken only when named); two or three,"
                        " comma-separated (val_acc,val_ece), make a multi-objective search with a Pareto front")
    s.add_argument("--mode", default=None,
                   help="max or min, comma-separated per metric (default: each metric's own direction)")
    s.add_argument("--warm-start", nargs="+", metavar="SEARCH_OR_YAML",
                   help="start from earlier searches (folder or name: their finished trials join the study) "
                        "and/or exported configs (.yaml: evaluated first)")
    s.add_argument("--warm-start-partial", action="store_true",
                   help="drop parameters the spaces do not share instead of refusing")
    s.add_argument("--warm-start-other-data", action="store_true",
                   help="use earlier searches that ran on other data (another dataset, file, split or label "
                        "draw: another data digest) instead of refusing them")
    s.add_argument("--grace-period", type=int, default=2, help="ASHA: epochs before a trial may be stopped")
    s.add_argument("--reduction-factor", type=int, default=3, help="ASHA: keep 1/factor at each rung")
    s.add_argument("--sampler", choices=["tpe", "gp", "random"], default="tpe",
                   help="Optuna sampler: tpe (default; multivariate, constant liar), gp (Gaussian process), random")
    s.add_argument("--scheduler", choices=["asha", "none"], default="asha",
                   help="asha: stop weak trials early (default); none: every trial runs every epoch")
    s.add_argument("--startup-trials", type=int, default=None,
                   help="random trials before the sampler's model is used (default: a quarter of "
                        "--num-samples, 3 to 10)")
    s.add_argument("--max-failures", type=int, default=0,
                   help="retries of a trial whose own code failed (default 0); a lost node is not counted here")
    s.add_argument("--max-node-losses", type=int, default=3,
                   help="retries from its checkpoint of a trial whose node was lost (default 3 per trial; -1: no limit)")
    s.add_argument("--tracking-outage-limit", type=float, default=600.0,
                   help="seconds of MLflow outage the end of a search waits out before it leaves the writes "
                        "MLflow lacks to `mixtune sync` (default 600)")
    s.add_argument("--name", help="search name (default: <space>-<dataset>-<labels>-<time>)")
    s.add_argument("--results-dir", default="mixtune-results", help="local folder for searches")
    s.add_argument("--storage-path", help="Ray Tune storage every node can reach (shared folder or s3://...)")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)")
    s.add_argument("--experiment", default="mixtune", help="MLflow experiment name")
    s.add_argument("--address", help="join a running Ray cluster: auto, host:port or ray://host:port")
    s.add_argument("--num-cpus", type=int, help="CPUs of a local Ray runtime (default: all)")
    s.add_argument("--search-seed", type=int, default=0, help="seed of the TPE sampler")
    s.add_argument("--register-model", help="register the best model under this name in MLflow")
    s.add_argument("--checkpoint-every", type=int, default=1, help="epochs between trial checkpoints")
    add_summary_flag(s)
    add_config_flags(s)
    s.set_defaults(func=cmd_search)

    r = sub.add_parser("resume", help="continue a search whose driver was stopped or killed")
    r.add_argument("search", help="search folder or name")
    r.add_argument("--results-dir", default="mixtune-results")
    add_summary_flag(r)
    r.set_defaults(func=cmd_resume)

    y = sub.add_parser("sync", help="send the MLflow writes a search has not sent (MLflow was unreachable, "
                                    "or its summary is sent in the background)")
    y.add_argument("search", help="search folder or name")
    y.add_argument("--results-dir", default="mixtune-results")
    y.add_argument("--tracking-uri", help="override the search's tracking URI (the server moved)")
    y.set_defaults(func=cmd_sync)

    c = sub.add_parser("compare", help="top trials of a search, from MLflow")
    c.add_argument("search", help="search folder or name")
    c.add_argument("--results-dir", default="mixtune-results")
    c.add_argument("--tracking-uri", help="override the search's tracking URI")
    c.add_argument("--method", help="only trials of this method")
    c.add_argument("--sort", default=None, help="metric to sort by (default: the search's metric)")
    c.add_argument("--top", type=int, default=10)
    c.add_argument("--pareto", action="store_true", help="only the Pareto front (searches of several metrics)")
    c.set_defaults(func=cmd_compare)

    e = sub.add_parser("export-best", help="write the best trial's TrainConfig as YAML")
    e.add_argument("search", help="search folder or name")
    e.add_argument("--results-dir", default="mixtune-results")
    e.add_argument("-o", "--output", default="best.yaml")
    e.add_argument("--source", choices=["mlflow", "ray"], default="mlflow",
                   help="read the trials from MLflow (default) or from Ray's results")
    e.add_argument("--tracking-uri", help="override the search's tracking URI")
    e.add_argument("--trial", help="export this trial (its id, as compare shows it) instead of the best")
    e.add_argument("--within", type=float,
                   help="several metrics: the front member with the best first metric among those whose second "
                        "metric is within this distance of the front's best second metric")
    e.set_defaults(func=cmd_export_best)


def add_summary_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--summary", choices=["background", "wait"], default=None,
                   help="the search's MLflow summary (parent run metrics, plots, best model): background (default, "
                        f"or ${SUMMARY_ENV}): sent by a process of its own after the command returns, which prints "
                        "its pid and log; wait: sent before the command returns. The trials' runs are sent "
                        "before it returns either way")
