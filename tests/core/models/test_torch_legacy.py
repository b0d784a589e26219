"""The legacy `.pth` reader: tensors come back exactly, and a file that would run code is refused
without running it."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest

from jewelry_pipeline.core.models.backbone import packaged_weights_path
from jewelry_pipeline.core.models.torch_legacy import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    UnsafeWeightsError,
    read_state_dict,
)


def _plain(obj) -> bytes:
    """Pickle opcodes of a plain value, without the protocol header and STOP."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _header() -> bytes:
    system = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True, "type_sizes": {}}
    return b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, LEGACY_PROTOCOL, system))


def write_legacy(path: Path, storages: dict[str, np.ndarray], tensors: dict) -> None:
    """A state dict in torch.save's legacy layout, written opcode by opcode (no torch needed).

    `tensors` maps a name to (storage key, offset, size, stride)."""
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for name, (key, offset, size, stride) in tensors.items():
        storage = storages[key]
        kind = {np.float32: "FloatStorage", np.int64: "LongStorage"}[storage.dtype.type]
        persistent = (
            b"("
            + _plain("storage")
            + _global("torch", kind)
            + _plain(key)
            + _plain("cpu")
            + _plain(int(storage.size))
            + b"Nt"
        )
        args = (
            persistent
            + b"Q"
            + _plain(offset)
            + _plain(tuple(size))
            + _plain(tuple(stride))
            + b"\x89"
            + _global("collections", "OrderedDict")
            + b")R"
        )
        body += _plain(name) + _global("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"
    body += b"u."
    with path.open("wb") as file:
        file.write(_header() + body + pickle.dumps(list(storages), protocol=2))
        for array in storages.values():
            file.write(
                struct.pack("<q", array.size)
                + array.astype(array.dtype.newbyteorder("<")).tobytes()
            )


def test_reads_tensors_views_and_offsets_exactly(tmp_path):
    flat = np.arange(24, dtype=np.float32) * 0.5
    counts = np.array([7, -3], dtype=np.int64)
    path = tmp_path / "state.pth"
    write_legacy(
        path,
        {"100": flat, "200": counts},
        {
            "conv.weight": ("100", 0, (2, 3, 4), (12, 4, 1)),
            "conv.weight_t": ("100", 0, (4, 3, 2), (1, 4, 12)),  # a transposed view
            "bn.bias": ("100", 20, (4,), (1,)),  # an offset view
            "steps": ("200", 1, (), ()),
        },
    )
    state = read_state_dict(path)
    np.testing.assert_array_equal(state["conv.weight"], flat.reshape(2, 3, 4))
    np.testing.assert_array_equal(state["conv.weight_t"], flat.reshape(2, 3, 4).transpose(2, 1, 0))
    np.testing.assert_array_equal(state["bn.bias"], flat[20:24])
    assert state["steps"] == -3 and state["steps"].dtype == np.int64
    assert state["conv.weight"].flags.owndata


def test_reads_the_packaged_imagenet_weights():
    state = read_state_dict(packaged_weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())


def test_a_code_running_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + pickle.dumps({"weight": Payload()}, protocol=2))
    with pytest.raises(
        UnsafeWeightsError, match="refused to load 'posix.system'|refused to load 'os.system'"
    ):
        read_state_dict(path)
    assert not marker.exists()


def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path):
    path = tmp_path / "outside.pth"
    write_legacy(path, {"1": np.zeros(4, np.float32)}, {"w": ("1", 2, (4,), (1,))})
    with pytest.raises(UnsafeWeightsError, match="outside its storage"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PK\x03\x04 a zip archive", "not a legacy PyTorch weights file"),
        (pickle.dumps(12345, protocol=2), "not a legacy PyTorch weights file"),
    ],
)
def test_other_formats_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "other.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_state_dict(path)


def test_a_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "state.pth"
    write_legacy(path, {"1": np.ones(8, np.float32)}, {"w": ("1", 0, (8,), (1,))})
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_state_dict(path)
