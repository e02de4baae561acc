"""`TrainConfig` as command-line flags: one flag per field, and the config they describe.

The CLI only parses: every value is validated by `TrainConfig`.
"""

from __future__ import annotations

import argparse
from typing import Any

from trainables.core.config import TrainConfig, field_types


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, shown dashed (`--data-dir`); the field's own spelling
    (`--data_dir`) works too, unlisted.

    Defaults are suppressed, so only the flags given override `--config` or the defaults.
    """
    group = parser.add_argument_group("training config (any TrainConfig field)")
    docs = field_docs()
    for name, typ in field_types().items():
        kw: dict[str, Any] = {"dest": f"cfg.{name}", "default": argparse.SUPPRESS}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = typ
            kw["metavar"] = typ.__name__.upper()
        group.add_argument(f"--{name.replace('_', '-')}", help=docs.get(name), **kw)
        if "_" in name:  # the field's spelling, as in a --config file: accepted, not listed
            group.add_argument(f"--{name}", help=argparse.SUPPRESS, **kw)


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from `--config FILE` (if any), then the explicit flags on top."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        values.update(TrainConfig.from_yaml(args.config).to_dict())
    values.update({k[4:]: v for k, v in vars(args).items() if k.startswith("cfg.")})
    return TrainConfig.from_dict(values, source="--config" if getattr(args, "config", None) else "flags")


def field_docs() -> dict[str, str]:
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
