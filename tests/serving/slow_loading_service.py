"""Test double: the project's service whose bundle takes 2 s longer to read, so that a readiness
probe sees it loading (`bentoml serve tests.serving.slow_loading_service:JewelryService`)."""

from __future__ import annotations

import time

from jewelry_pipeline.serving import loader, service

READ_DELAY_SECONDS = 2.0
_read_bundle = loader.read_bundle


def _slow_read_bundle(*args, **kwargs):
    time.sleep(READ_DELAY_SECONDS)
    return _read_bundle(*args, **kwargs)


loader.read_bundle = _slow_read_bundle
JewelryService = service.JewelryService
