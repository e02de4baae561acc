"""The `mixtune` command line: train, search, resume, compare, export-best.

The CLI only parses: every value is validated by `TrainConfig` (training) or the search
settings (searching). Errors users can cause end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from trainables.core.config import TrainConfig, field_types
from trainables.core.errors import ConfigError, DataError, DivergedError
from search_spaces.yaml_space import SpaceError

EXIT_USAGE = 2


from tuner.errors import UserError  # noqa: E402


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--data_dir` and `--data-dir` both work).

    Defaults are suppressed, so only the flags given override `--config` or the defaults.
    """
    group = parser.add_argument_group("training config (any TrainConfig field)")
    docs = _field_docs()
    for name, typ in field_types().items():
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        kw: dict[str, Any] = {"dest": f"cfg.{name}", "default": argparse.SUPPRESS, "help": docs.get(name)}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = typ
            kw["metavar"] = typ.__name__.upper()
        group.add_argument(*flags, **kw)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from `--config FILE` (if any), then the explicit flags on top."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        values.update(TrainConfig.from_yaml(args.config).to_dict())
    values.update({k[4:]: v for k, v in vars(args).items() if k.startswith("cfg.")})
    return TrainConfig.from_dict(values, source="--config" if getattr(args, "config", None) else "flags")


def _field_docs() -> dict[str, str]:
    """Field docstrings (the string literal under each field) for --help, read from the source."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = str(b.value.value).replace("%", "%%")  # type: ignore[attr-defined]
    return docs


# ----------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from tuner.train import train_and_save

    cfg = config_from_args(args)
    out = train_and_save(cfg, Path(args.output) if args.output else None, quiet=args.quiet)
    print(f"results: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixtune",
        description="Hyperparameter search for mixup-style training (ICM, Multi-Mix, Infinite Class Mixup).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one config and print per-epoch metrics")
    t.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    t.add_argument("--output", help="results folder (default: mixtune-results/train/<run name>)")
    t.add_argument("--quiet", action="store_true", help="print only the final summary")
    add_config_flags(t)
    t.set_defaults(func=cmd_train)

    from tuner import commands

    commands.add_search_commands(sub)
    from tuner.cluster import add_cluster_commands

    add_cluster_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, UserError, SpaceError) as e:
        print(f"mixtune: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DivergedError as e:
        print(f"mixtune: error: training diverged: {e}; lower lr or change the loss", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mixtune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

