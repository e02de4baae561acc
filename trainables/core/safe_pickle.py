"""Reading pickles that hold data only: plain containers, numbers, strings and numpy arrays.

Unpickling runs whatever callable the file names (`os.system`, `builtins.eval`, any class's
constructor), so `pickle.load` on a downloaded file is running a downloaded program. The
datasets mixtune reads as pickles (the CLImage files, CIFAR's test batches) hold nothing but
dicts, lists and numpy arrays, so the unpickler here resolves only the few globals those need
and refuses every other one before it is called: a file naming anything else fails with a
one-line `DataError` and nothing of it runs.

Containers (dict, list, tuple), numbers, strings and bytes have opcodes of their own and need
no global; sets need `builtins.set`/`frozenset` in protocols below 4. numpy arrays need
`ndarray`, `dtype` and numpy's reconstruct functions (`_reconstruct` up to protocol 4,
`_frombuffer` for protocol 5, `scalar` for numpy scalars); numpy 1.x files name them under
`numpy.core`, numpy 2 files under `numpy._core`. Protocol 2 files written by Python 3 store bytes
through `_codecs.encode(text, "latin1")`: that one is admitted for latin-1 only.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["load_pickle", "loads_pickle"]


def _numpy_function(name: str, *modules: str) -> Any:
    """numpy's own function `name` from the first of `modules` that has it (numpy 2 moved numpy.core to numpy._core)."""
    import importlib

    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {', '.join(modules)}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as protocol-2 pickles of bytes use it; any codec but latin-1 is refused."""
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin-1 is allowed)")
    return codecs.encode(text, "latin1")


def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) -> the object it resolves to: every global a data-only pickle may name."""
    reconstruct = _numpy_function("_reconstruct", "numpy._core.multiarray", "numpy.core.multiarray")
    scalar = _numpy_function("scalar", "numpy._core.multiarray", "numpy.core.multiarray")
    frombuffer = _numpy_function("_frombuffer", "numpy._core.numeric", "numpy.core.numeric")
    table: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.multiarray", "scalar")] = scalar
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for builtins in ("builtins", "__builtin__"):  # Python 2 files name the module __builtin__
        table[(builtins, "set")] = set
        table[(builtins, "frozenset")] = frozenset
    table[("_codecs", "encode")] = _latin1_encode
    return table


class _DataUnpickler(pickle.Unpickler):
    """An unpickler whose globals are the table above and nothing else."""

    def __init__(self, file: io.BufferedIOBase, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        found = self._table.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id (an object stored outside the pickle)")


class _Refused(pickle.UnpicklingError):
    """A global the file names that is not a data type: refused before anything calls it."""


def _load(file: io.BufferedIOBase, where: str, encoding: str) -> Any:
    try:
        return _DataUnpickler(file, encoding).load()
    except _Refused as e:
        raise DataError(
            f"{where}: refused to unpickle {e}: a data file holds only plain containers, numbers and numpy arrays,"
            " and this one names something that could run code"
        ) from None
    except MemoryError:
        raise DataError(f"{where}: damaged pickle (it asks for more memory than there is)") from None
    except Exception as e:  # UnpicklingError, EOFError (cut short), ValueError/TypeError from numpy on bad state
        why = str(e).splitlines()[0] if str(e) else "no detail"
        raise DataError(f"{where}: not a readable pickle, damaged or cut short ({type(e).__name__}: {why})") from None


def load_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """The data a pickle file holds, read with the restricted unpickler; a one-line DataError otherwise.

    encoding: how Python 2 strings are decoded (latin-1 keeps the bytes of numpy arrays that
    Python 2 pickled, as torchvision reads CIFAR).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _load(f, str(path), encoding)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def loads_pickle(data: bytes, where: str = "<bytes>", encoding: str = "latin1") -> Any:
    """load_pickle for bytes in memory."""
    return _load(io.BytesIO(data), where, encoding)
