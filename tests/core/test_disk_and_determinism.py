"""Weight files are byte-deterministic across processes, and a full disk is one line naming the file and space."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from mmthesis.core import io as core_io
from mmthesis.core.checkpoint import load_weights, save_weights, weights_digest
from mmthesis.core.errors import StorageError

SAVE = """
import sys, torch
from mmthesis.core.checkpoint import save_weights
g = torch.Generator().manual_seed(0)
state = {f"layer{i}.weight": torch.randn(3, 4, generator=g) for i in range(6)}
meta = {f"key{i}": str(i) * (i + 1) for i in range(12)}
save_weights(sys.argv[1], state, meta)
"""


def _save_in_subprocess(path, hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-c", SAVE, str(path)], check=True, env=env, timeout=120)
    return path.read_bytes()


def test_same_weights_in_two_processes_give_identical_bytes(tmp_path):
    a = _save_in_subprocess(tmp_path / "a.safetensors", "1")
    b = _save_in_subprocess(tmp_path / "b.safetensors", "2")
    assert a == b
    assert weights_digest(tmp_path / "a.safetensors") == hashlib.sha256(a).hexdigest()


def test_digest_ignores_header_order_but_not_values(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    meta = {f"k{i}": str(i) for i in range(10)}
    save_weights(tmp_path / "ours.safetensors", state, meta)
    save_file(state, str(tmp_path / "plain.safetensors"), metadata=meta)  # safetensors' own (hash-map) order
    assert weights_digest(tmp_path / "ours.safetensors") == weights_digest(tmp_path / "plain.safetensors")
    save_weights(tmp_path / "other.safetensors", {**state, "b": torch.full((2,), 2.0)}, meta)
    assert weights_digest(tmp_path / "other.safetensors") != weights_digest(tmp_path / "ours.safetensors")
    save_weights(tmp_path / "meta.safetensors", state, {**meta, "k0": "changed"})
    assert weights_digest(tmp_path / "meta.safetensors") != weights_digest(tmp_path / "ours.safetensors")
    loaded = load_weights(tmp_path / "ours.safetensors")
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])


def test_full_disk_while_saving_weights_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_weights(path, {"w": torch.zeros(4)})
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core_io.os, "fsync", no_space)
    with pytest.raises(StorageError) as err:
        save_weights(path, {"w": torch.ones(4)})
    line = err.value.one_line()
    assert "\n" not in line and str(path) in line and "no space left" in line and " free there, " in line and "needed" in line
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary file left


def test_not_enough_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr("mmthesis.core.io.free_bytes", lambda path: 10)
    with pytest.raises(StorageError, match=r"\(10 B free there, about 4\.\d kB more needed\)"):
        save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(1000)})
    assert not any(tmp_path.iterdir())
