"""Files written and read safely: atomic text writes (temp file + rename) and YAML parsing.

One job: nothing here knows what a config, a search or a space is. A crash mid-write never
leaves half a file, and a malformed or missing file is one line naming it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def read_yaml(path: str | os.PathLike, error: type[Exception] = ConfigError, what: str = "config") -> Any:
    """Parse a YAML file with `yaml.safe_load` (no tags that build objects or run code).

    A missing or unreadable file and malformed YAML raise `error` with a one-line message
    naming the file (and the line and column of a syntax error).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{path}: malformed YAML{where}: {problem}") from None


def write_text_atomic(path: Path, text: str, private: bool = False) -> Path:
    """Write via a temp file + rename; `private` keeps it owner-only (it may hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if not private:  # mkstemp makes the file owner-only; configs and reports are not secret
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
