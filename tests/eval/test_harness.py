"""Every smoke task runs through the harness on a tiny random run and writes result.json."""

from __future__ import annotations

import json

import pytest
import torch

from mmthesis.core.errors import DataMissingError
from mmthesis.core.results import run_dir
from mmthesis.data.image_text import load_retrieval_split
from mmthesis.eval.adapters import load_model
from mmthesis.eval.harness import evaluate
from mmthesis.eval.retrieval import retrieval_recall

SMOKE_TASKS = [
    "retrieval-coco",
    "zero-shot-imagenet1k",
    "linear-probe-shapes",
    "analysis-shapes",
    "robustness-retrieval-shapes",
    "robustness-zero-shot-shapes",
]


@pytest.mark.smoke
def test_smoke_tasks_write_results_and_match_direct_metrics(in_eval_home, tmp_path):
    _, run = in_eval_home
    per_sample = tmp_path / "rows.jsonl"
    result = evaluate(SMOKE_TASKS, str(run), scale="smoke", per_sample=per_sample, show_progress=False)
    assert result.status == "finished" and set(result.metrics) == set(SMOKE_TASKS)
    record = json.loads((run_dir(result.name, result.config_hash) / "result.json").read_text())
    assert (
        record["config"]["tasks"][0]["name"] == "retrieval-coco" and record["config"]["tasks"][0]["dataset"] == "shapes"
    )
    assert record["config"]["model_fingerprint"] and "shapes" in record["datasets"] and record["git"] is not None
    # retrieval equals retrieval_recall on embeddings computed here, outside the harness and its cache
    loaded = load_model(str(run))
    data = load_retrieval_split("shapes", "test", loaded.image_transform, loaded.tokenizer, loaded.max_text_length)
    want = retrieval_recall(
        loaded.model.encode_image(data.images),
        loaded.model.encode_text(data.text_ids, data.text_padding_mask),
        data.caption_image_index,
    )
    got = result.metrics["retrieval-coco"]
    assert all(got[k] == pytest.approx(v, abs=1e-9) for k, v in want.items())
    zs = result.metrics["zero-shot-imagenet1k"]
    assert zs["classes"] == 24 and 0 <= zs["top1"] <= zs["top5"] <= 100
    # robustness: strength 0 is the clean value, every curve has one value per strength
    rob = result.metrics["robustness-retrieval-shapes"]
    assert rob["clean"] == pytest.approx(got["mean"])
    for curve in rob["curves"].values():
        assert len(curve["value"]) == len(curve["strength"]) and curve["value"][0] == rob["clean"]
    assert rob["curves"]["image/occlusion"]["value"][-1] == rob["missing_image"]
    # per-sample rows: one rank per image and per caption for retrieval
    rows = [json.loads(line) for line in per_sample.read_text().splitlines()]
    ranks = [r for r in rows if r["task"] == "retrieval-coco"]
    assert len(ranks) == data.num_images + data.num_captions
    assert 100.0 * sum(r["rank"] < 1 for r in ranks if r["direction"] == "t2i") / data.num_captions == pytest.approx(
        got["t2i_r1"]
    )
    # a second run with the same inputs is reused, not recomputed
    again = evaluate(SMOKE_TASKS, str(run), scale="smoke", show_progress=False)
    assert again.config_hash == result.config_hash and again.started_at == result.started_at


@pytest.mark.smoke
def test_finetune_smoke_learns(in_eval_home):
    _, run = in_eval_home
    m = evaluate(["finetune-shapes"], str(run), scale="smoke", show_progress=False).metrics["finetune-shapes"]
    assert m["steps"] == 60 and m["train_loss_last"] < 0.9 * m["train_loss_first"], m
    assert m["top1"] > m["chance_top1"], m


def test_missing_dataset_fails_with_prepare_command(in_eval_home):
    _, run = in_eval_home
    with pytest.raises(DataMissingError, match=r"dataset 'coco' is not prepared .*mmthesis data prepare coco"):
        evaluate(["retrieval-coco"], str(run), scale="full", show_progress=False)


def test_embeddings_are_cached_by_model_and_data(in_eval_home):
    from mmthesis.eval.context import EvalContext

    _, run = in_eval_home
    ctx = EvalContext(load_model(str(run)), scale="smoke", show_progress=False)
    first = ctx.image_embeddings("shapes", "test")
    calls = []
    ctx.loaded.model.encode_image = lambda x: calls.append(1) or torch.zeros(len(x), 4)  # would change the result
    assert torch.equal(EvalContext(ctx.loaded, scale="smoke").image_embeddings("shapes", "test"), first) and not calls
    ctx.loaded.fingerprint = "another-model"
    assert (
        EvalContext(ctx.loaded, scale="smoke", show_progress=False).image_embeddings("shapes", "test").shape[1] == 4
        and calls
    )


def test_labelled_images_stream_from_shards_and_workers_change_nothing(in_eval_home):
    import io

    from PIL import Image

    from mmthesis.data.manifest import iter_split
    from mmthesis.eval.context import EvalContext
    from mmthesis.eval.data_access import TransformedImages

    _, run = in_eval_home
    ctx = EvalContext(load_model(str(run)), scale="smoke", show_progress=False, batch_size=16)
    images = ctx.labelled_images("shapes", "test")
    samples = list(iter_split("shapes", "test"))
    assert len(images) == len(samples) and images.ids == [s["json"]["id"] for s in samples]
    assert images.labels.tolist() == [s["json"]["label"] for s in samples]
    assert images.pil(5).tobytes() == Image.open(io.BytesIO(samples[5]["png"])).convert("RGB").tobytes()
    data = TransformedImages(images, ctx.loaded.image_transform, ("gaussian_noise", 0.3, 1))
    x, y = data[5]
    assert x.shape[0] == 3 and int(y) == samples[5]["json"]["label"]
    serial = ctx.embed_images(ctx.loaded.model.encode_image, data, what="serial")
    ctx.num_workers = 2
    parallel = ctx.embed_images(ctx.loaded.model.encode_image, data, what="parallel")
    assert serial.shape == (len(samples), parallel.shape[1]) and torch.allclose(serial, parallel, atol=1e-6)
