"""`mmthesis teachers list | inspect | convert` on tiny checkpoints of every format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from teachers_reference.numerics import randomize_
from typer.testing import CliRunner

from mmthesis.cli.teachers_cmd import app
from mmthesis.core.errors import CheckpointError
from mmthesis.teachers import load_teacher

runner = CliRunner()


def _write_all(tmp: Path) -> dict[str, Path]:
    import timm
    from teachers_reference import dino_vit, unilm_beit2
    from teachers_reference import fairseq_data2vec2 as fr
    from transformers import BertConfig, BertForPreTraining

    paths = {}
    for kind, build in (("image", fr.image_model), ("text", fr.text_model)):
        p = tmp / f"d2v2_{kind}.pt"
        torch.save({"cfg": {"model": {}}, "model": build("tiny").state_dict()}, p)
        paths[f"fairseq_data2vec2_{kind}"] = p
    beit = unilm_beit2.VisionTransformerForMaskedImageModeling(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                                               num_heads=2, vocab_size=16)
    torch.save({"model": beit.state_dict()}, tmp / "beit.pth")
    paths["unilm_beitv2"] = tmp / "beit.pth"
    dino = dino_vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    torch.save(dino.state_dict(), tmp / "dino.pth")
    paths["dino_vit"] = tmp / "dino.pth"
    BertForPreTraining(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)).save_pretrained(tmp / "bert")
    paths["hf_bert"] = tmp / "bert"
    from timm.models.resnet import Bottleneck, ResNet

    r = ResNet(block=Bottleneck, layers=(1, 1, 1, 1), channels=(8, 8, 8, 8), stem_width=8, num_classes=5)
    save_file(r.state_dict(), str(tmp / "resnet.safetensors"))
    paths["timm_resnet"] = tmp / "resnet.safetensors"
    e = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5)
    save_file(e.state_dict(), str(tmp / "effnet.safetensors"))
    paths["timm_efficientnet"] = tmp / "effnet.safetensors"
    return paths


@pytest.fixture(autouse=True)
def _wide_console():
    from mmthesis.core.console import console

    old = console.width
    console.width = 250
    yield
    console.width = old


def test_list() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("data2vec2_image", "beitv2_base_pt", "bert_base_uncased", "resnet50_a1", "base_imagenet.pt"):
        assert name in result.output


def test_inspect_every_format(tmp_path: Path) -> None:
    for fmt, path in _write_all(tmp_path).items():
        result = runner.invoke(app, ["inspect", str(path)], terminal_width=250)
        assert result.exit_code == 0, (fmt, result.output, result.exception)
        assert fmt in result.output
        assert "missing keys" in result.output and "│ 0" in result.output.split("missing keys")[1][:40]


def test_inspect_stray_object_refused(tmp_path: Path) -> None:
    from test_teachers_safe_loading import Stray, _dino_sd

    path = tmp_path / "stray.pth"
    torch.save({"model": _dino_sd(), "extra": Stray()}, path)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, CheckpointError)
    assert "\n" not in result.exception.one_line() and "Stray" in result.exception.one_line()


def test_inspect_stray_object_through_main_app(tmp_path: Path) -> None:
    main = pytest.importorskip("mmthesis.cli.app")
    from test_teachers_safe_loading import Stray, _dino_sd

    path = tmp_path / "stray.pth"
    torch.save({"model": _dino_sd(), "extra": Stray()}, path)
    result = runner.invoke(main.app, ["teachers", "inspect", str(path)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Stray" in lines[0]


def test_convert_then_load_safely(tmp_path: Path) -> None:
    from teachers_reference import unilm_beit2

    ref = randomize_(unilm_beit2.VisionTransformerForMaskedImageModeling(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, vocab_size=16)).eval()
    src = tmp_path / "beit.pth"
    torch.save({"model": ref.state_dict()}, src)
    dst = tmp_path / "beit.safetensors"
    result = runner.invoke(app, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["inspect", str(dst)], terminal_width=250)
    assert info.exit_code == 0 and "mmthesis" in info.output
    a = load_teacher("beitv2_base_pt", src, size="tiny")
    b = load_teacher("beitv2_base_pt", dst, size="tiny")
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(a(x).last_hidden_state, b(x).last_hidden_state)
    assert b.config["num_heads"] == 2 and b.config["embed_dim"] == 32


def test_convert_needs_trust_for_stray_objects(tmp_path: Path) -> None:
    from test_teachers_safe_loading import Stray, _dino_sd

    src = tmp_path / "stray.pth"
    torch.save({"model": _dino_sd(), "extra": Stray()}, src)
    dst = tmp_path / "clean.safetensors"
    refused = runner.invoke(app, ["convert", str(src), str(dst)])
    assert refused.exit_code != 0 and not dst.exists()
    ok = runner.invoke(app, ["convert", str(src), str(dst), "--trust-checkpoint"])
    assert ok.exit_code == 0, ok.output
    assert load_teacher("dino_vitb16", dst).num_blocks == 2
