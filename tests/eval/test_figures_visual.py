"""The model- and data-driven figures' computations (Figures 12/35/36, 20, 29, 37, 39/40/43, 42) on tiny inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from mmthesis.data.tokenizers import train_wordpiece
from mmthesis.data.transforms import train_transform
from mmthesis.eval.reproduce.figures import attention, class_probs, retrieval_examples, tcmli, views
from mmthesis.eval.retrieval import retrieval_ranks, top_candidates
from mmthesis.teachers import build_model


def _image(h: int = 60, w: int = 80, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------ crop views
@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.9, 1.0)])
def test_crop_views_are_the_recipe_transforms_draws_and_boxes_respect_the_scale(scale):
    img = _image()
    got = views.crop_views(img, 32, scale, n=6, seed=3)
    torch.manual_seed(3)
    transform = train_transform(32, scale)
    expected = torch.stack([transform(img) for _ in range(6)])
    assert torch.equal(got.views, expected)  # the same draws the student sees under that seed
    area = img.height * img.width
    for (top, left, h, w), frac in zip(got.boxes, got.area_fractions, strict=True):
        assert 0 <= top and top + h <= img.height and 0 <= left and left + w <= img.width
        slack = (h + w + 1) / area  # torchvision rounds the sampled width and height to pixels
        assert scale[0] - slack <= frac <= scale[1] + slack
        assert 3 / 4 - 0.1 <= w / h <= 4 / 3 + 0.1
    assert got.area_fractions == [h * w / area for _, _, h, w in got.boxes]


def test_crop_view_is_the_resized_box_up_to_the_flip():
    img = _image(seed=1)
    got = views.crop_views(img, 24, (0.08, 1.0), n=4, seed=0)
    norm = train_transform(24).transforms[-3:]  # ToImage, ToDtype, Normalize
    for (top, left, h, w), view in zip(got.boxes, got.views, strict=True):
        crop = TF.resized_crop(img, top, left, h, w, [24, 24], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        x = crop
        for t in norm:
            x = t(x)
        assert torch.allclose(view, x) or torch.allclose(view, x.flip(-1))
    assert views.crop_views(img, 24, (0.08, 1.0), n=4, seed=0).boxes == got.boxes  # seeded
    assert views.crop_views(img, 24, (0.08, 1.0), n=4, seed=1).boxes != got.boxes


def test_draw_crop_views_has_the_original_and_one_panel_per_view():
    img = _image()
    v = views.crop_views(img, 32, (0.08, 1.0), n=3, seed=0)
    fig = views.draw_crop_views(img, v, "views")
    assert len(fig.axes) == 4
    assert len(fig.axes[0].patches) == 3  # one box per view on the original


# ------------------------------------------------------------------------------ BERT attention
@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    tok = train_wordpiece(["a dog is playing in the garden with a tennis ball"], vocab_size=200)
    return build_model("bert_base_uncased", "tiny", vocab_size=200).eval(), tok


def test_bert_attention_equals_softmax_of_the_first_layers_q_k(tiny_bert):
    teacher, tok = tiny_bert
    sentence = "a dog is playing in the garden with a tennis ball"
    got = attention.bert_attention(teacher, tok, sentence, layer=0, head=1)
    ids = torch.tensor(tok.encode_ids([sentence]))
    assert got.tokens[0] == "[CLS]" and got.tokens[-1] == "[SEP]" and len(got.tokens) == ids.shape[1]
    assert torch.allclose(got.weights.sum(-1), torch.ones(len(got.tokens)), atol=1e-6)
    bert = teacher.model
    with torch.no_grad():
        x = bert.embeddings(input_ids=ids)
        att = bert.encoder.layer[0].attention.self
        d = bert.config.hidden_size // bert.config.num_attention_heads
        q = att.query(x)[0, :, d : 2 * d]  # head 1
        k = att.key(x)[0, :, d : 2 * d]
        manual = (q @ k.T / math.sqrt(d)).softmax(-1)
    assert torch.allclose(got.weights, manual, atol=1e-5)


def test_bert_attention_restores_the_attention_implementation_and_checks_the_head(tiny_bert):
    teacher, tok = tiny_bert
    before = teacher.model.config._attn_implementation
    attention.bert_attention(teacher, tok, "a dog")
    assert teacher.model.config._attn_implementation == before
    with pytest.raises(Exception, match="layer 0 head 9 does not exist"):
        attention.bert_attention(teacher, tok, "a dog", head=9)
    fig = attention.draw_token_attention([attention.bert_attention(teacher, tok, "a dog")], ["a dog"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["[CLS]", "a", "dog", "[SEP]"]


# ------------------------------------------------------------------------------ DINO CLS attention
def test_vit_cls_attention_is_the_last_blocks_softmax_and_reproduces_its_output():
    torch.manual_seed(0)
    teacher = build_model("dino_vitb16", "tiny", img_size=32, patch_size=8, depth=2).eval()
    images = torch.randn(2, 3, 32, 32)
    maps = attention.vit_cls_attention(teacher, images)
    assert maps.shape == (2, 4, 4, 4)  # heads, 4x4 patches
    assert bool((maps.flatten(2).sum(-1) < 1).all())  # CLS also attends to itself
    out = teacher(images)
    x = out.hidden_states[0]
    block = teacher.model.blocks[-1]
    with torch.no_grad():
        xn = block.norm1(x)
        b, n, d = xn.shape
        qkv = block.attn.qkv(xn).reshape(b, n, 3, 4, d // 4).permute(2, 0, 3, 1, 4)
        full = (qkv[0] @ qkv[1].transpose(-2, -1) / math.sqrt(d // 4)).softmax(-1)
        assert torch.allclose(full[:, :, 0, 1:].reshape(2, 4, 4, 4), maps, atol=1e-6)
        # weights @ v through the projection is the block's own attention output
        mixed = (full @ qkv[2]).transpose(1, 2).reshape(b, n, d)
        assert torch.allclose(block.attn.proj(mixed), block.attn(xn), atol=1e-5)
    fig = attention.draw_cls_attention(images, maps.mean(1), ["a", "b"])
    assert len(fig.axes) == 4


# ------------------------------------------------------------------------------ T-CMLI matches
def test_token_patch_matches_are_the_matches_the_tcmli_loss_regresses():
    from mmthesis.students.losses import tcmli_distillation_loss
    from mmthesis.students.model import SSMKE
    from mmthesis.students.recipes import load_recipe

    torch.manual_seed(0)
    config = load_recipe("s-smke-t-cmli", "smoke")
    student = SSMKE(config.model, 50, 24, load_pretrained=False).eval()
    proj = torch.nn.Linear(24, 8)
    teacher = torch.randn(2, 16, 24)
    ids = torch.tensor([[2, 7, 9, 11, 3, 0], [2, 5, 3, 0, 0, 0]])
    mask = ids.eq(0)
    got = tcmli.token_patch_matches(student, proj, teacher, ids, mask, k=5)
    assert [m.token_positions for m in got] == [[1, 2, 3], [1]]
    with torch.no_grad():
        s = proj(student.kd_head(student.forward_text(ids, mask).tokens))
        t = proj(teacher)
        cos = F.normalize(s, dim=-1) @ F.normalize(t, dim=-1).transpose(1, 2)
        valid = tcmli.valid_text_tokens(mask)
        img = torch.randn(2, 16, 24)
        loss = tcmli_distillation_loss(img, teacher, s, t, valid)
        i2i = F.mse_loss(img, teacher)
        errs = [(s[b, z] - t[b, m.top[j, 0]]).pow(2).mean() for b, m in enumerate(got) for j, z in enumerate(m.token_positions)]
    assert torch.allclose(loss, 0.5 * (i2i + torch.stack(errs).mean()), atol=1e-6)
    for b, m in enumerate(got):
        assert torch.allclose(m.similarity, cos[b, m.token_positions], atol=1e-6)
        assert torch.equal(m.top, cos[b, m.token_positions].topk(5, -1).indices)
    fig = tcmli.draw_token_matches(torch.randn(3, 32, 32), ["[CLS]", "a", "b", "c", "[SEP]"], got[0], (4, 4), "cap")
    assert sum(len(ax.patches) for ax in fig.axes) == 3 * 5  # top-5 boxes per token


# ------------------------------------------------------------------------------ SHRe teacher's classes
def test_top_class_probabilities_are_the_top_of_the_softmax_of_the_logits():
    torch.manual_seed(0)
    teacher = build_model("efficientnet_lite0", "tiny", num_classes=12).eval()
    images = torch.randn(3, 3, 64, 64)
    got = class_probs.top_class_probabilities(teacher, images, k=5)
    with torch.no_grad():
        probs = teacher(images).logits.softmax(-1)
    for i in range(3):
        order = sorted(range(12), key=lambda c: -float(probs[i, c]))[:5]
        assert got.indices[i].tolist() == order
        assert torch.allclose(got.probabilities[i], probs[i, order])
    fig = class_probs.draw_top_classes(images, ["x", "y", "z"], got, [f"class {c}" for c in range(12)])
    bars = fig.axes[3]  # row 2, pair 1
    assert [t.get_text() for t in bars.get_yticklabels()] == [f"class {c}" for c in got.indices[0].tolist()]
    assert [p.get_width() for p in bars.patches] == pytest.approx((100 * got.probabilities[0]).tolist())


# ------------------------------------------------------------------------------ retrieval examples
def test_top_candidates_agree_with_ranks_and_break_ties_to_the_lower_index():
    torch.manual_seed(0)
    img = F.normalize(torch.randn(5, 8), dim=-1)
    txt = F.normalize(torch.randn(10, 8), dim=-1)
    index = torch.arange(10) // 2
    i2t, t2i = retrieval_ranks(img, txt, index)
    top = top_candidates(txt, img, 5)
    for c in range(10):
        assert int(top[c, int(t2i[c])]) == int(index[c])  # the positive sits at its rank
    ties = top_candidates(torch.ones(1, 2), torch.ones(4, 2), 3)
    assert ties.tolist() == [[0, 1, 2]]


def test_examples_mark_correct_and_wrong_by_the_pair_ground_truth():
    rows = [
        {"task": "r", "id": "7", "direction": "i2t", "rank": 1, "top": ["3_0", "7_2", "7_0"]},
        {"task": "r", "id": "7_1", "direction": "t2i", "rank": 0, "top": ["7", "3"]},
        {"task": "r", "id": "a_b_0", "direction": "t2i", "rank": 1, "top": ["a", "a_b"]},
    ]
    i2t = retrieval_examples.examples(rows, "i2t", n=5, k=3)
    assert [(e.query, e.correct) for e in i2t] == [("7", [False, True, True])]
    t2i = retrieval_examples.examples(rows, "t2i", n=5, k=2)
    assert [(e.query, e.correct) for e in t2i] == [("7_1", [True, False]), ("a_b_0", [False, True])]
    with pytest.raises(Exception, match="no retrieved ids"):
        retrieval_examples.examples([{"id": "1", "direction": "i2t", "rank": 0}], "i2t", 1, 1)
    images = {i: np.zeros((4, 4, 3)) for i in ("7", "3", "a", "a_b")}
    captions = {"3_0": "x", "7_2": "y", "7_0": "z", "7_1": "q", "a_b_0": "w"}
    fig = retrieval_examples.draw_image_retrieval(t2i, captions, images)
    from matplotlib.colors import to_hex

    frames = [to_hex(ax.spines["left"].get_edgecolor()).upper() for ax in fig.axes if ax.images]
    green, red = retrieval_examples.CORRECT, retrieval_examples.WRONG
    assert frames == [green, red, red, green]
    fig = retrieval_examples.draw_text_retrieval(i2t, captions, images)
    texts = [t for ax in fig.axes for t in ax.texts]
    assert [t.get_color() for t in texts] == [retrieval_examples.WRONG, retrieval_examples.CORRECT, retrieval_examples.CORRECT]


def test_retrieval_protocol_writes_top_ids_consistent_with_ranks(in_eval_home, tmp_path):
    from mmthesis.eval.harness import evaluate

    _, run = in_eval_home
    path = tmp_path / "rows.jsonl"
    evaluate(["retrieval-shapes"], str(run), scale="smoke", per_sample=path, show_progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and all(len(r["top"]) == 10 for r in rows)
    for r in rows:
        ok = [retrieval_examples.caption_image_id(c) == r["id"] for c in r["top"]] if r["direction"] == "i2t" else [
            i == retrieval_examples.caption_image_id(r["id"]) for i in r["top"]]
        first = ok.index(True) if True in ok else None
        assert first == (r["rank"] if r["rank"] < 10 else None)
