"""Red-team re-run: the hostile requests of issue #31 against a served bundle, each with its answer
and a verdict, written to docs/SECURITY.md and benchmarks/results/redteam.json.

`python -m benchmarks.redteam [--bundle PATH]` (or `make redteam`) serves the bundle of a
`make run` (or PATH) with `bentoml serve` on 127.0.0.1; every probe is bounded in count and time.
The test suite runs the quick probes against a tiny bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks._report import run_outputs
from jewelry_testing.hostile import noise_photo
from jewelry_testing.servers import (
    Server,
    bentoml_serve_command,
    free_port,
    start,
    start_bentoml,
    wait_until_every_worker_is_ready,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "redteam.json"
REPORT = ROOT / "docs" / "SECURITY.md"
ERROR_BYTES = 2048  # an error answer's bound
ECHO_CHARS = 120  # an echoed value's bound (about 100 characters, quoted)
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options")


@dataclass
class Probe:
    """One hostile request: what was sent, what came back, and whether that is right."""

    group: str
    sent: str
    answer: str
    passed: bool


def _clean_answer(response: httpx.Response, statuses: tuple[int, ...]) -> tuple[bool, str]:
    """Whether an answer is one of `statuses`, JSON with a `reason` (errors), ASCII, bounded and
    with the security headers; and a one-line summary of it."""
    body = response.content
    problems = []
    if response.status_code not in statuses:
        problems.append(f"status not in {statuses}")
    if response.status_code >= 400:
        if not response.headers.get("content-type", "").startswith("application/json"):
            problems.append("not JSON")
        elif "reason" not in response.json():
            problems.append("no reason")
        if len(body) > ERROR_BYTES:
            problems.append(f"{len(body)} bytes")
    if any(byte > 127 for byte in body) and response.status_code >= 400:
        problems.append("not ASCII")
    missing = [h for h in SECURITY_HEADERS if h not in response.headers]
    if missing:
        problems.append(f"missing {missing}")
    reason = ""
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        reason = f" {response.json().get('reason')}"
    summary = f"{response.status_code}{reason}, {len(body)} bytes"
    return not problems, summary + ("" if not problems else f" ({'; '.join(problems)})")


def _probe(
    group: str, sent: str, response: httpx.Response, statuses: tuple[int, ...], extra: bool = True
) -> Probe:
    """A probe from one answer; `extra` is any further condition of the verdict."""
    passed, summary = _clean_answer(response, statuses)
    return Probe(group, sent, summary, passed and extra)


def _json_body(text: str) -> dict:
    """httpx keyword arguments of a raw JSON body (lone surrogates and NULs kept as escapes)."""
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


PHOTO_NAMES = {
    "green": "a plain green square",
    "invoice": "a photo of invoice text",
    "noise": "random noise",
}


def _photo(kind: str, side: int = 128) -> bytes:
    """A PNG of a plain green square, of invoice-like text, or of noise."""
    import cv2

    if kind == "green":
        image = np.zeros((side, side, 3), np.uint8)
        image[:] = (40, 200, 40)
    elif kind == "invoice":
        image = np.full((side * 2, side * 2, 3), 255, np.uint8)
        for row, line in enumerate(
            ["INVOICE 2041", "Qty 3  x 19.90", "Total EUR 59.70", "VAT 20%"]
        ):
            cv2.putText(image, line, (8, 40 + 50 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
    else:
        return noise_photo("PNG", (side, side))
    ok, encoded = cv2.imencode(".png", image[:, :, ::-1])
    return encoded.tobytes()


def echo_and_field_probes(client: httpx.Client) -> list[Probe]:
    """Lone surrogates, NULs and very long values at every field: 4xx JSON, cut echoes."""
    probes = []
    cases = [
        ('{"item_id": "\\ud800"}', "item_id a lone surrogate"),
        ('{"item_id": "x", "k": "\\ud800"}', "k a lone surrogate"),
        ('{"item_id": "a\\u0000b"}', "item_id with a NUL"),
        ('{"item_id": "' + "y" * 60_000 + '"}', "item_id of 60,000 characters"),
        ('{"item_id": "x", "k": "' + "9" * 60_000 + '"}', "k of 60,000 digits"),
    ]
    for body, sent in cases:
        response = client.post("/recommend_by_id", **_json_body(body))
        echo = response.text if response.status_code >= 400 else ""
        longest = max((len(word) for word in echo.replace('"', " ").split()), default=0)
        probes.append(
            _probe(
                "bounded errors",
                f"POST /recommend_by_id {sent}",
                response,
                (400, 404),
                longest <= ECHO_CHARS,
            )
        )
    photo = noise_photo("JPEG")
    for k, sent in (("\ud800", "a lone surrogate"), ("9" * 60_000, "60,000 digits")):
        response = client.post(
            "/recommend",
            files={"image": ("p.jpg", photo, "image/jpeg")},
            data={"k": k.encode("utf-8", "surrogatepass")},
        )
        probes.append(_probe("bounded errors", f"POST /recommend k {sent}", response, (400,)))
    return probes


def strictness_probes(client: httpx.Client) -> list[Probe]:
    """`k` plain ASCII digits only, a repeated field refused, JSON bodies capped at 64 KB."""
    probes = []
    photo = noise_photo("JPEG")
    for k in ("1_0", "\u0665", " 5 ", "+5", "5.0"):
        response = client.post(
            "/recommend", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"k": k}
        )
        probes.append(_probe("input strictness", f"POST /recommend k={k!r}", response, (400,)))
    repeated = client.post(
        "/recommend",
        files=[("image", ("p.jpg", photo, "image/jpeg"))],
        data={"k": ["3", "5"]},
    )
    probes.append(_probe("input strictness", "POST /recommend with k twice", repeated, (400,)))
    big = client.post("/recommend_by_id", **_json_body('{"item_id": "' + "z" * 1_000_000 + '"}'))
    probes.append(_probe("input strictness", "POST /recommend_by_id, 1 MB JSON", big, (413,)))
    return probes


def http_probes(client: httpx.Client) -> list[Probe]:
    """HEAD on GET routes, ETags honoured, server-made 405/416 shaped as JSON."""
    probes = []
    for path in ("/", "/app.js", "/status", "/catalog"):
        head = client.head(path)
        length, body = _raw_head(str(client.base_url), path)
        same = length == head.headers.get("content-length") == str(len(client.get(path).content))
        probe = _probe("http", f"HEAD {path}", head, (200,), body == b"" and same)
        probe.answer += f", {len(body)} bytes after the headers on the wire"
        probes.append(probe)
    first = client.get("/app.js")
    tag = first.headers.get("etag")
    again = client.get("/app.js", headers={"if-none-match": tag or '"none"'})
    probes.append(_probe("http", "GET /app.js with its ETag", again, (304,), tag is not None))
    probes.append(_probe("http", "PUT /", client.put("/"), (405,)))
    probes.append(_probe("http", "DELETE /recommend", client.delete("/recommend"), (405,)))
    ranged = client.get("/app.js", headers={"range": "bytes=999999999-"})
    probes.append(_probe("http", "GET /app.js, Range past its end (ignored)", ranged, (200,)))
    probes.append(_probe("http", "GET /no/such/path", client.get("/no/such/path"), (404,)))
    return probes


def _raw_head(url: str, path: str) -> tuple[str | None, bytes]:
    """HEAD `path` over a plain socket (httpx never reads a HEAD body): the Content-Length header
    and whatever the server sent after the headers."""
    host, port = url.rstrip("/").removeprefix("http://").split(":")
    request = f"HEAD {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lengths = [
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    return (lengths[0] if lengths else None), body


def origin_probes(client: httpx.Client) -> list[Probe]:
    """The Host allow-list and the Origin check with its scheme."""
    host = client.base_url.host
    port = client.base_url.port
    photo = noise_photo("JPEG")
    probes = [
        _probe(
            "origin",
            "GET / with Host: evil.example (DNS rebinding)",
            client.get("/", headers={"host": "evil.example"}),
            (400,),
        ),
        _probe(
            "origin",
            "GET /status with Host: evil.example:80",
            client.get("/status", headers={"host": f"evil.example:{port}"}),
            (400,),
        ),
    ]
    for origin in (f"ftp://{host}:{port}", "http://evil.example", "null"):
        response = client.post(
            "/recommend",
            files={"image": ("p.jpg", photo, "image/jpeg")},
            headers={"origin": origin},
        )
        probes.append(_probe("origin", f"POST /recommend with Origin: {origin}", response, (403,)))
    same = client.post(
        "/recommend",
        files={"image": ("p.jpg", photo, "image/jpeg")},
        headers={"origin": f"http://{host}:{port}"},
    )
    probes.append(_probe("origin", "POST /recommend from its own page's origin", same, (200,)))
    return probes


def catalog_probes(client: httpx.Client, catalog_photo: bytes | None) -> list[Probe]:
    """Photos that are not in the catalog answered "not in our catalog"; a catalog photo is not."""
    probes = []
    for kind in ("green", "invoice", "noise"):
        response = client.post(
            "/recommend", files={"image": (f"{kind}.png", _photo(kind), "image/png")}
        )
        refused = response.status_code == 200 and response.json().get("close_match") is False
        refused = refused and response.json().get("items") == []
        body = response.json() if response.status_code == 200 else {}
        probe = _probe(
            "not in our catalog", f"POST /recommend, {PHOTO_NAMES[kind]}", response, (200,), refused
        )
        probe.answer += (
            f", close_match {body.get('close_match')}, {len(body.get('items', []))} items"
        )
        probes.append(probe)
    if catalog_photo is not None:
        response = client.post(
            "/recommend", files={"image": ("item.jpg", catalog_photo, "image/jpeg")}
        )
        body = response.json() if response.status_code == 200 else {}
        probe = _probe(
            "not in our catalog",
            "POST /recommend, a catalog item's thumbnail",
            response,
            (200,),
            body.get("close_match") is True,
        )
        probe.answer += f", close_match {body.get('close_match')}"
        probes.append(probe)
    return probes


def _trickle(url: str, seconds: float, rate: float, outcome: list) -> None:
    """Upload a photo at `rate` bytes/s for at most `seconds`; record how the server answered."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "redteamboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + noise_photo("JPEG")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /recommend HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, int(port)), timeout=seconds)
    except OSError as exc:
        outcome.append((f"no connection ({type(exc).__name__})", time.monotonic() - started))
        return
    with sock:
        sock.sendall(head)
        sock.settimeout(1.0 / rate)
        sent = 0
        while sent < len(body) and time.monotonic() - started < seconds:
            try:
                sock.sendall(body[sent : sent + 1])
                sent += 1
                answer = sock.recv(256)
                if answer:
                    outcome.append(
                        (
                            answer.split(b"\r\n")[0].decode(errors="replace"),
                            time.monotonic() - started,
                        )
                    )
                    return
            except TimeoutError:
                continue
            except OSError:
                outcome.append(("closed", time.monotonic() - started))
                return
        outcome.append(("still open", time.monotonic() - started))


