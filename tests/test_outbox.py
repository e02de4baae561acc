"""Fast checks of the fault machinery, in process: the outbox's order, retries and file; the
MLflow writer's ops against a real sqlite store, sent twice; ASHA's journal replayed; how a
trial's failure is classified. The real-process tests are test_faults_*.py, test_asha_resume.py
and test_multinode.py.
"""

from __future__ import annotations

import json
import pickle
import threading
from types import SimpleNamespace

from fault_tools import search_runs
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from tuner.tracking.outbox import Outbox, is_outage, pending


class Server:
    """Stands for MLflow on the other end of the outbox: down for the first `down` calls."""

    def __init__(self, down: int = 0, refuse: set[int] = frozenset()):
        self.down, self.refuse = down, refuse
        self.calls, self.got = 0, []
        self.lock = threading.Lock()

    def __call__(self, op):
        with self.lock:
            self.calls += 1
            if self.calls <= self.down:
                raise MlflowException("API request to http://x failed with exception Connection refused")
            if op["n"] in self.refuse:
                raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)
            self.got.append(op["n"])


def test_outage_kind():
    assert is_outage(MlflowException("API request failed with exception Max retries exceeded"))
    assert is_outage(ConnectionRefusedError())
    assert not is_outage(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not is_outage(ValueError("a bug"))


def test_ops_are_sent_in_order_through_an_outage(tmp_path, monkeypatch):
    import tuner.tracking.outbox as outbox

    monkeypatch.setattr(outbox, "MAX_PAUSE", 0.05)
    lines = []
    server = Server(down=3, refuse={4})
    box = Outbox(tmp_path / "o.jsonl", server, where="http://x", echo=lines.append, limit=30)
    for n in range(8):
        box.put({"op": "x", "n": n})
    assert box.drain()
    assert server.got == [0, 1, 2, 3, 5, 6, 7]  # in order, once each; 4 was refused
    assert box.close() == 0 and not (tmp_path / "o.jsonl").exists()
    assert len([ln for ln in lines if "is unreachable (Connection refused)" in ln]) == 1
    assert len([ln for ln in lines if "is back after" in ln]) == 1
    assert [ln for ln in lines if "refused a write" in ln] == ["MLflow refused a write (x): bad value; dropped it"]
    assert box.sent == 7 and box.dropped == 1


def test_what_a_driver_could_not_send_is_sent_first_by_the_next(tmp_path):
    path = tmp_path / "o.jsonl"
    down = Server(down=10**9)
    box = Outbox(path, down, where="http://x", echo=lambda _: None, limit=0.2)
    for n in range(3):
        box.put({"op": "x", "n": n})
    assert not box.drain()  # down past the limit
    assert box.close() == 3
    with open(path, "a") as f:
        f.write('{"seq": 9, "op": {"op": "x", "n"')  # a line cut short by a killed driver
    assert [op["n"] for _, op in pending(path)] == [0, 1, 2]

    up = Server()
    box = Outbox(path, up, where="http://x", echo=lambda _: None)
    assert len(box) == box.inherited == 3
    box.put({"op": "x", "n": 3})
    assert box.drain() and box.close() == 0
    assert up.got == [0, 1, 2, 3] and not path.exists()


def test_a_held_op_stays_in_the_file_for_the_next_sender(tmp_path):
    """`hold` (a search's summary, sent by `mixtune sync` in the background): this outbox sends
    every other op, before and after it, and keeps the file with the held op pending."""
    path = tmp_path / "o.jsonl"
    server = Server()
    box = Outbox(path, server, where="http://x", echo=lambda _: None)
    box.put({"op": "x", "n": 0})
    box.hold({"op": "x", "n": 1})
    box.put({"op": "x", "n": 2})
    assert box.drain() and box.close() == 0
    assert server.got == [0, 2] and box.sent == 2 and box.held == 1
    assert [op["n"] for _, op in pending(path)] == [1]

    later = Server()
    box = Outbox(path, later, where="http://x", echo=lambda _: None)
    assert box.inherited == 1 and box.drain() and box.close() == 0
    assert later.got == [1] and not path.exists()


def test_pending_skips_acknowledged_ops(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [
        {"seq": 0, "op": {"n": 0}}, {"seq": 1, "op": {"n": 1}}, {"ack": 0}, {"seq": 2, "op": {"n": 2}}]) + "\n")
    assert pending(path) == [(1, {"n": 1}), (2, {"n": 2})]


def test_writer_ops_sent_twice_change_nothing(tmp_path):
    """After an outage or a killed driver an op may be sent again: one run, each epoch once."""
    from tuner.tracking import callback as tracking
    from tuner.settings import SearchSettings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = tracking.experiment_id(client, "writer")
    parent = client.create_run(exp).info.run_id
    settings = SearchSettings(name="w", space="icm", base={"epochs": 2}, metric="val_scel", mode="min",
                              tracking_uri=uri, experiment_id=exp, parent_run_id=parent,
                              results_dir=str(tmp_path))
    tags = {"mlflow.parentRunId": parent, tracking.TRIAL_TAG: "t1", tracking.SEARCH_TAG: "w",
            tracking.ROLE_TAG: "trial", "state": "RUNNING"}
    ops = [{"op": "trial", "trial": "t1", "tags": tags, "params": {"lr": "0.001"}, "searched": "lr"},
           *({"op": "metrics", "trial": "t1", "step": e, "time": 1000 + e, "metrics": {"epoch": e, "val_scel": 2.0 / e},
              "tags": {"node_id": "n"}} for e in (1, 2)),
           {"op": "end", "trial": "t1", "status": "FINISHED", "tags": {"state": "COMPLETED"}}]
    for writer in (tracking.Writer(settings), tracking.Writer(settings)):  # the second: a new driver
        for op in ops + ops:
            writer(op)
    _, _, runs = search_runs(uri, "w", "writer")
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.001"}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_scel")] == [1, 2]


