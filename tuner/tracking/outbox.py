"""A durable, ordered queue of writes to the tracking server, sent by one background thread.

A search's driver must neither die nor hold up its trials while MLflow is unreachable (the
server restarts for an upgrade, its disk is full, it ran out of memory). So every MLflow
write of a search is an *op*, a small JSON dict, put here:

- `put` appends the op to `mlflow-outbox.jsonl` in the search folder, then queues it, and
  returns at once: the Tune loop never waits for the network;
- one thread sends the ops one at a time, in the order they were put, and acknowledges each
  in the file once the server took it; the file is removed whenever the queue is empty;
- an op that fails because the server is unreachable (connection refused, a timeout, HTTP
  5xx or 429) is retried after a pause that grows to 8 s, and the ops behind it wait, so the
  server gets the writes in order. The first failure prints one line, and getting through
  again prints one line;
- an op the server refuses (HTTP 4xx) is dropped with one line: sending it again cannot help;
- `drain` waits until everything is sent, or until the server has been unreachable for
  `limit` seconds (`--tracking-outage-limit`), or the sender thread is gone: nothing it does
  can stop the thread silently (an `echo` that raises, as `print` into a closed pipe does, is
  ignored; anything else ends the thread with its error kept), so `drain` never waits on a
  thread that is not there.

An op may also be *held* (`hold`): written to the file, never sent by this outbox, for
another process to send (`mixtune sync`, which a search's driver starts in the background to
send its summary after the command has returned: `tuner/execution/sync.py`).

What the file still holds when a driver ends (the outage outlasted the limit, or the driver
was killed) is sent first by the search's next driver (`mixtune resume`), or by `mixtune
sync`. Sending an op twice is harmless: the ops are written so that a repeat changes nothing
(see `tracking.Writer`).

File lines: `{"seq": n, "op": {...}}` for an op, `{"ack": n}` once op n was sent (or dropped).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

OUTBOX_FILE = "mlflow-outbox.jsonl"
MAX_PAUSE = 8.0


class OutboxWriteError(OSError):
    """The outbox file cannot be written (the search folder is gone or read-only)."""


def is_outage(e: BaseException) -> bool:
    """Whether a failed write should be sent again later: the server was unreachable or overloaded."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        MlflowException = ()  # type: ignore[assignment]
    if isinstance(e, MlflowException):
        # MLflow reports a refused connection or exhausted retries as INTERNAL_ERROR (HTTP 500)
        status = e.get_http_status_code()
        return status >= 500 or status == 429
    if isinstance(e, OSError):  # requests' ConnectionError and Timeout are OSErrors too
        return True
    try:
        from sqlalchemy.exc import OperationalError  # a sqlite store that is locked or full
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, OperationalError)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    for marker in ("Connection refused", "Read timed out", "Max retries exceeded", "timed out"):
        if marker in text:
            return marker
    return ((text.splitlines() or [type(e).__name__])[0])[:200]