def _latencies(client: httpx.Client, count: int, pause: float) -> list[tuple[int, float]]:
    """`count` normal /recommend requests, `pause` s apart: (status, seconds) each."""
    photo = noise_photo("JPEG")
    found = []
    for _ in range(count):
        started = time.monotonic()
        status = client.post(
            "/recommend", files={"image": ("p.jpg", photo, "image/jpeg")}
        ).status_code
        found.append((status, time.monotonic() - started))
        time.sleep(pause)
    return found


def slow_client_probes(server: Server, slots: int, seconds: float = 20) -> list[Probe]:
    """2 x `slots` uploads at about 50 bytes/s while normal requests keep coming; a header line
    every 2 s; an idle socket."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = _latencies(client, 10, 0.1)
        outcomes: list = []
        threads = [
            threading.Thread(target=_trickle, args=(server.url, seconds, 50, outcomes))
            for _ in range(2 * slots)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1)
        during = _latencies(client, 20, 0.3)
        for thread in threads:
            thread.join(seconds + 10)
    p50 = {
        name: float(np.median([s for _, s in rows]))
        for name, rows in (("before", before), ("during", during))
    }
    ok = all(status == 200 for status, _ in during)
    probes = [
        Probe(
            "slow clients",
            f"{2 * slots} uploads at 50 bytes/s against {slots} model slots, 20 normal requests",
            f"normal: {sum(s == 200 for s, _ in during)}/20 answered 200, p50 "
            f"{1000 * p50['during']:.0f} ms (before: {1000 * p50['before']:.0f} ms); slow uploads: "
            + ", ".join(sorted({f"{o} after {t:.0f} s" for o, t in outcomes})),
            ok
            and p50["during"] <= 3 * p50["before"] + 0.05
            and len(outcomes) == 2 * slots  # every slow upload ran and ended
            and not any(thread.is_alive() for thread in threads)
            and all(o.startswith("HTTP/1.1 408") or o == "closed" for o, _ in outcomes),
        )
    ]
    probes.append(
        _held_socket(server, b"GET / HTTP/1.1\r\n", b"X-Slow: 1\r\n", "a header line every 2 s")
    )
    probes.append(_held_socket(server, b"", b"", "an idle socket (nothing sent)"))
    return probes


def _held_socket(server: Server, first: bytes, every: bytes, sent: str, bound: float = 30) -> Probe:
    """Send `first`, then `every` each 2 s: the server must close the socket within 15 s."""
    host, port = server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    closed_after = None
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(first)
        while time.monotonic() - started < bound:
            try:
                if every:
                    sock.sendall(every)
                if sock.recv(256) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    answer = (
        "still open after 30 s" if closed_after is None else f"closed after {closed_after:.1f} s"
    )
    return Probe("slow clients", sent, answer, closed_after is not None and closed_after <= 15)


def broken_bundle(bundle: Path, work: Path) -> Path:
    """A copy of `bundle` that verifies (every sha256 matches) but whose classifier cannot load."""
    copy = work / "broken-bundle"
    shutil.copytree(bundle.resolve(), copy)
    (copy / "classifier.keras").write_bytes(b"PK\x03\x04 not a Keras archive")
    files = json.loads((copy / "files.json").read_text())

    files["classifier.keras"] = hashlib.sha256((copy / "classifier.keras").read_bytes()).hexdigest()
    (copy / "files.json").write_text(json.dumps(files, indent=2, sort_keys=True))
    return copy


def failed_load_probes(bundle: Path, work: Path) -> list[Probe]:
    """A bundle that verifies but cannot load: only the error's kind and a short line published."""
    port = str(free_port())
    server = start(
        bentoml_serve_command(port),
        {"PORT": port, "JEWELRY_BUNDLE": str(broken_bundle(bundle, work)), "JEWELRY_WORKERS": "1"},
        "/livez",
        work / "broken.log",
    )
    probes = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while client.get("/status").json().get("state") != "failed":
                if time.monotonic() > deadline:
                    raise RuntimeError("the broken bundle never reported a failed load")
                time.sleep(0.5)
            photo = noise_photo("JPEG")
            for method, path, kwargs in (
                ("GET", "/readyz", {}),
                ("GET", "/status", {}),
                ("POST", "/recommend", {"files": {"image": ("p.jpg", photo, "image/jpeg")}}),
            ):
                response = client.request(method, path, **kwargs)
                leaks = any(
                    marker in response.text
                    for marker in (str(work), str(work.resolve()), "Traceback")
                )
                statuses = (200,) if path == "/status" else (503,)
                said = response.json().get("state" if path == "/status" else "reason")
                probes.append(
                    _probe(
                        "failed load",
                        f"{method} {path} of a bundle that cannot load",
                        response,
                        statuses,
                        len(response.content) <= ERROR_BYTES
                        and not leaks
                        and said == ("failed" if path == "/status" else "load_failed"),
                    )
                )
            page = client.get("/")
            probes.append(
                _probe(
                    "failed load",
                    "GET / (the page) of that bundle",
                    page,
                    (200, 503),
                    not any(m in page.text for m in (str(work), str(work.resolve()), "Traceback")),
                )
            )
    finally:
        server.stop()
    return probes


