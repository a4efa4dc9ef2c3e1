"""Optional image downloader for URL lists (Conceptual Captions): resumable, retrying, concurrent.

Never needed by tests or by preparation: ``prepare`` only reads what is on
disk. Settings follow the thesis (REFERENCE.md §4.1): 5 s timeout, 3
attempts, 1-pixel images skipped, images saved as JPEG (others re-encoded).

- resumable: a row whose image file exists, or whose failure is in
  ``failures.jsonl``, is not fetched again (``retry_failed=True`` retries failures);
- every file is written atomically, so a kill never leaves a partial image;
- every failure is appended to ``failures.jsonl`` as ``{row, url, reason}``;
- concurrency: a thread pool with a bounded number of requests in flight.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from PIL import Image

from mmthesis.core.io import atomic_write_bytes
from mmthesis.data.datasets.imagenet import verify_image
from mmthesis.data.manifest import Skipped

FAILURES = "failures.jsonl"
USER_AGENT = "mmthesis-downloader/0.1 (research; Conceptual Captions)"


@dataclasses.dataclass
class DownloadReport:
    downloaded: int = 0
    already_present: int = 0
    failed: Counter[str] = dataclasses.field(default_factory=Counter)  # reason -> count (this run)


def fetch(url: str, timeout: float, retries: int, backoff: float) -> bytes | str:
    """The response body, or the reason of the last failure after ``retries`` attempts."""
    reason = "no attempt"
    for attempt in range(retries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user-supplied dataset URLs
                return response.read()
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code}"
            if 400 <= e.code < 500 and e.code not in (408, 429):
                break  # permanent: do not retry
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
            reason = "timeout" if "timed out" in str(e) else f"{type(e).__name__}"
    return reason


def to_jpeg(data: bytes) -> bytes | str:
    """JPEG bytes of a usable image (original bytes if already JPEG), or why it is not usable."""
    kind = verify_image(data)
    if isinstance(kind, Skipped):
        return kind.reason
    with Image.open(io.BytesIO(data)) as im:
        if im.width <= 1 or im.height <= 1:
            return "1-pixel image"
        if kind == "jpg":
            return data
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=95)
        return buf.getvalue()


def _failed_rows(path: Path) -> set[int]:
    if not path.is_file():
        return set()
    rows = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.add(int(json.loads(line)["row"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a kill
    return rows


def download(
    rows: Iterable[tuple[int, str]],
    target: Callable[[int], Path],
    log_dir: Path,
    *,
    workers: int = 32,
    timeout: float = 5.0,
    retries: int = 3,
    backoff: float = 0.5,
    retry_failed: bool = False,
) -> DownloadReport:
    """Fetch ``(row, url)`` pairs into ``target(row)``; failures go to ``log_dir/failures.jsonl``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / FAILURES
    skip = set() if retry_failed else _failed_rows(log_path)
    report = DownloadReport()
    lock = threading.Lock()

    def one(row: int, url: str) -> None:
        body = fetch(url, timeout, retries, backoff)
        result = to_jpeg(body) if isinstance(body, bytes) else body
        if isinstance(result, bytes):
            atomic_write_bytes(target(row), result)
            with lock:
                report.downloaded += 1
            return
        with lock:
            report.failed[result] += 1
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps({"row": row, "url": url, "reason": result}) + "\n")

    todo = ((row, url) for row, url in rows if row not in skip)
    with ThreadPoolExecutor(workers) as pool:
        in_flight: set[Future[None]] = set()
        for row, url in todo:
            if target(row).is_file():
                report.already_present += 1
                continue
            in_flight.add(pool.submit(one, row, url))
            if len(in_flight) >= 4 * workers:  # bounded memory for millions of rows
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()
        for f in itertools.chain(in_flight):
            f.result()
    return report
