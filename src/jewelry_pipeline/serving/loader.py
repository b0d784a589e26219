"""Which bundle a worker serves: found (a folder, or the BentoML store's champion), loaded off the
request path, watched for new versions and swapped, all in one `BundleHolder`.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path

import anyio
import bentoml

from jewelry_pipeline.core.bundle import BUNDLE_MODEL_NAME, BundleError, read_bundle
from jewelry_pipeline.serving.engine import RecommendationEngine
from jewelry_pipeline.serving.json_answers import short_cause
from jewelry_pipeline.serving.uploads import ApiError

logger = logging.getLogger(__name__)

# Model threads run at this nice value: with every core busy running models, the event loop (probes,
# routing, 429s) is still scheduled first. Raising one's own nice value needs no privilege.
MODEL_NICE = int(os.environ.get("JEWELRY_MODEL_NICE", "5"))


def lower_thread_priority() -> None:
    """Run the calling thread (and the threads it starts, such as TensorFlow's pools) at
    `MODEL_NICE`."""
    if MODEL_NICE > 0 and hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MODEL_NICE)


def bundle_reference() -> str:
    """What to serve: `JEWELRY_BUNDLE`, or the latest champion in the BentoML model store."""
    return os.environ.get("JEWELRY_BUNDLE", f"{BUNDLE_MODEL_NAME}:latest")


def names_a_folder(reference: str) -> bool:
    """Whether a bundle reference is a folder path rather than a BentoML model tag."""
    return Path(reference).is_dir() or os.sep in reference or reference.startswith(".")


def bundle_location(reference: str) -> tuple[Path, str]:
    """A bundle folder, or the folder of a BentoML model tag in the local store, with a label."""
    path = Path(reference)
    if names_a_folder(reference):
        return path, str(path)
    try:
        model = bentoml.models.get(reference)
    except Exception as exc:  # noqa: BLE001 - any store failure means there is nothing to serve
        raise BundleError(
            f"no serving bundle '{reference}' in the BentoML model store ({exc}); "
            "run `make run` first"
        ) from None
    return Path(model.path), str(model.tag)


def latest_in_store(reference: str) -> str | None:
    """The model name when `reference` is a store tag that follows the latest version (what live
    reload and sub-style edits move), else None."""
    if names_a_folder(reference):
        return None
    name, _, version = reference.partition(":")
    return name if version in ("", "latest") else None


def public_cause(exc: Exception, path: Path) -> str:
    """A load failure as the public may read it: its kind and one short line, with no file path of
    this server (the log has the full text)."""
    message = str(exc)
    for location in sorted({str(path.resolve()), str(path)}, key=len, reverse=True):
        message = message.replace(location, "the bundle")
    return short_cause(type(exc).__name__, message)


class BundleHolder:
    """The engine a worker serves, or why there is none.

    `start` loads the bundle in a thread of its own and, every `reload_seconds` (0: never), looks
    for a new version, loads it beside the served one and swaps. Requests take `engine` once and
    keep it across a swap.
    """

    def __init__(self, reload_seconds: float):
        self.reload_seconds = float(reload_seconds)
        self.engine: RecommendationEngine | None = None
        self.load_error: str | None = None  # the first load failed (public cause)
        self.reload_error: str | None = None  # the last new version was refused (public cause)
        self._serving: Path | None = None  # the version folder being served
        self._refused: Path | None = None  # the last version that failed to load

    @property
    def state(self) -> str:
        """`loading`, `ready` or `failed`."""
        if self.load_error is not None:
            return "failed"
        return "ready" if self.engine is not None else "loading"

    def start(self) -> None:
        """Load the referenced bundle (and watch it) off the request path."""
        path, label = bundle_location(bundle_reference())
        threading.Thread(
            target=self.load, args=(path, label), name="bundle-loader", daemon=True
        ).start()
        if self.reload_seconds > 0:
            threading.Thread(target=self._watch, name="bundle-watcher", daemon=True).start()

    def load(self, path: Path, label: str) -> None:
        """The first load; /readyz answers 503 until it is done."""
        lower_thread_priority()  # before TensorFlow starts its thread pools, which inherit it
        version = path.resolve()  # the version loaded, even if the link moves meanwhile
        try:
            engine = RecommendationEngine(read_bundle(version), label)
        except Exception as exc:  # noqa: BLE001 - reported through /readyz, /status, the page and the log
            logger.error(
                "Serving bundle %s failed to load, nothing will be served until a new version is "
                "written (live reload) or the service restarted with a good one: %s: %s",
                label,
                type(exc).__name__,
                exc,
            )
            self.load_error = public_cause(exc, path)
            self._refused = version
            return
        self._serving = version
        self.engine = engine
        # Models, index and catalog (~520,000 objects) live as long as the process: take them out of
        # the collector's view, so full collections under load scan only request objects.
        gc.collect()
        gc.freeze()
        logger.info("Serving bundle %s loaded", label)

    def _watch(self) -> None:
        """Every `reload_seconds`, `swap_if_new` once the first load has ended."""
        lower_thread_priority()
        while True:
            time.sleep(self.reload_seconds)
            if self.engine is not None or self.load_error is not None:
                self.swap_if_new()

    def swap_if_new(self) -> None:
        """Live reload: when the reference points at another version, load and verify it beside the
        one being served, then swap. A version that fails is refused (the old one keeps serving,
        /status names the failure) and not retried until the reference moves again; a service
        whose first load failed starts serving once a good version is written."""
        try:
            path, label = bundle_location(bundle_reference())
            version = path.resolve()
        except (BundleError, OSError):
            return
        if version in (self._serving, self._refused):
            return
        try:
            engine = RecommendationEngine(read_bundle(version), label)
        except Exception as exc:  # noqa: BLE001 - reported through /status and the log
            self._refused = version
            self.reload_error = public_cause(exc, path)
            logger.error(
                "New bundle version %s refused, still serving the previous one: %s", label, exc
            )
            return
        self.engine = engine  # requests in flight keep the engine they took
        self._serving, self.reload_error = version, None
        self.load_error = None  # a failed first load is now served over
        # The start-up freeze kept the first engine out of the collector's reach: let the replaced
        # one (Keras objects are full of cycles) be freed once its requests finish.
        gc.unfreeze()
        logger.info("Now serving bundle %s (digest %s)", label, engine.version["bundle_digest"])

    async def ready_engine(self, wait_seconds: float) -> RecommendationEngine:
        """The loaded engine; a request that arrives while the bundle loads (a start, or a restarted
        worker) waits up to `wait_seconds` for it instead of failing, then gets 503."""
        deadline = time.monotonic() + wait_seconds
        while self.engine is None and self.load_error is None and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        if self.load_error is not None:
            raise ApiError(
                503, f"the model bundle failed to load: {self.load_error}", "load_failed"
            )
        if self.engine is None:
            raise ApiError(503, "the model bundle is still loading", "not_ready")
        return self.engine