def _asha(journal):
    from tuner.schedulers.asha import JournaledASHA

    s = JournaledASHA(journal=str(journal), time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    s.set_search_properties("val_scel", "min")
    return s


def test_journal_replay_rebuilds_the_rungs_and_the_stops(tmp_path):
    from ray.tune.schedulers import TrialScheduler

    from tuner.schedulers.asha import keep_trials

    journal = tmp_path / "asha.jsonl"
    first = _asha(journal)
    fresh = pickle.loads(pickle.dumps(first))  # what Tune keeps of the scheduler: its state at the start
    trials = {t: SimpleNamespace(trial_id=t) for t in ("a", "b", "c")}
    values = {"a": [3.0, 2.0, 1.5, 1.0], "b": [2.9, 3.4], "c": [2.5, 1.9, 1.2, 0.9]}
    decisions = {}
    for t, vs in values.items():
        first.on_trial_add(None, trials[t])
        for e, v in enumerate(vs, 1):
            decisions[(t, e)] = first.on_trial_result(None, trials[t], {"epoch": e, "val_scel": v})
            if decisions[(t, e)] == TrialScheduler.STOP:
                break
        first.on_trial_complete(None, trials[t], {"epoch": e, "val_scel": v})
    assert decisions[("b", 1)] == TrialScheduler.CONTINUE and decisions[("b", 2)] == TrialScheduler.STOP

    for t in trials.values():
        fresh.on_trial_add(None, t)
    assert [sorted(r.items()) for _, r in fresh._brackets[0]._rungs] == \
        [sorted(r.items()) for _, r in first._brackets[0]._rungs]
    # b re-reports the epoch it was stopped at, after a restore: stopped there again
    assert fresh.on_trial_result(None, trials["b"], {"epoch": 2, "val_scel": 3.4}) == TrialScheduler.STOP

    assert keep_trials(journal, {"a"}) > 0
    assert {e["trial"] for e in map(json.loads, journal.read_text().splitlines())} == {"a"}


def test_failure_kinds():
    from ray.exceptions import ActorDiedError, RayTaskError

    from trainables.trainable import StorageUnavailable
    from tuner.faults import classify

    trial = SimpleNamespace(last_result={})
    err = RayTaskError("train", "tb", StorageUnavailable("/mnt/shared", "RuntimeError: Unable to set up storage"))
    kind, text = classify(err, trial)
    assert kind == "storage" and text.startswith("storage path /mnt/shared is not writable")
    assert classify(RayTaskError("train", "tb", ValueError("the trial's own bug")), trial) is None
    assert classify(ActorDiedError(), trial) is None  # died on a node nobody says is gone: its own


def _pipe_closed(line):
    raise BrokenPipeError(32, "Broken pipe")  # print() into `mixtune search | head` once head has exited


def test_an_echo_that_raises_does_not_stop_the_sending(tmp_path):
    """Issue 21.2: a refused op's line cannot be printed (closed pipe): the ops behind it are still sent."""
    server = Server(refuse={0})
    box = Outbox(tmp_path / "o.jsonl", server, where="http://x", echo=_pipe_closed, limit=1)
    for n in range(3):
        box.put({"op": "x", "n": n})
    done = []
    waiter = threading.Thread(target=lambda: done.append(box.drain()), daemon=True)
    waiter.start()
    waiter.join(timeout=10)
    assert done == [True] and server.got == [1, 2] and box.died is None
    assert box.close() == 0


def test_drain_returns_when_the_sender_thread_died(tmp_path):
    """Issue 21.2: whatever ends the sender thread, drain returns within its limit and the ops stay on file."""
    import time

    class Dies(BaseException):
        pass

    def apply(op):
        raise Dies()

    path = tmp_path / "o.jsonl"
    box = Outbox(path, apply, where="http://x", echo=lambda _: None, limit=5)
    box.put({"op": "x", "n": 0})
    start = time.monotonic()
    done = []
    waiter = threading.Thread(target=lambda: done.append(box.drain(limit=5)), daemon=True)
    waiter.start()
    waiter.join(timeout=8)
    assert done == [False], "drain still blocked after 8 s"
    assert time.monotonic() - start < 5 and isinstance(box.died, Dies)
    assert box.close() == 1 and [op["n"] for _, op in pending(path)] == [0]


def test_drain_honours_its_limit_while_the_server_is_down(tmp_path, monkeypatch):
    import time

    import tuner.tracking.outbox as outbox

    monkeypatch.setattr(outbox, "MAX_PAUSE", 0.05)
    box = Outbox(tmp_path / "o.jsonl", Server(down=10**9), where="http://x", echo=_pipe_closed, limit=600)
    box.put({"op": "x", "n": 0})
    start = time.monotonic()
    assert not box.drain(limit=0.5)
    assert time.monotonic() - start < 3 and box.died is None
    assert box.close() == 1