def pending(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The ops of an outbox file that were never acknowledged, in order."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    ops: dict[int, dict[str, Any]] = {}
    acked: set[int] = set()
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short when the driver was killed mid-write
        if not isinstance(entry, dict):
            continue
        if "ack" in entry:
            acked.add(int(entry["ack"]))
        elif "seq" in entry and isinstance(entry.get("op"), dict):
            ops[int(entry["seq"])] = entry["op"]
    return [(seq, ops[seq]) for seq in sorted(ops) if seq not in acked]


class Outbox:
    """Ops put from any thread, sent in order by one thread, kept in a file until sent."""

    def __init__(self, path: Path, apply: Callable[[dict[str, Any]], None], where: str,
                 echo: Callable[[str], None] = print, limit: float = 600.0):
        self.path = Path(path)
        self.where = where  # the tracking URI as it may be printed
        self.echo = echo
        self.limit = float(limit)
        self.apply = apply
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, dict[str, Any]]] = deque(pending(self.path))  # left by an earlier driver
        self.inherited = len(self._queue)
        self._seq = (self._queue[-1][0] + 1) if self._queue else 0
        self._down_since: float | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.died: BaseException | None = None  # what ended the sender thread, if not `close`
        self.sent = 0
        self.dropped = 0
        self.held = 0  # ops written for another process to send (`hold`): the file is kept for them
        if not self._queue:
            self.path.unlink(missing_ok=True)  # nothing pending: a stale file of acks only

    # ------------------------------------------------------------------ producer side
    def put(self, op: dict[str, Any]) -> None:
        """Queue an op; it is in the file before this returns (OutboxWriteError if it cannot be)."""
        with self._cond:
            seq = self._seq
            self._seq += 1
            self._queue.append((seq, op))
            self._cond.notify_all()
            self._start()
            self._write({"seq": seq, "op": op})

    def hold(self, op: dict[str, Any]) -> None:
        """Write an op to the file for another process to send; this outbox never sends it.

        Ops put later are sent as usual: a held op must not need them sent first.
        """
        with self._cond:
            seq = self._seq
            self._seq += 1
            self.held += 1
            self._write({"seq": seq, "op": op})

    def _write(self, entry: dict[str, Any]) -> None:
        try:
            with open(self.path, "a") as f:  # opened each time: a vanished folder must show
                f.write(json.dumps(entry, default=str) + "\n")
        except OSError as e:
            raise OutboxWriteError(e.errno, f"cannot write {self.path} ({e.strerror or e})") from None

    def _start(self) -> None:
        if self._thread is None and not self._closed and self.died is None:
            self._thread = threading.Thread(target=self._run, name="mixtune-mlflow-outbox", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def down_for(self) -> float:
        """Seconds the server has been unreachable (0 while it answers)."""
        since = self._down_since
        return 0.0 if since is None else time.monotonic() - since

    def drain(self, limit: float | None = None) -> bool:
        """Wait until every op is sent (True), or the server has been down `limit` seconds (False)."""
        limit = self.limit if limit is None else limit
        with self._cond:
            if self._queue:
                self._start()
            while self._queue:
                if self._down_since is not None and time.monotonic() - self._down_since >= limit:
                    return False
                if not self._alive():
                    return False  # the sender is gone: the ops stay in the file for the next driver
                self._cond.wait(min(0.5, max(limit, 0.01)))
            return True

    def _alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self) -> int:
        """Stop the sender (after the op it is sending); returns how many ops stay in the file."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        with self._cond:
            return len(self._queue)

    # ------------------------------------------------------------------ sender side
    def _say(self, line: str) -> None:
        """Print a line; a closed stdout (`mixtune search | head`) must not stop the sending."""
        try:
            self.echo(line)
        except Exception:
            pass

    def _run(self) -> None:
        try:
            self._send_all()
        except BaseException as e:  # a bug, or SystemExit from apply: drain must not wait on a dead thread
            self.died = e
        finally:
            with self._cond:
                self._cond.notify_all()

    def _send_all(self) -> None:
        pause = 1.0
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and (not self._queue or self._down_since is not None):
                    return  # closed: stop at once if the server is down, else after the queue
                seq, op = self._queue[0]
            try:
                self.apply(op)
            except Exception as e:
                if is_outage(e):
                    self._went_down(e)
                    with self._cond:
                        if not self._closed:
                            self._cond.wait(pause)
                    pause = min(pause * 2, MAX_PAUSE)
                    continue
                self._say(f"MLflow refused a write ({op.get('op')} {op.get('trial', '')}".rstrip()
                          + f"): {first_line(e)}; dropped it")
                self.dropped += 1
            else:
                self.sent += 1
            pause = 1.0
            self._came_back()
            with self._cond:
                self._queue.popleft()
                try:
                    if self._queue or self.held:
                        self._write({"ack": seq})
                    else:
                        self.path.unlink(missing_ok=True)
                except OSError:
                    pass  # the folder is gone: the ops in memory are still sent
                self._cond.notify_all()

    def _went_down(self, e: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._say(f"MLflow at {self.where} is unreachable ({first_line(e)}); the search goes on and keeps "
                      f"its MLflow writes in {self.path} until the server is back")

    def _came_back(self) -> None:
        if self._down_since is not None:
            seconds = time.monotonic() - self._down_since
            self._down_since = None
            self._say(f"MLflow at {self.where} is back after {seconds:.0f}s; sending the {len(self)} "
                      "writes kept meanwhile, in order")
