"""One process per search folder: an advisory lock on `<folder>/.mixtune.lock`.

Two drivers of one search (`resume` run twice, `sync` while the search runs) would both
replay `mlflow-outbox.jsonl`, delete it under each other, rewrite `asha.jsonl` while the
other appends to it, and could each create the same trial's MLflow run. So every command
that writes a search folder (`search`, `resume`, `sync`) holds its lock for as long as it
runs, and a second one stops at once with one line naming the holder.

The lock is `flock` on an open file: the kernel drops it when the process ends, however it
ends (SIGKILL included), so a lock can never be left stale. The file itself stays and says
who held it last (pid and command line), which is how the second process can name the holder.
It is not inherited by the processes Ray starts (Python opens files close-on-exec).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tuner.errors import UserError

LOCK_FILE = ".mixtune.lock"


class SearchBusy(UserError):
    """Another process holds the search folder's lock; one line naming it."""


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if argv[0] in ("cli.py", "__main__.py", "-m", "-c"):
        argv[0] = "mixtune"
    return shlex.join(argv)[:300]


def holder(folder: Path) -> str:
    """Who holds (or last held) the folder's lock, as the lock file says: 'pid N (command)'."""
    try:
        text = (Path(folder) / LOCK_FILE).read_text().strip()
    except OSError:
        return "another process"
    pid, _, command = text.partition(" ")
    return f"pid {pid} ({command})" if pid.isdigit() else "another process"


@contextmanager
def search_lock(folder: Path, what: str = "use") -> Iterator[None]:
    """Hold the search folder's lock inside the block; SearchBusy at once if another process has it.

    The folder must exist. A process may take the lock again while it holds it (the same
    driver calling in twice is not a second driver).
    """
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        yield
        return
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise UserError(f"cannot {what} search {folder.name}: {folder} is not writable "
                        f"({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchBusy(f"cannot {what} search {folder.name}: {folder} is in use by {holder(folder)}; "
                             "wait for it to end (or stop it), then try again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_command()}\n".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_HELD: set[str] = set()  # folders whose lock this process holds
