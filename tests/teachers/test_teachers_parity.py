"""Parity: a checkpoint saved by the original code's layout loads through our converter and
computes the same function (relative error <= 1e-5, float32) at tiny sizes; full-size key maps
are checked on the meta device (no forward pass)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from teachers_reference import dino_vit, unilm_beit2
from teachers_reference import fairseq_data2vec2 as fr
from teachers_reference.numerics import randomize_, rel_err

from mmthesis.teachers import build_model, inspect_checkpoint, load_teacher
from mmthesis.teachers.converters import dino as dino_conv
from mmthesis.teachers.converters import fairseq_data2vec2, hf_bert, timm_cnn, unilm_beitv2
from mmthesis.teachers.converters.common import check

pytestmark = pytest.mark.parity
TOL = 1e-5
FIXTURES = Path(__file__).parent / "fixtures"


def fairseq_save(path: Path, model: torch.nn.Module) -> Path:
    torch.save({"args": None, "cfg": {"model": {"_name": "data2vec_multi", "layer_norm_first": False}},
                "model": model.state_dict(), "optimizer_history": [{"num_updates": 1}], "extra_state": {}}, path)
    return path


# ---------------------------------------------------------------- Data2Vec2 image
def test_data2vec2_image_parity(tmp_path: Path) -> None:
    ref = randomize_(fr.image_model("tiny")).eval()
    path = fairseq_save(tmp_path / "base_imagenet.pt", ref)
    ours = load_teacher("data2vec2_image", path, size="tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        r, o = ref(x), ours(x)
    assert ours.num_blocks == 6 and ours.prenet_depth == 2
    err = rel_err(o.last_hidden_state, r["x"])
    errs = [rel_err(a, b) for a, b in zip(o.layer_results[2:], r["layer_results"], strict=True)]
    print(f"data2vec2_image max rel err: output {err:.3e}, layer_results {max(errs):.3e}")
    assert err <= TOL and max(errs) <= TOL


def test_data2vec2_image_fixture_with_real_omegaconf_pickle() -> None:
    """The micro fixture holds a real pickled OmegaConf DictConfig + data2vec enum (see fixtures/make_*.py)."""
    path = FIXTURES / "fairseq_d2v2_image_micro.pt"
    info = inspect_checkpoint(path)
    assert info.container == "torch pickle (restricted unpickler)"
    assert info.format == "fairseq_data2vec2_image" and info.report.ok
    assert info.config["num_heads"] == 2  # read from the pickled cfg, not guessable from shapes
    expected = load_file(str(FIXTURES / "fairseq_d2v2_image_micro_expected.safetensors"))
    model = load_teacher("data2vec2_image", path, size="tiny")
    with torch.no_grad():
        out = model(expected["input"])
    assert rel_err(out.last_hidden_state, expected["x"]) <= TOL
    assert rel_err(out.layer_results[1], expected["layer_result_0"]) <= TOL


def test_data2vec2_image_full_size_key_map() -> None:
    with torch.device("meta"):
        ref = fr.image_model("base")
        ours = build_model("data2vec2_image", "base")
    sd = ref.state_dict()
    conv = fairseq_data2vec2.convert_image(sd)
    assert check(ours, conv).ok
    assert not conv.unexpected
    assert conv.config == {"embed_dim": 768, "mlp_ratio": 4.0, "prenet_depth": 2, "depth": 10, "patch_size": 16,
                           "in_chans": 3, "img_size": 224}
    assert {k.split(".")[0] for k in conv.dropped} == {"modality_encoders", "_ema"}
    assert all(".decoder." in k for k in conv.dropped if k.startswith("modality_encoders"))
    # every key of the fairseq layout is either mapped or explicitly dropped
    assert len(conv.state_dict) + len(conv.dropped) == len(sd)


def test_data2vec2_manifest_matches_public_code() -> None:
    """Hand-written excerpt of the key/shape manifest, checked against the reference module."""
    manifest = json.loads((FIXTURES / "data2vec2_manifest.json").read_text())
    for kind, build in (("image", fr.image_model), ("text", fr.text_model)):
        with torch.device("meta"):
            sd = build("base").state_dict()
        shapes = {k: list(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}
        for key, shp in manifest[kind]["keys"].items():
            assert shapes[key] == shp, key
        n_blocks = len({k.split(".")[1] for k in shapes if k.startswith("blocks.")})
        assert n_blocks == manifest[kind]["shared_blocks"]


# ---------------------------------------------------------------- Data2Vec2 text
def test_data2vec2_text_parity(tmp_path: Path) -> None:
    ref = randomize_(fr.text_model("tiny")).eval()
    path = fairseq_save(tmp_path / "nlp_base.pt", ref)
    ours = load_teacher("data2vec2_text", path, size="tiny")
    ids = torch.randint(4, 1000, (3, 12))
    ids[0, 0] = ids[1, 0] = ids[2, 0] = 0  # <s>
    ids[1, 9:] = 1  # <pad>
    ids[2, 5:] = 1
    pad = ids.eq(1)
    with torch.no_grad():
        r, o = ref(ids, pad), ours(ids, pad)
    keep = ~pad[..., None]
    err = rel_err(o.last_hidden_state * keep, r["x"] * keep)
    errs = [rel_err(a * keep, b * keep) for a, b in zip(o.layer_results, r["layer_results"], strict=True)]
    print(f"data2vec2_text max rel err: output {err:.2e}, layer_results {max(errs):.2e}")
    assert err <= TOL and max(errs) <= TOL


def test_data2vec2_text_full_size_key_map() -> None:
    with torch.device("meta"):
        ref = fr.text_model("base")
        ours = build_model("data2vec2_text", "base")
    sd = ref.state_dict()
    conv = fairseq_data2vec2.convert_text(sd)
    assert check(ours, conv).ok and not conv.unexpected
    assert conv.config["vocab_size"] == 50265 and conv.config["max_source_positions"] == 512
    assert len(conv.state_dict) + len(conv.dropped) == len(sd)


# ---------------------------------------------------------------- BEiTv2
@pytest.mark.parametrize("with_cls_pt", [False, True])
def test_beitv2_parity(tmp_path: Path, with_cls_pt: bool) -> None:
    ref = unilm_beit2.VisionTransformerForMaskedImageModeling(
        img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=4, vocab_size=32,
        cls_pt_layers=2 if with_cls_pt else 0)
    randomize_(ref).eval()
    path = tmp_path / "beitv2_base_patch16_224_pt1k.pth"
    torch.save({"model": ref.state_dict()}, path)
    ours = load_teacher("beitv2_base_pt", path, size="tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        r, o = ref.forward_features(x), ours(x)
    err = rel_err(o.last_hidden_state, r)
    print(f"beitv2 max rel err: {err:.2e}")
    assert err <= TOL
    assert rel_err(o.cls, r[:, 0]) <= TOL


def test_beitv2_full_size_key_map() -> None:
    with torch.device("meta"):
        ref = unilm_beit2.VisionTransformerForMaskedImageModeling(cls_pt_layers=2)
        ours = build_model("beitv2_base_pt", "base")
    sd = ref.state_dict()
    conv = unilm_beitv2.convert(sd)
    assert check(ours, conv).ok and not conv.unexpected
    assert conv.config["num_heads"] == 12 and conv.config["img_size"] == 224 and conv.config["depth"] == 12
    assert len(conv.state_dict) + len(conv.dropped) == len(sd)
    assert "lm_head.weight" in conv.dropped and "mask_token" in conv.dropped


# ---------------------------------------------------------------- BEiTv2 finetuned on ImageNet-1K
def _tiny_beit_ft(**kw) -> unilm_beit2.VisionTransformer:
    return randomize_(unilm_beit2.VisionTransformer(img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=4,
                                                    num_classes=10, **kw)).eval()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_beitv2_ft_parity(tmp_path: Path, pooling: str) -> None:
    ref = _tiny_beit_ft(use_mean_pooling=pooling == "mean")
    tables = [b.attn.relative_position_bias_table for b in ref.blocks]
    assert not torch.equal(tables[0], tables[1])  # one table per block, and they differ
    path = tmp_path / "beitv2_base_patch16_224_pt1k_ft1k.pth"
    torch.save({"model": ref.state_dict(), "epoch": 99}, path)
    info = inspect_checkpoint(path)
    assert info.format == "unilm_beitv2_ft" and info.teacher == "beitv2_base_ft1k" and info.report.ok
    assert info.config["num_classes"] == 10 and info.config["global_pool"] == ("avg" if pooling == "mean" else "token")
    assert sorted(info.dropped) == [f"blocks.{i}.attn.relative_position_index" for i in range(4)]
    ours = load_teacher("beitv2_base_ft1k", path, size="tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        r_logits, r_tokens, o = ref(x), ref.forward_tokens(x), ours(x)
    err, tok_err = rel_err(o.logits, r_logits), rel_err(o.last_hidden_state, r_tokens)
    print(f"beitv2_ft ({pooling}) max rel err: logits {err:.2e}, tokens {tok_err:.2e}")
    assert o.logits.shape == (2, 10) and err <= TOL and tok_err <= TOL
    assert len(o.hidden_states) == 4


def test_beitv2_ft_timm_layout(tmp_path: Path) -> None:
    """timm's ``beitv2_base_patch16_224.in1k_ft_in1k`` layout (no relative_position_index) loads too."""
    import timm

    ref = randomize_(timm.create_model("beitv2_base_patch16_224", pretrained=False, img_size=64, patch_size=8,
                                       embed_dim=64, depth=2, num_heads=4, num_classes=7)).eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    assert not any("relative_position_index" in k for k in load_file(str(path)))
    ours = load_teacher("beitv2_base_ft1k", path, size="tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = rel_err(ours(x).logits, ref(x))
    assert err <= TOL


def test_beitv2_ft_errors(tmp_path: Path) -> None:
    from mmthesis.core.errors import CheckpointError

    ref = _tiny_beit_ft()
    sd = ref.state_dict()
    sd["blocks.1.attn.relative_position_index"] = torch.flip(sd["blocks.1.attn.relative_position_index"], [0])
    with pytest.raises(CheckpointError, match="blocks.1.attn.relative_position_index differs"):
        unilm_beitv2.convert_ft(sd)
    pt = tmp_path / "pt.pth"  # a pretrain-only checkpoint is not the finetuned teacher
    torch.save({"model": unilm_beit2.VisionTransformerForMaskedImageModeling(
        img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, vocab_size=8).state_dict()}, pt)
    with pytest.raises(CheckpointError, match="unilm_beitv2 checkpoint, not one for teacher beitv2_base_ft1k"):
        load_teacher("beitv2_base_ft1k", pt, size="tiny")


def test_beitv2_ft_full_size_key_map() -> None:
    with torch.device("meta"):
        ref = unilm_beit2.VisionTransformer()
        ours = build_model("beitv2_base_ft1k", "base")
    sd = ref.state_dict()
    conv = unilm_beitv2.convert_ft(sd)
    assert check(ours, conv).ok and not conv.unexpected
    assert conv.config == {"embed_dim": 768, "num_heads": 12, "depth": 12, "mlp_ratio": 4.0, "patch_size": 16,
                           "in_chans": 3, "img_size": 224, "num_classes": 1000, "global_pool": "avg"}
    assert len(conv.state_dict) + len(conv.dropped) == len(sd) and len(conv.dropped) == 12


# ---------------------------------------------------------------- DINO
def test_dino_parity(tmp_path: Path) -> None:
    ref = randomize_(dino_vit.VisionTransformer(img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=4)).eval()
    path = tmp_path / "dino_vitbase16_pretrain.pth"
    torch.save(ref.state_dict(), path)
    ours = load_teacher("dino_vitb16", path, size="tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        r, o = ref.tokens(x), ours(x)
    err = rel_err(o.last_hidden_state, r)
    print(f"dino max rel err: {err:.2e}")
    assert err <= TOL and rel_err(o.cls, ref(x)) <= TOL


def test_dino_full_checkpoint_layout(tmp_path: Path) -> None:
    """DINO's full training checkpoint: teacher dict with module./backbone. prefixes and a head."""
    ref = randomize_(dino_vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2))
    sd = {f"module.backbone.{k}": v for k, v in ref.state_dict().items()}
    sd["module.head.last_layer.weight"] = torch.zeros(8, 32)
    path = tmp_path / "full.pth"
    torch.save({"teacher": sd, "student": sd, "epoch": 1}, path)
    info = inspect_checkpoint(path)
    assert info.format == "dino_vit" and info.report.ok and info.dropped == ["head.last_layer.weight"]


def test_dino_full_size_key_map() -> None:
    with torch.device("meta"):
        ref = dino_vit.VisionTransformer()
        ours = build_model("dino_vitb16", "base")
    conv = dino_conv.convert(ref.state_dict())
    assert check(ours, conv).ok and not conv.unexpected and not conv.dropped


# ---------------------------------------------------------------- BERT
def _tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=256, max_position_embeddings=128)


