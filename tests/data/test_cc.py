"""Conceptual Captions from TSV + local images, and the downloader against a local http.server (never the internet)."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmthesis.data.datasets import cc
from mmthesis.data.download import FAILURES, download
from mmthesis.data.manifest import iter_split


def image_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (24, 18)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def test_cc3m_tsv_with_bad_rows(tmp_path: Path) -> None:
    raw = tmp_path / "cc3m"
    rows = [f"a caption number {i}".encode() for i in range(10)]
    rows[3] = b"caf\xe9 latin-1 caption"  # not UTF-8
    rows[4] = b"nul \x00 caption"
    lines = [caption + b"\thttp://example.invalid/" + str(i).encode() for i, caption in enumerate(rows)]
    lines.insert(6, b"no tab on this line")  # row 6: malformed
    (raw).mkdir()
    (raw / "Train_GCC-training.tsv").write_bytes(b"\n".join(lines) + b"\n")
    for row in range(11):
        if row in (6, 8):
            continue  # malformed row / never downloaded
        path = cc.image_path(raw / "images", row, ".png" if row == 9 else ".jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if row == 10 else image_bytes(row, "PNG" if row == 9 else "JPEG"))
    manifest = cc.prepare_cc(raw, tmp_path / "out" / "cc3m", cc.CC3M, samples_per_shard=4)
    assert manifest.samples("train") == 6  # rows 0, 1, 2, 5, 7, 9
    assert manifest.skipped == {
        "caption not UTF-8": 1,
        "NUL byte in caption": 1,
        "empty file": 1,
        "malformed TSV row": 1,
        "not downloaded": 1,
    }
    samples = list(iter_split("cc3m", "train", tmp_path / "out"))
    assert [s["json"]["id"] for s in samples] == ["0", "1", "2", "5", "7", "9"]
    assert (
        samples[3]["json"]["captions"] == ["a caption number 5"]
        and samples[3]["json"]["url"] == "http://example.invalid/5"
    )
    assert "png" in samples[-1] and samples[-1]["json"]["captions"] == [
        "a caption number 8"
    ]  # TSV row 9 is caption 8 (after the inserted line)
    assert manifest.stats["avg_captions_per_image"] == {"train": 1.0}


# --------------------------------------------------------------------------- downloader

GOOD, PNG, TINY = image_bytes(1), image_bytes(2, "PNG"), image_bytes(3, "PNG", (1, 1))


class Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/flaky" and Handler.hits[self.path] < 2:
            self.send_error(503)
            return
        body = {
            "/good": GOOD,
            "/png": PNG,
            "/tiny": TINY,
            "/flaky": GOOD,
            "/html": b"<html>not an image</html>",
            "/slow": GOOD,
        }.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.hits = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.handle_error = lambda *args: None  # the client gave up on /slow: expected broken pipe
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_retries_timeouts_failures_and_resume(tmp_path: Path, server: str) -> None:
    paths = ["/good", "/png", "/tiny", "/flaky", "/html", "/missing", "/slow"]
    rows = [(i, server + p) for i, p in enumerate(paths)]
    target = lambda row: cc.image_path(tmp_path / "images", row)  # noqa: E731
    report = download(rows, target, tmp_path / "log", workers=4, timeout=0.3, retries=2, backoff=0.01)
    assert report.downloaded == 3 and report.already_present == 0
    assert dict(report.failed) == {"1-pixel image": 1, "not an image": 1, "HTTP 404": 1, "timeout": 1}
    assert target(0).read_bytes() == GOOD
    assert Image.open(target(1)).format == "JPEG"  # PNG re-encoded
    assert Handler.hits["/flaky"] == 2 and Handler.hits["/missing"] == 1  # retried the 503, not the 404
    failures = [json.loads(line) for line in (tmp_path / "log" / FAILURES).read_text().splitlines()]
    assert sorted(f["row"] for f in failures) == [2, 4, 5, 6] and all(f["url"].startswith(server) for f in failures)

    before = dict(Handler.hits)
    again = download(rows, target, tmp_path / "log", workers=4, timeout=0.3, retries=2, backoff=0.01)
    assert again.downloaded == 0 and again.already_present == 3 and not again.failed
    assert Handler.hits == before  # resumed: nothing fetched again
