"""`MixtuneError`: every mistake a caller of the API can fix, as one exception with a one-line message.

The layers below raise their own kinds (the core's `ConfigError` and `DataError`, a space's
`SpaceError`, the tuner's `UserError`); the API turns each into a `MixtuneError` with the
same message, so a notebook catches one type. Their messages name CLI flags
(`--gpus-per-trial`) where the API takes keyword arguments (`gpus_per_trial`): those are
said in the API's words.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable, Iterator

from search_spaces.yaml_space import SpaceError
from trainables.core.errors import ConfigError, DataError
from tuner.errors import UserError

# what the layers below raise for input a user can fix (not DivergedError: a run that diverged)
USER_ERRORS = (UserError, ConfigError, DataError, SpaceError)


class MixtuneError(UserError, ValueError):
    """A bad argument, file or search reference; the message is one line naming it."""


def as_arguments(message: str, names: Iterable[str]) -> str:
    """`--gpus-per-trial > 0` -> `gpus_per_trial > 0` for the flags that are keyword arguments here.

    A command line quoted whole (`see mixtune compare --pareto`) stays as it is: it is one to run.
    """
    known = set(names)

    def arg(m: re.Match) -> str:
        if m.group(1):  # a quoted command line
            return m.group(0)
        name = m.group(2).replace("-", "_")
        return name if name in known else m.group(0)

    return re.sub(r"(mixtune [a-z][a-z-]*(?: [^\s;,)`]+)*)|(?<![\w-])--([a-z][a-z0-9-]*)", arg, message)


@contextlib.contextmanager
def one_line_errors(names: Iterable[str] = ()) -> Iterator[None]:
    """Re-raise the layers' user errors as `MixtuneError` (same message, flags as `names`' arguments)."""
    try:
        yield
    except MixtuneError:
        raise
    except USER_ERRORS as e:
        # from None: the message says it all; the inner traceback is the library's, not the caller's
        raise MixtuneError(as_arguments(str(e), names)) from None