@pytest.mark.parametrize("layout", ["hf_folder", "legacy_bin"])
def test_bert_parity(tmp_path: Path, layout: str) -> None:
    from transformers import BertForPreTraining

    ref_full = randomize_(BertForPreTraining(_tiny_bert_config())).eval()
    if layout == "hf_folder":
        ref_full.save_pretrained(tmp_path / "bert")
        path = tmp_path / "bert"
    else:  # the original bert-base-uncased pytorch_model.bin: bert. prefix, LayerNorm gamma/beta
        sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in ref_full.state_dict().items()}
        path = tmp_path / "pytorch_model.bin"
        torch.save(sd, path)
    ours = load_teacher("bert_base_uncased", path, size="tiny")
    ids = torch.randint(1000, (3, 10))
    pad = torch.zeros(3, 10, dtype=torch.bool)
    pad[1, 7:] = True
    ids[pad] = 0
    with torch.no_grad():
        r = ref_full.bert(ids, attention_mask=(~pad).long(), output_hidden_states=True)
        o = ours(ids, pad)
    keep = ~pad[..., None]
    err = rel_err(o.last_hidden_state * keep, r.last_hidden_state * keep)
    print(f"bert ({layout}) max rel err: {err:.2e}")
    assert err <= TOL
    assert len(o.hidden_states) == 4 and rel_err(o.embeddings, r.hidden_states[0]) <= TOL