def catalog_photo(bundle: Path) -> bytes | None:
    """One catalog item's thumbnail (a JPEG of its original photo), as an in-catalog upload."""
    with np.load(bundle / "thumbnails.npz", allow_pickle=False) as data:
        from jewelry_pipeline.core.thumbnails import Thumbnails

        thumbnails = Thumbnails.from_arrays(data)
    return thumbnails.jpeg(len(thumbnails) // 2) if len(thumbnails) else None


QUICK: dict[str, Callable[[httpx.Client], list[Probe]]] = {
    "bounded errors": echo_and_field_probes,
    "input strictness": strictness_probes,
    "http": http_probes,
    "origin": origin_probes,
}


def run(bundle: Path, work: Path, slots: int = 3) -> list[Probe]:
    """Every probe against `bundle` served on 127.0.0.1 (with `slots` model slots)."""
    server = start_bentoml(bundle, work / "serve.log", {"JEWELRY_MAX_CONCURRENCY": str(slots)})
    probes: list[Probe] = []
    try:
        wait_until_every_worker_is_ready(server)  # HEAD and GET /status must see one state
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name, check in QUICK.items():
                print(f"[redteam] {name}", flush=True)
                probes += check(client)
            print("[redteam] not in our catalog", flush=True)
            probes += catalog_probes(client, catalog_photo(bundle))
        print("[redteam] slow clients", flush=True)
        probes += slow_client_probes(server, slots)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            alive = client.get("/livez").status_code == 200
        probes.append(
            Probe("server", "GET /livez after everything above", "200" if alive else "down", alive)
        )
    finally:
        server.stop()
    print("[redteam] failed load", flush=True)
    probes += failed_load_probes(bundle, work)
    return probes


def write_report(probes: list[Probe], bundle_label: str) -> None:
    """docs/SECURITY.md and benchmarks/results/redteam.json from the probes."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"bundle": bundle_label, "probes": [asdict(p) for p in probes]}, indent=2) + "\n"
    )
    passed = sum(p.passed for p in probes)
    lines = [
        "# Security: the red-team re-run",
        "",
        "Generated by `make redteam` (`benchmarks/redteam.py`) from "
        "`benchmarks/results/redteam.json`; do not edit by hand.",
        "",
        f"The hostile requests of issue #31, sent to `bentoml serve` on 127.0.0.1 serving "
        f"{bundle_label}, with 3 model slots. **{passed} of {len(probes)} pass.**",
        "",
        f"An error answer passes when it has the expected status, is JSON with a `reason`, ASCII, "
        f"at most {ERROR_BYTES} bytes, echoes no value longer than {ECHO_CHARS} characters, and "
        "carries the security headers (CSP, nosniff).",
        "",
        "| group | sent | answer | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {p.group} | {p.sent.replace('|', '/')} | {p.answer.replace('|', '/')} | "
        f"{'pass' if p.passed else '**FAIL**'} |"
        for p in probes
    ]
    REPORT.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="default: a `make run`'s bundle")
    args = parser.parse_args()
    bundle = args.bundle or run_outputs()[1]
    if not (Path(bundle) / "files.json").is_file():
        raise SystemExit(f"no serving bundle at {bundle}: run `make run` first, or pass --bundle")
    with tempfile.TemporaryDirectory(prefix="redteam-") as work:
        probes = run(Path(bundle), Path(work))
    label = "the bundle of a default `make run`" if args.bundle is None else f"`{args.bundle}`"
    write_report(probes, label)
    failed = [p for p in probes if not p.passed]
    print(f"[redteam] {len(probes) - len(failed)}/{len(probes)} pass; wrote {REPORT}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
