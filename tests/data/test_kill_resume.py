"""A preparation killed with SIGKILL midway resumes to output byte-identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mmthesis.data.datasets import cifar

SAMPLES_PER_SHARD = 2
N_TRAIN = 5 * 8  # 20 train shards

# The child slows each image down so the kill lands midway; the parent resumes at full speed.
CHILD = """
import sys, time
from pathlib import Path
from mmthesis.data.datasets import cifar
slow = cifar.to_png
cifar.to_png = lambda pixels: (time.sleep(0.15), slow(pixels))[1]
cifar.prepare_cifar(Path(sys.argv[1]), Path(sys.argv[2]), cifar.CIFAR10, samples_per_shard=int(sys.argv[3]))
"""


def make_raw(raw: Path) -> None:
    rng = np.random.default_rng(0)
    folder = raw / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)))
    for name, n in [*((f"data_batch_{i}.bin", N_TRAIN // 5) for i in range(1, 6)), ("test_batch.bin", 4)]:
        (folder / name).write_bytes(
            b"".join(
                bytes([int(rng.integers(10))]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for _ in range(n)
            )
        )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sigkill_then_resume_is_byte_identical(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_raw(raw)
    killed = tmp_path / "killed" / "cifar10"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(raw), str(killed), str(SAMPLES_PER_SHARD)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while len(list((killed / "train").glob("shard-*.tar"))) < 3:
            assert child.poll() is None, (
                f"preparation ended before it could be killed: {child.stderr.read().decode() if child.stderr else ''}"
            )
            assert time.monotonic() < deadline, "no shards appeared within 120 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    written = len(list((killed / "train").glob("shard-*.tar")))
    assert 3 <= written < N_TRAIN // SAMPLES_PER_SHARD and not (killed / "manifest.json").exists()

    done_before = {
        p: p.stat().st_mtime_ns
        for p in (killed / "train").glob("shard-*.tar")
        if p.with_name(p.name + ".json").is_file()
    }
    assert done_before

    cifar.prepare_cifar(raw, killed, cifar.CIFAR10, samples_per_shard=SAMPLES_PER_SHARD)
    assert {p: p.stat().st_mtime_ns for p in done_before} == done_before  # finished shards were kept, not rewritten
    clean = tmp_path / "clean" / "cifar10"
    cifar.prepare_cifar(raw, clean, cifar.CIFAR10, samples_per_shard=SAMPLES_PER_SHARD)
    resumed, uninterrupted = tree(killed), tree(clean)
    assert sorted(resumed) == sorted(uninterrupted)  # no temp files of the killed run are left
    assert (
        "manifest.json" in resumed
        and len([f for f in resumed if f.endswith(".tar")]) == N_TRAIN // SAMPLES_PER_SHARD + 2
    )
    for name in uninterrupted:
        assert resumed[name] == uninterrupted[name], name
