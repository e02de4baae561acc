"""What failed when a trial failed: the trial itself, the machine under it, or the search's storage.

Ray Tune counts every failure of a trial against `FailureConfig(max_failures)`, except an
actor error on a node that Ray *drained* for preemption (its `preempted` flag). A spot
machine reclaimed without a drain, or a worker that loses power or network, looks to Ray
like any other crash. mixtune tells three kinds apart:

- a **lost node**: the trial's process died without raising (a `RayActorError`) and the node
  it ran on is dead (or was preempted). Not the trial's fault: Ray retries the trial from its
  last checkpoint, and the retry does not use up `--max-failures`. `--max-node-losses` (default
  3 per trial) still bounds these retries, so a trial whose memory use keeps taking its node
  down ends FAILED instead of looping;
- a **storage fault**: the trial could not write its checkpoint to `--storage-path`
  (`trainables.trainable.StorageUnavailable`). Not the trial's fault either, and every other
  trial would fail the same way, so the search stops (`StorageFault`) with one line naming
  the path, and every trial is left resumable;
- anything else (the trial's code raised, or its process crashed on a live node): the trial's
  own failure, retried `--max-failures` times (default 0).

Every trial passes through the scheduler's `on_trial_add` before it can fail: new trials,
trials restored by `mixtune resume`, and trials Tune requeues after a failure. `adopt` is
called there, and makes the trial a `FaultAwareTrial`, a `Trial` whose `handle_error` does
this accounting. Its class is set on the object, because Tune builds its trials itself.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from ray import tune
from ray.tune.experiment import Trial

from tuner import compat
from tuner.errors import UserError

DEFAULT_MAX_NODE_LOSSES = 3
LOSSES = "mixtune_node_losses"  # trial attribute: node losses so far (kept in Ray's trial state)
LIMIT = "mixtune_max_node_losses"
NOTE = "mixtune_fault"  # trial attribute: (kind, detail) of the failure being handled
NODE_ID = re.compile(r"Node Id: ([0-9a-f]{16,})", re.IGNORECASE)


class StorageFault(UserError):
    """The search's storage cannot be written: the search stops, every trial stays resumable."""


def _cause(exc: BaseException | None) -> BaseException | None:
    """The exception a trial raised, unwrapped from Ray's RayTaskError."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError):
        return getattr(exc, "cause", None) or exc
    return exc


def _raylet_answers(node: dict[str, Any], timeout: float) -> bool:
    import socket

    try:
        with socket.create_connection((node["NodeManagerAddress"], int(node["NodeManagerPort"])), timeout=timeout):
            return True
    except (OSError, KeyError, ValueError):
        return False


def dead_nodes(ids: set[str], timeout: float = 2.0) -> set[str]:
    """Those of these Ray node ids that are gone: dead to the cluster, or whose raylet does not answer.

    The trial's error can arrive before the GCS has missed enough of the node's heartbeats
    (about 15 s by default) to call it dead, so its raylet is asked directly: a node whose
    raylet refuses connections, or does not answer within `timeout`, is gone.
    """
    import ray

    if not ids or not ray.is_initialized():
        return set()
    try:
        nodes = [n for n in ray.nodes() if n["NodeID"] in ids]
    except Exception:  # the GCS itself is unreachable: nothing can be said about the nodes
        return set()
    return {n["NodeID"] for n in nodes if not n["Alive"] or not _raylet_answers(n, timeout)}


def classify(exc: BaseException | None, trial: Any) -> tuple[str, str] | None:
    """("node", node id) for a lost node, ("storage", message) for a storage fault, else None."""
    from ray.exceptions import RayActorError

    from trainables.trainable import StorageUnavailable

    cause = _cause(exc)
    if isinstance(cause, StorageUnavailable):
        return "storage", str(cause)
    if not isinstance(cause, RayActorError):
        return None  # the trial's code raised: its own failure
    if cause.preempted:
        return "node", "preempted"
    # the node named by Ray's death message, else the node the trial last reported from
    ids = set(NODE_ID.findall(str(cause)))
    last = (getattr(trial, "last_result", None) or {}).get("node_id")
    if not ids and isinstance(last, str):
        ids = {last}
    dead = dead_nodes(ids)
    return ("node", sorted(dead)[0]) if dead else None


class FaultAwareTrial(Trial):
    """A Ray Tune trial whose failures are counted by kind (see the module docstring)."""

    def handle_error(self, exc=None):
        before = self.run_metadata.num_failures
        super().handle_error(exc)
        note = classify(exc, self)
        self.__dict__[NOTE] = note
        if note is None or self.run_metadata.num_failures == before:
            return
        if note[0] == "node":
            losses = self.__dict__.get(LOSSES, 0) + 1
            self.__dict__[LOSSES] = losses
            limit = self.__dict__.get(LIMIT, DEFAULT_MAX_NODE_LOSSES)
            if 0 <= limit < losses:
                return  # over --max-node-losses: counted like any failure
        self.run_metadata.num_failures = before  # not the trial's fault
        self.run_metadata.invalidate_cache()
        self.invalidate_json_state()


def adopt(trial: Trial, max_node_losses: int) -> None:
    """Give the trial mixtune's failure accounting (idempotent)."""
    if type(trial) is Trial:
        compat.adopt_trial_class(trial, FaultAwareTrial)
    trial.__dict__[LIMIT] = max_node_losses


def node_losses(trial: Any) -> int:
    return int(getattr(trial, "__dict__", {}).get(LOSSES, 0))


class FaultNotes(tune.Callback):
    """Says what happened when a trial is retried after a lost node; stops the search on a storage fault."""

    def __init__(self, echo: Callable[[str], None] = print):
        self.echo = echo

    def on_trial_recover(self, iteration, trials, trial, **info):
        note = trial.__dict__.pop(NOTE, None)
        if note is None:
            return
        kind, detail = note
        if kind == "storage":
            raise StorageFault(detail)
        epoch = (trial.last_result or {}).get("epoch")
        where = "was preempted" if detail == "preempted" else f"{detail[:12]} was lost"
        limit = trial.__dict__.get(LIMIT, DEFAULT_MAX_NODE_LOSSES)
        of = f" of {limit}" if limit >= 0 else ""
        self.echo(f"trial {trial.trial_id}: its node {where}; it goes on from its checkpoint"
                  + (f" at epoch {epoch}" if epoch else "")
                  + f" on another node (node loss {node_losses(trial)}{of}, not counted in --max-failures)")

    def on_trial_error(self, iteration, trials, trial, **info):
        note = trial.__dict__.pop(NOTE, None)
        if note is not None and note[0] == "storage":
            raise StorageFault(note[1])
