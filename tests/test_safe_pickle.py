"""The restricted unpickler: data comes back, anything that could run code is refused before it runs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from trainables.core.errors import DataError
from trainables.core.safe_pickle import load_pickle, loads_pickle


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert text and "\n" not in text, text
    return text


DATA = {
    "images": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
    "cl_labels": [[1, 2, 3], [0, 0, 9]],
    "ord_labels": np.array([5, 7], dtype=np.int64),
    "floats": np.linspace(0, 1, 5, dtype=np.float32),
    "scalars": [np.int64(3), np.float64(0.5), 7, 2.5, True, None],
    "text": ("a", b"raw bytes"),
    "sets": [{1, 2}, frozenset({"x"})],
}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_data_round_trips_in_every_protocol(tmp_path, protocol):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(DATA, protocol=protocol))
    out = load_pickle(path)
    assert set(out) == set(DATA)
    for key in ("images", "ord_labels", "floats"):
        assert out[key].dtype == DATA[key].dtype and np.array_equal(out[key], DATA[key])
    assert out["cl_labels"] == DATA["cl_labels"] and out["scalars"] == DATA["scalars"]
    assert out["text"] == DATA["text"] and out["sets"] == DATA["sets"]


def test_numpy_1_names_and_python_2_strings_load():
    # numpy 1.x files name numpy.core (numpy 2 moved it to numpy._core); Python 2 files name __builtin__
    blob = pickle.dumps({"a": np.arange(4, dtype=np.uint8), "s": {1}}, protocol=2)
    blob = blob.replace(b"numpy._core", b"numpy.core")
    blob = blob.replace(b"cbuiltins\n", b"c__builtin__\n")
    out = loads_pickle(blob)
    assert out["a"].tolist() == [0, 1, 2, 3] and out["s"] == {1}


def test_a_python_2_numpy_1_pickle_as_cifar_ships_it():
    # CIFAR's test batches are Python 2 pickles of numpy 1 arrays: str keys and the array's bytes
    # as Python 2 strings (SHORT_BINSTRING), decoded as latin-1 and handed back to numpy unchanged.
    # Written opcode by opcode: {'data': uint8 [[0, 1, 2, 255]], 'labels': [3]}
    arr = (b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n" b"K\x00\x85" b"U\x01b" b"\x87R"
           b"(K\x01K\x01K\x04\x86" b"cnumpy\ndtype\n" b"U\x02u1K\x00K\x01\x87R"
           b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb" b"\x89U\x04\x00\x01\x02\xfftb")
    out = loads_pickle(b"\x80\x02}(U\x04data" + arr + b"U\x06labels]K\x03au.")
    assert set(out) == {"data", "labels"} and out["labels"] == [3]
    assert out["data"].dtype == np.uint8 and out["data"].tolist() == [[0, 1, 2, 255]]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_that_would_run_code_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"images": np.zeros(2), "cl_labels": RunsCode(marker)}, protocol=protocol))
    pickle.loads(pickle.dumps(RunsCode(tmp_path / "control")))  # the planted call does run under pickle.load
    assert (tmp_path / "control").exists()
    with pytest.raises(DataError, match=r"evil.pkl: refused to unpickle (posix|nt|os)\.system: a data file holds only") as e:
        load_pickle(path)
    one_line(e)
    assert not marker.exists()


@pytest.mark.parametrize("payload, name", [
    (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
    (b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR.", "builtins.getattr"),
    (b"csubprocess\nPopen\n((S'true'\nltR.", "subprocess.Popen"),
    (b"cnumpy\nload\n(S'x.npy'\ntR.", "numpy.load"),
    (b"ccopyreg\n_reconstructor\n(cbuiltins\nobject\ncbuiltins\nobject\nNtR.", "copyreg._reconstructor"),
    (b"c_codecs\nencode\n(S'text'\nS'rot13'\ntR.", None),  # admitted for latin-1 only
])
def test_other_globals_are_refused(payload, name):
    with pytest.raises(DataError) as e:
        loads_pickle(payload, "f.pkl")
    text = one_line(e)
    assert (f"refused to unpickle {name}" in text) if name else ("only latin-1 is allowed" in text)


def test_a_persistent_id_is_refused():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "outside" if obj == "x" else None

    import io

    buf = io.BytesIO()
    P(buf, protocol=4).dump(["x"])
    with pytest.raises(DataError, match=r"refused to unpickle a persistent id") as e:
        loads_pickle(buf.getvalue(), "p.pkl")
    one_line(e)


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps(DATA)[:200], b"\x80\x05\x95"])
def test_damaged_files_are_one_line(tmp_path, content):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"bad.pkl: not a readable pickle, damaged or cut short") as e:
        load_pickle(path)
    one_line(e)


def test_unreadable_path_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"nope.pkl: cannot read \(No such file or directory\)") as e:
        load_pickle(tmp_path / "nope.pkl")
    one_line(e)
    with pytest.raises(DataError, match=r"cannot read \(Is a directory\)"):
        load_pickle(tmp_path)


def test_nothing_runs_in_a_fresh_interpreter(tmp_path):
    # the same refusal seen from outside: a process that loads the planted file exits cleanly, no marker
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
    code = ("import sys; from trainables.core.safe_pickle import load_pickle\n"
            "try:\n    load_pickle(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.count("\n") == 1 and "refused to unpickle" in out.stdout
    assert not marker.exists()
