"""TensorFlow's native start-up lines that `TF_CPP_MIN_LOG_LEVEL` cannot reach: absl logs before
its logging is initialised (a TensorFlow 2.19+ bug), so they are dropped while TensorFlow loads."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# The exact lines dropped; anything else TensorFlow prints while it loads is passed on.
TENSORFLOW_IMPORT_NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written"),
    re.compile(rb"^I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\."),
)


@contextmanager
def native_stderr_without(patterns: Sequence[re.Pattern[bytes]]) -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 meanwhile, then write it back without the
    lines that match `patterns` (all of it if the body raises)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().splitlines(keepends=True)
            kept = [ln for ln in lines if failed or not any(p.match(ln) for p in patterns)]
            if kept:
                os.write(2, b"".join(kept))


class QuietTensorFlowImport:
    """A `sys.meta_path` finder: finds `tensorflow` as the other finders do, and loads it inside
    `native_stderr_without` (importlib is imported only then, off every start-up's path)."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 - importlib's protocol
        """The real spec of `tensorflow`, its loader wrapped; None for any other module."""
        if name != "tensorflow":
            return None
        import importlib.util

        sys.meta_path.remove(self)  # once: later imports find the loaded module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module) -> None:  # noqa: ANN001 - importlib's protocol
            with native_stderr_without(TENSORFLOW_IMPORT_NOISE):
                load(module)

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Drop TensorFlow's known start-up lines in this process, if it has not loaded yet."""
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())
