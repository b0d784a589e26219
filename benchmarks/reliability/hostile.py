"""Hostile-file checks: a Keras model with a Lambda layer is refused, a PNG bomb costs no memory,
and every bad upload of the corpus gets its JSON 4xx."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import httpx

from benchmarks.reliability.checks import Check, Settings
from jewelry_testing.hostile import blank_png, hostile_uploads
from jewelry_testing.servers import start_bentoml

BOMB_RSS_LIMIT_MB = 50
MIN_BAD_UPLOAD_KINDS = 25


def _decode_bomb_rss(bomb_file: str, out: multiprocessing.Queue) -> None:
    """In a fresh process: peak memory added by refusing the PNG bomb in `bomb_file` (a few KB on
    disk).

    The bomb is built by the parent; this process only reads its bytes, so the peak before the
    decode is the interpreter's own and anything the decode allocates shows. Broken on purpose
    once: with both pixel caps lifted (`DecodeLimits(max_pixels=10**10)` and Pillow's
    `MAX_IMAGE_PIXELS = None`) the bomb decoded and added 4,202 MB, failing the check.
    """
    import resource

    from jewelry_pipeline.core.images import ImageRejected, decode_image

    bomb = Path(bomb_file).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_image(bomb)
        reason = "decoded"
    except ImageRejected as exc:
        reason = exc.reason
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put(
        {
            "bytes": len(bomb),
            "reason": reason,
            "peak_rss_before_mb": round(before / 1024, 1),
            "peak_rss_added_mb": round((after - before) / 1024, 2),
        }
    )


def _lambda_model_refused(workdir: Path) -> bool:
    """Whether the safe loader refuses a `.keras` model holding a Lambda layer."""
    import keras

    from jewelry_pipeline.core.models.files import load_keras_safe

    inputs = keras.Input((4,))
    evil = workdir / "lambda.keras"
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(evil)
    try:
        load_keras_safe(evil)
    except ValueError:
        return True
    return False


def _refuse_bomb(workdir: Path) -> dict:
    """Decode a 20000 x 20000 PNG bomb in a fresh process: how it was refused and what it cost."""
    bomb_file = workdir / "bomb.png"
    bomb_file.write_bytes(blank_png(20000, 20000, "1"))
    spawn = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = spawn.Queue()
    child = spawn.Process(target=_decode_bomb_rss, args=(str(bomb_file), queue))
    child.start()
    bomb = queue.get(timeout=120)
    child.join(timeout=30)
    return bomb


def check_hostile_files(bundle: Path, workdir: Path, settings: Settings) -> Check:
    """A Lambda-layer model is refused; a bomb costs no memory; every bad upload gets its 4xx."""
    lambda_refused = _lambda_model_refused(workdir)
    bomb = _refuse_bomb(workdir)

    decode_cap = json.loads((bundle / "config.json").read_text())["preprocessing"]["max_bytes"]
    request_cap = max(3_000_000, decode_cap + 200_000)  # room for the over-the-decode-cap upload
    uploads = hostile_uploads(request_cap, decode_cap)
    caps = {"JEWELRY_MAX_CONCURRENCY": "1000", "JEWELRY_MAX_REQUEST_BYTES": str(request_cap)}
    server = start_bentoml(bundle, workdir / "hostile.log", caps)
    answers, wrong = {}, []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for kind, request, expected in uploads:
                response = client.post("/recommend", **request)
                is_json = response.headers.get("content-type", "").startswith("application/json")
                answers[kind] = response.status_code
                if response.status_code != expected or not is_json:
                    wrong.append(f"{kind}: {response.status_code} (expected {expected})")
            still_up = (
                client.get("/livez").status_code == 200 and client.get("/readyz").status_code == 200
            )
    finally:
        server.stop()
    bad_kinds = sum(1 for *_, expected in uploads if expected >= 400)
    figures = {
        "lambda_model_refused": lambda_refused,
        "bomb_png_bytes": bomb["bytes"],
        "bomb_refused_as": bomb["reason"],
        "bomb_peak_rss_added_mb": bomb["peak_rss_added_mb"],
        "bad_upload_kinds": bad_kinds,
        "wrong_answers": wrong,
        "server_up_after": still_up,
        "answers": answers,
    }
    cheap_bomb = bomb["peak_rss_added_mb"] < BOMB_RSS_LIMIT_MB or not settings.judge_figures
    passed = (
        lambda_refused
        and bomb["reason"] == "too_large"
        and cheap_bomb
        and not wrong
        and still_up
        and bad_kinds >= MIN_BAD_UPLOAD_KINDS
    )
    return Check(
        "hostile files: Lambda model, PNG bomb, bad-upload corpus",
        passed,
        figures,
        "4xx JSON for each of the bad uploads; the server stays up",
    )
