"""zero-shot-emoji and retrieval-emoji through the harness, on a miniature emoji package, checked by hand."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmthesis.core.paths import data_root
from mmthesis.core.results import run_dir
from mmthesis.data.datasets import emoji
from mmthesis.data.manifest import iter_split, read_manifest
from mmthesis.eval.adapters import load_model
from mmthesis.eval.harness import evaluate

# The smoke prompt templates of the emoji and shapes tasks (`templates: smoke`), written out here, not imported.
SMOKE_TEMPLATES = ["a photo of a {c}.", "{c}", "an emoji of {c}."]
CATEGORIES = ["Activities", "Animals & Nature", "Food & Drink", "Objects", "Travel & Places", "Flags"]
# words the run's (shapes) tokenizer knows, so every caption tokenizes differently and no two scores tie
WORDS = ["red", "blue", "green", "yellow", "orange", "purple", "circle", "square"]
TASKS = ["zero-shot-emoji", "retrieval-emoji"]


def _png(i: int) -> bytes:
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    im.paste(Image.new("RGBA", (8 + i % 40, 8 + (7 * i) % 40), (37 * i % 256, 91 * i % 256, 53 * i % 256, 255)))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _tarball(path) -> None:
    """A miniature emoji-datasource-twitter package: 6 categories x 25 emoji (about 15 land in the test split)."""
    entries, files = [], {}
    for i in range(150):
        unified = f"1F{0x300 + i:03X}"
        category = CATEGORIES[i % len(CATEGORIES)]
        name = f"{WORDS[i % 8]} {WORDS[(i // 8) % 8]} {WORDS[i // 64]} {category.split()[0].lower()}"
        short = [f"{WORDS[(i + 3) % 8]}_{WORDS[(i // 8 + 5) % 8]}_{WORDS[i // 64 + 1]}"] if i % 3 else []
        entries.append(
            {
                "name": name.upper(),
                "unified": unified,
                "short_name": short[0] if short else "",
                "short_names": short,
                "category": category,
                "subcategory": "sub",
                "image": f"{unified.lower()}.png",
                "has_img_twitter": True,
            }
        )
        files[f"package/img/twitter/64/{unified.lower()}.png"] = _png(i)
    files["package/emoji.json"] = json.dumps(entries).encode()
    files["package/package.json"] = b'{"name": "emoji-datasource-twitter"}'
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def emoji_home(eval_home, tmp_path_factory):
    """The eval home (shapes + a tiny random run) with the miniature emoji package prepared."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(eval_home[0]))
    tarball = tmp_path_factory.mktemp("emoji-raw") / emoji.TARBALL
    _tarball(tarball)
    emoji.prepare_from_tarball(tarball, data_root())
    yield eval_home
    mp.undo()


def _test_split():
    """(images as PIL, labels, captions per image, ids) of the prepared emoji test split, read from the shards."""
    samples = list(iter_split("emoji", "test"))
    images = [Image.open(io.BytesIO(s["png"])).convert("RGB") for s in samples]
    return images, [s["json"]["label"] for s in samples], [s["json"]["captions"] for s in samples], samples


@pytest.mark.smoke
def test_emoji_tasks_through_the_harness(emoji_home, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTHESIS_HOME", str(emoji_home[0]))
    _, run = emoji_home
    per_sample = tmp_path / "rows.jsonl"
    result = evaluate(TASKS, str(run), scale="smoke", per_sample=per_sample, show_progress=False)
    assert result.status == "finished" and set(result.metrics) == set(TASKS)
    record = json.loads((run_dir(result.name, result.config_hash) / "result.json").read_text())
    assert record["metrics"] == json.loads(json.dumps(result.metrics))
    assert [t["name"] for t in record["config"]["tasks"]] == TASKS and "emoji" in record["datasets"]

    label_names = read_manifest("emoji").stats["label_names"]
    assert label_names == sorted(CATEGORIES)
    images, labels, captions, samples = _test_split()
    n, c = len(images), len(label_names)
    assert n >= 8 and len(set(labels)) >= 3  # enough for the checks below to mean something

    # -- zero-shot: recomputed here from the model, the shards and the written-out templates
    zs = result.metrics["zero-shot-emoji"]
    assert (zs["images"], zs["classes"], zs["templates"]) == (n, c, len(SMOKE_TEMPLATES))
    assert zs["chance_top1"] == pytest.approx(100.0 / c)
    loaded = load_model(str(run))
    with torch.no_grad():
        image_emb = loaded.model.encode_image(torch.stack([loaded.image_transform(im) for im in images])).float()
        prompts = [t.replace("{c}", name) for name in label_names for t in SMOKE_TEMPLATES]
        ids, mask = loaded.tokenizer.encode_batch(prompts, loaded.max_text_length)
        text_emb = loaded.model.encode_text(ids, mask).float()
    protos = F.normalize(F.normalize(text_emb, dim=-1).view(c, len(SMOKE_TEMPLATES), -1).mean(1), dim=-1)
    logits = 100.0 * image_emb @ protos.t()
    target = logits[torch.arange(n), torch.tensor(labels)]
    rank = (logits > target[:, None]).sum(1)  # classes scored above the true one
    assert not ((logits == target[:, None]).sum(1) > 1).any()  # no ties, so tie-breaking cannot matter
    for k in (1, 5):
        assert zs[f"top{k}"] == pytest.approx(100.0 * int((rank < k).sum()) / n, abs=1e-9), k
        assert 0.0 <= zs[f"top{k}"] <= 100.0
    assert zs["top1"] <= zs["top5"]

    # -- retrieval: every caption against every image, by hand
    rt = result.metrics["retrieval-emoji"]
    flat = [cap for caps in captions for cap in caps]
    owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
    assert (rt["images"], rt["captions"]) == (n, len(flat))
    with torch.no_grad():
        ids, mask = loaded.tokenizer.encode_batch(flat, loaded.max_text_length)
        caption_emb = loaded.model.encode_text(ids, mask).float()
    sim = image_emb @ caption_emb.t()  # (images, captions)
    assert (sim.sort(1).values.diff(dim=1) > 0).all() and (sim.sort(0).values.diff(dim=0) > 0).all()  # no ties
    t2i_rank = (sim.t() > sim.t()[torch.arange(len(flat)), owner][:, None]).sum(1)
    own = owner[None, :] == torch.arange(n)[:, None]
    best_own = sim.masked_fill(~own, float("-inf")).max(1).values  # an image's best-scored own caption
    i2t_rank = (sim.masked_fill(own, float("-inf")) > best_own[:, None]).sum(1)
    for k in (1, 5, 10):
        assert rt[f"t2i_r{k}"] == pytest.approx(100.0 * int((t2i_rank < k).sum()) / len(flat), abs=1e-9), k
        assert rt[f"i2t_r{k}"] == pytest.approx(100.0 * int((i2t_rank < k).sum()) / n, abs=1e-9), k
    assert rt["mean"] == pytest.approx(sum(rt[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)) / 6)

    # -- per-sample rows: one per test image for zero-shot (its label's rank), one per image and caption for retrieval
    rows = [json.loads(line) for line in per_sample.read_text().splitlines()]
    zs_rows = {r["id"]: r for r in rows if r["task"] == "zero-shot-emoji"}
    assert {i: (r["label"], r["rank_of_label"]) for i, r in zs_rows.items()} == {
        s["json"]["id"]: (y, int(r)) for s, y, r in zip(samples, labels, rank, strict=True)
    }
    assert sum(r["task"] == "retrieval-emoji" for r in rows) == n + len(flat)
