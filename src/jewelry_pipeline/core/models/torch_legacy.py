"""A reader of PyTorch's legacy `.pth` state dicts that never runs pickled code (no torch needed).

Only the names a plain state dict uses are allowed: `collections.OrderedDict`, the tensor rebuild
function and the typed storages. Any other global is refused with `UnsafeWeightsError`.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# Magic number and protocol version of torch.save's legacy (non-zip) format.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeWeightsError(ValueError):
    """A weights file asks for something a plain state dict never needs (it could run code)."""


@dataclass(frozen=True)
class _StorageType:
    """Placeholder for `torch.<Type>Storage`: only its element type matters."""

    dtype: Any


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes follow the pickle in the file."""

    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    """A tensor view on a storage, resolved once the storages are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def resolve(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UnsafeWeightsError(f"storage {self.storage.key} has no data in the file")
        if not self.size:
            return np.array(data[self.offset])
        extent = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if self.offset < 0 or extent > len(data) or min(self.stride) < 0:
            raise UnsafeWeightsError(
                f"a tensor of shape {self.size} reaches outside its storage {self.storage.key}"
            )
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a copy: the result owns its memory


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise UnsafeWeightsError("a tensor is rebuilt from something that is not a storage")
    return _TensorRef(storage, int(offset), tuple(int(n) for n in size), tuple(map(int, stride)))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the names of a plain state dict."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) in (
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_tensor"),
        ):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise UnsafeWeightsError(
            f"refused to load '{module}.{name}': a weights file may only hold tensors "
            "(collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.*Storage)"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeWeightsError(f"unexpected persistent id {str(pid)[:80]!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeWeightsError("a storage of an unknown type")
        if key not in self._storages:
            self._storages[key] = _Storage(key, storage_type.dtype, numel)
        return self._storages[key]


def _load_plain(file: BinaryIO, storages: dict[str, _Storage]) -> Any:
    return _RestrictedUnpickler(file, storages).load()


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy `torch.save` state dict as NumPy arrays, keyed by name.

    Raises `UnsafeWeightsError` for anything but tensors, and ValueError for another format.
    """
    path = Path(path)
    storages: dict[str, _Storage] = {}
    with path.open("rb") as file:
        try:
            magic = _load_plain(file, storages)
        except UnsafeWeightsError:
            raise
        except Exception as exc:
            raise ValueError(f"{path} is not a legacy PyTorch weights file ({exc})") from exc
        if magic != LEGACY_MAGIC:
            raise ValueError(
                f"{path} is not a legacy PyTorch weights file (the zip format is not read here)"
            )
        protocol = _load_plain(file, storages)
        if protocol != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported PyTorch protocol version {protocol}")
        system = _load_plain(file, storages)
        if not isinstance(system, dict) or not system.get("little_endian", False):
            raise ValueError(f"{path}: only little-endian weights files are read")
        state = _load_plain(file, storages)
        keys = _load_plain(file, storages)
        if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
            raise UnsafeWeightsError(f"{path}: the storage list does not match the tensors")
        for key in map(str, keys):
            storage = storages[key]
            header = file.read(8)
            if len(header) != 8:
                raise ValueError(f"{path} is truncated (storage {key})")
            (numel,) = struct.unpack("<q", header)
            if numel != storage.numel:
                raise ValueError(
                    f"{path}: storage {key} has {numel} elements, expected {storage.numel}"
                )
            nbytes = numel * np.dtype(storage.dtype).itemsize
            raw = file.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path} is truncated (storage {key})")
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    if not isinstance(state, dict):
        raise UnsafeWeightsError(f"{path} does not hold a state dict")
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise UnsafeWeightsError(f"{path}: entry {str(name)[:80]!r} is not a tensor")
        tensors[str(name)] = value.resolve()
    return tensors
