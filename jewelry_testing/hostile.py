"""A corpus of hostile uploads for `/recommend`, one request per kind of bad file or form, each
with the status it must get; used by the service tests and the reliability checks."""

from __future__ import annotations

import io

import numpy as np


def blank_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A PNG of one colour: a few KB on disk whatever its size, so a large one is a
    decompression bomb."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_photo(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A (width, height) photo of seeded random pixels in the Pillow format `fmt`."""
    from PIL import Image

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _upload(
    data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg", **form: str
) -> dict:
    """httpx keyword arguments of a multipart upload of `data` as the `image` field."""
    return {"files": {"image": (name, data, content_type)}, "data": form}


def hostile_uploads(request_cap: int, decode_cap: int) -> list[tuple[str, dict, int]]:
    """One request per kind of bad upload as (kind, httpx keyword arguments, status it must
    get), for a server whose body cap is `request_cap` and decode cap `decode_cap` bytes; the
    last is a harmless oddity (200)."""
    jpeg, png = noise_photo("JPEG"), noise_photo("PNG")
    corrupt_png = bytearray(png)
    corrupt_png[50:90] = bytes(40)
    garbled_jpeg = jpeg[:400] + bytes(len(jpeg) - 400)
    bmp_bomb = bytearray(noise_photo("BMP", (20, 20)))
    bmp_bomb[18:26] = (30000).to_bytes(4, "little") + (30000).to_bytes(4, "little")
    pickle_bytes = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."
    two_images = [
        ("image", ("a.jpg", jpeg, "image/jpeg")),
        ("image", ("b.jpg", jpeg, "image/jpeg")),
    ]
    malformed_multipart = {
        "content": b"--zz\r\nno headers",
        "headers": {"content-type": "multipart/form-data; boundary=zz"},
    }
    pickle_body = {
        "content": b"\x80\x04K\x01.",
        "headers": {"content-type": "application/vnd.bentoml+pickle"},
    }
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(40)
    png_bomb = blank_png(20000, 20000, "1")
    over_decode_cap = b"BM" + bytes(decode_cap + 10)
    url_field = {"files": {"image": (None, "http://127.0.0.1:9/ring.jpg")}}
    return [
        ("plain text", _upload(b"just some text"), 415),
        ("empty file", _upload(b""), 415),
        ("html page", _upload(b"<html><body>hi</body></html>", "x.html", "text/html"), 415),
        ("svg image", _upload(svg, "x.svg", "image/svg+xml"), 415),
        ("pdf", _upload(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", "x.pdf", "application/pdf"), 415),
        ("zip archive", _upload(b"PK\x03\x04" + bytes(60), "x.zip", "application/zip"), 415),
        ("gif", _upload(noise_photo("GIF"), "x.gif", "image/gif"), 415),
        ("tiff", _upload(noise_photo("TIFF"), "x.tif", "image/tiff"), 415),
        ("heic signature", _upload(heic, "x.heic", "image/heic"), 415),
        ("pickle file", _upload(pickle_bytes, "x.pkl", "application/python-pickle"), 415),
        ("pickle body", pickle_body, 415),
        ("json body", {"json": {"image": "x"}}, 415),
        ("truncated jpeg", _upload(jpeg[: len(jpeg) // 3]), 400),
        ("truncated png", _upload(png[: len(png) // 2], "x.png", "image/png"), 400),
        ("corrupt png", _upload(bytes(corrupt_png), "x.png", "image/png"), 400),
        ("garbled jpeg", _upload(garbled_jpeg), 400),
        ("jpeg header only", _upload(b"\xff\xd8\xff\xe0\x00\x10JFIF"), 400),
        ("8x8 image", _upload(noise_photo("PNG", (8, 8)), "x.png", "image/png"), 400),
        ("20000x20000 png bomb", _upload(png_bomb, "bomb.png", "image/png"), 413),
        ("30000x30000 bmp header", _upload(bytes(bmp_bomb), "bomb.bmp", "image/bmp"), 413),
        ("over the decode cap", _upload(over_decode_cap, "big.bmp", "image/bmp"), 413),
        ("over the request cap", _upload(bytes(request_cap + 10)), 413),
        ("missing image field", {"files": {"k": (None, "3")}}, 400),
        ("url in the image field", url_field, 400),
        ("two image files", {"files": two_images}, 400),
        ("k = 0", _upload(jpeg, k="0"), 400),
        ("k = 51 (one over the maximum)", _upload(jpeg, k="51"), 400),
        ("k not a number", _upload(jpeg, k="ten"), 400),
        ("unknown category", _upload(jpeg, category="tiara"), 400),
        ("malformed multipart", malformed_multipart, 400),
        ("file name with ../", _upload(jpeg, "../../../../etc/passwd"), 200),
    ]