def test_bert_full_size_key_map() -> None:
    from transformers import BertConfig, BertForPreTraining

    with torch.device("meta"):
        ref = BertForPreTraining(BertConfig())
        ours = build_model("bert_base_uncased", "base")
    sd = ref.state_dict()
    conv = hf_bert.convert(sd)
    assert check(ours, conv).ok and not conv.unexpected
    assert all(k.startswith(("bert.pooler.", "cls.", "bert.embeddings.position_ids", "bert.embeddings.token_type_ids"))
               for k in sd if ("model." + k.removeprefix("bert.")) not in conv.state_dict)


@pytest.mark.parametrize("layout", ["hf_folder", "legacy_bin", "converted"])
def test_bert_pooler_kept_aside(tmp_path: Path, layout: str) -> None:
    """The pooler is not part of the teacher but stays readable (GLUE re-attaches it), in every layout."""
    from transformers import BertModel

    from mmthesis.teachers import convert_checkpoint, load_pooler

    ref = randomize_(BertModel(_tiny_bert_config(), add_pooling_layer=True)).eval()
    ref.save_pretrained(tmp_path / "bert")
    path = tmp_path / "bert"
    if layout == "legacy_bin":
        path = tmp_path / "pytorch_model.bin"
        torch.save({"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in ref.state_dict().items()},
                   path)
    elif layout == "converted":
        path = tmp_path / "bert.safetensors"
        convert_checkpoint(tmp_path / "bert", path)
    pooler = load_pooler(path)
    assert pooler is not None
    assert torch.equal(pooler["weight"], ref.pooler.dense.weight) and torch.equal(pooler["bias"], ref.pooler.dense.bias)
    teacher = load_teacher("bert_base_uncased", path, size="tiny")  # the teacher itself has no pooler
    assert not any("pooler" in k for k in teacher.state_dict())
    ids = torch.randint(1000, (2, 7))
    with torch.no_grad():
        assert rel_err(teacher(ids).last_hidden_state, ref(ids).last_hidden_state) <= TOL


def test_bert_without_pooler_has_none(tmp_path: Path) -> None:
    from transformers import BertModel

    from mmthesis.teachers import load_pooler

    BertModel(_tiny_bert_config(), add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    assert load_pooler(tmp_path / "bert") is None


# ---------------------------------------------------------------- supervised CNNs
@pytest.mark.parametrize("name,arch", [("resnet50_a1", "resnet"), ("efficientnet_lite0", "effnet")])
def test_supervised_parity(tmp_path: Path, name: str, arch: str) -> None:
    import timm
    from timm.models.resnet import Bottleneck, ResNet

    if arch == "resnet":
        ref = ResNet(block=Bottleneck, layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8, num_classes=10)
    else:
        ref = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)
    ref.eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    ours = load_teacher(name, path, size="tiny")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = rel_err(ours(x).logits, ref(x))
    print(f"{name} max rel err: {err:.2e}")
    assert err <= TOL


def test_resnet50_full_size_key_map() -> None:
    import timm

    with torch.device("meta"):
        ref = timm.create_model("resnet50", pretrained=False)
        ours = build_model("resnet50_a1", "base")
    conv = timm_cnn.convert_resnet(ref.state_dict())
    assert check(ours, conv).ok and not conv.unexpected
    assert conv.config["layers"] == (3, 4, 6, 3)


@pytest.mark.slow
def test_data2vec2_image_parity_full_size(tmp_path: Path) -> None:
    """Full ViT-B/16 (2 prenet + 10 shared blocks) through a saved fairseq file: one 224px image."""
    ref = randomize_(fr.image_model("base")).eval()
    path = fairseq_save(tmp_path / "base_imagenet.pt", ref)
    ours = load_teacher("data2vec2_image", path, size="base")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        r, o = ref(x), ours(x)
    err = rel_err(o.last_hidden_state, r["x"])
    assert o.last_hidden_state.shape == (1, 197, 768) and ours.num_blocks == 12
    print(f"data2vec2_image full-size max rel err: {err:.3e}")
    assert err <= TOL
