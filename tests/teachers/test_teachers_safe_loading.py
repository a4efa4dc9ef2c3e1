"""Loading never runs arbitrary pickles: allow-listed stand-ins only, anything else refused in one line."""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch

from mmthesis.core.errors import CheckpointError
from mmthesis.teachers import build_model, inspect_checkpoint, load_teacher
from mmthesis.teachers.safe_unpickle import DisallowedGlobal, restricted_torch_load


class Stray:
    """A project class pickled into a checkpoint by accident."""

    def __init__(self) -> None:
        self.x = 1


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _dino_sd() -> dict:
    from teachers_reference import dino_vit

    return dino_vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2).state_dict()


def test_stray_object_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "stray.pth"
    torch.save({"model": _dino_sd(), "extra": Stray()}, path)
    with pytest.raises(CheckpointError) as err:
        load_teacher("dino_vitb16", path, size="tiny")
    line = err.value.one_line()
    assert "\n" not in line and "Stray" in line and "--trust-checkpoint" in line


def test_code_execution_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": _dino_sd(), "x": Evil()}, path)
    with pytest.raises(DisallowedGlobal, match="posix.system|os.system"):
        restricted_torch_load(path)
    with pytest.raises(CheckpointError, match="system"):
        inspect_checkpoint(path)


def test_namespace_and_plain_metadata_load(tmp_path: Path) -> None:
    """unilm checkpoints pickle argparse.Namespace args: rebuilt as a plain dict, weights loaded."""
    path = tmp_path / "dino_args.pth"
    torch.save({"model": _dino_sd(), "args": argparse.Namespace(lr=1e-3, arch="vit_base"), "epoch": 3}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    obj = restricted_torch_load(path)
    assert obj["args"] == {"lr": 1e-3, "arch": "vit_base"}
    info = inspect_checkpoint(path)
    assert info.container == "torch pickle (restricted unpickler)" and info.report.ok


def test_trust_flag_allows_unrestricted(tmp_path: Path) -> None:
    path = tmp_path / "stray.pth"
    torch.save({"model": _dino_sd(), "extra": Stray()}, path)
    m = load_teacher("dino_vitb16", path, size="tiny", trust=True)
    assert m.num_blocks == 2


def test_wrong_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_teacher("dino_vitb16", tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_teacher("dino_vitb16", bad)
    path = tmp_path / "dino.pth"
    torch.save(_dino_sd(), path)
    with pytest.raises(CheckpointError, match="not one for teacher beitv2_base_pt"):
        load_teacher("beitv2_base_pt", path)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    sd = _dino_sd()
    sd.pop("blocks.1.mlp.fc2.bias")
    sd["blocks.1.attn.logit_scale"] = torch.zeros(2)
    path = tmp_path / "damaged.pth"
    torch.save(sd, path)
    info = inspect_checkpoint(path)
    assert info.report.missing == ["model.blocks.1.mlp.fc2.bias"]
    assert info.report.unexpected == ["blocks.1.attn.logit_scale"]
    with pytest.raises(CheckpointError, match="1 missing .*1 unexpected"):
        load_teacher("dino_vitb16", path, size="tiny")


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    m = build_model("dino_vitb16", size="tiny")
    from mmthesis.teachers.converters.common import Converted, check

    conv = Converted("dino_vit", {k: v for k, v in m.state_dict().items()})
    conv.state_dict["model.norm.weight"] = torch.zeros(3)
    assert check(m, conv).mismatched == ["model.norm.weight: checkpoint (3,) vs model (64,)"]
