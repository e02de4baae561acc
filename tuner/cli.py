"""The `mixtune` command line: train, search, resume, compare, export-best.

The CLI only parses: every value is validated by `TrainConfig` (training) or the search
settings (searching). Errors users can cause end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from search_spaces.yaml_space import SpaceError
from trainables.core.errors import ConfigError, DataError, DivergedError
from tuner import commands
from tuner.cluster.config_check import add_cluster_commands
from tuner.errors import UserError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixtune",
        description="Hyperparameter search for mixup-style training (ICM, Multi-Mix, Infinite Class Mixup).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    commands.add_commands(sub)
    add_cluster_commands(sub)
    return p


def as_flags(message: str) -> str:
    """A core error's advice in the CLI's words: `use labels=given` -> `use --labels given`.

    The core names config fields (what a --config file holds); on the command line the same
    advice is a flag, and both work there (flags override the file).
    """
    from trainables.core.config import field_types

    fields = field_types()

    def flag(m: re.Match) -> str:
        name, value = m.group(2), m.group(3)
        if name not in fields:
            return m.group(0)
        return f"{m.group(1)}--{name.replace('_', '-')} {value}"

    return re.sub(r"\b(use |give |set |with )([A-Za-z_]+)=([^\s,;:)]+)", flag, message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError) as e:  # the core's messages name fields: say them as flags
        print(f"mixtune: error: {as_flags(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except (UserError, SpaceError) as e:
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

