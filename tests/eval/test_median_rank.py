"""SHRe's average median rank (REFERENCE.md §5.2): hand computation, bounds, thesis-code parity, errors, harness."""

from __future__ import annotations

import json

import pytest
import torch

from mmthesis.core.errors import ConfigError
from mmthesis.data.image_text import load_retrieval_split
from mmthesis.eval.adapters import load_model
from mmthesis.eval.context import EvalContext
from mmthesis.eval.harness import evaluate
from mmthesis.eval.protocols import run_median_rank
from mmthesis.eval.retrieval import average_median_rank, image_order_by_id, median_ranks
from mmthesis.eval.task_registry import get_task

# score matrices (rows: a chunk's images, columns: the caption of image j chosen by caption choice k)
CHUNK0_K0 = [  # I->T ranks 1, 2, 4, 1 -> median 1.5 (the lower median would be 1); T->I ranks 1, 2, 1, 1 -> 1.0
    [0.9, 0.1, 0.2, 0.3],
    [0.8, 0.5, 0.1, 0.2],
    [0.7, 0.6, 0.4, 0.5],
    [0.1, 0.2, 0.3, 0.9],
]
CHUNK0_K1 = [  # ties go to the lower index: I->T ranks 1, 2, 4, 4 -> 3.0; T->I ranks 4, 3, 2, 2 -> 2.5
    [0.5, 0.5, 0.0, 0.0],
    [0.6, 0.6, 0.0, 0.0],
    [0.9, 0.8, 0.1, 0.7],
    [0.9, 0.8, 0.7, 0.2],
]
CHUNK1_K0 = torch.eye(4).tolist()  # every rank 1
CHUNK1_K1 = (1 - torch.eye(4)).tolist()  # every correct partner last: rank 4


def hand_example():
    """2 chunks of 4 images (+ a 9th image the chunks do not reach), 2 caption choices, captions interleaved.

    With identity image embeddings a caption's embedding is its column of scores against the images.
    """
    image_emb = torch.eye(9)
    captions: list[tuple[int, list[float]]] = []  # (image row, embedding)
    for k, (first, second) in enumerate(((CHUNK0_K0, CHUNK1_K0), (CHUNK0_K1, CHUNK1_K1))):
        for image in (2, 6, 0, 5, 3, 7, 1, 4):  # caption k of every image, in a shuffled image order
            chunk, j = divmod(image, 4)
            column = torch.zeros(9)
            column[chunk * 4 : chunk * 4 + 4] = torch.tensor([row[j] for row in (first, second)[chunk]])
            captions.append((image, column.tolist()))
        if k == 0:
            captions.append((8, [5.0] * 9))  # a caption of the unused image: it must play no part
    captions.append((2, [9.0] * 9))  # a third caption of image 2: beyond captions_per_image, never chosen
    index = torch.tensor([i for i, _ in captions])
    text_emb = torch.tensor([e for _, e in captions])
    return image_emb, text_emb, index


def test_hand_computed_example():
    image_emb, text_emb, index = hand_example()
    i2t, t2i = median_ranks(image_emb, text_emb, index, chunk_size=4, chunks=2, captions_per_image=2)
    assert i2t.tolist() == [[1.5, 3.0], [1.0, 4.0]]
    assert t2i.tolist() == [[1.0, 2.5], [1.0, 4.0]]
    got = average_median_rank(image_emb, text_emb, index, chunk_size=4, chunks=2, captions_per_image=2)
    # chunk 0: (1.5 + 3.0) / 2 = 2.25 and (1.0 + 2.5) / 2 = 1.75; chunk 1: (1 + 4) / 2 = 2.5 both ways
    assert got == {
        "i2t_amr": pytest.approx((2.25 + 2.5) / 2),
        "t2i_amr": pytest.approx((1.75 + 2.5) / 2),
        "chance_amr": 2.5,
        "chunk_size": 4,
        "chunks": 2,
        "captions_per_image": 2,
    }


def thesis_reference(image_emb, text_emb, index, chunk_size, chunks, per):
    """The thesis code's procedure written out: double argsort for ranks, torch.quantile(0.5) for the median."""
    captions_of: dict[int, list[int]] = {}
    for j, image in enumerate(index.tolist()):  # in caption order
        captions_of.setdefault(image, []).append(j)
    i2t, t2i = [], []
    for c in range(chunks):
        rows = range(c * chunk_size, (c + 1) * chunk_size)
        own = [captions_of[r][:per] for r in rows]
        tr, ir = [], []
        for k in range(per):
            scores = image_emb[list(rows)] @ text_emb[[o[k] for o in own]].T
            tr.append(scores.argsort(1, descending=True).argsort(1).diagonal().add(1).float().quantile(0.5).item())
            ir.append(scores.argsort(0, descending=True).argsort(0).diagonal().add(1).float().quantile(0.5).item())
        i2t.append(sum(tr) / per)
        t2i.append(sum(ir) / per)
    return sum(i2t) / chunks, sum(t2i) / chunks


def test_random_embeddings_give_chance_and_match_the_thesis_procedure():
    g = torch.Generator().manual_seed(0)
    n, per = 1500, 3
    image_emb = torch.nn.functional.normalize(torch.randn(n, 32, generator=g), dim=-1)
    text_emb = torch.nn.functional.normalize(torch.randn(n * per, 32, generator=g), dim=-1)
    index = torch.randperm(n * per, generator=g) % n  # captions in random order, `per` per image
    got = average_median_rank(image_emb, text_emb, index, chunk_size=300, chunks=5, captions_per_image=per)
    assert got["chance_amr"] == 150.5
    assert got["i2t_amr"] == pytest.approx(150.5, rel=0.06) and got["t2i_amr"] == pytest.approx(150.5, rel=0.06)
    want = thesis_reference(image_emb, text_emb, index, 300, 5, per)  # random floats: no ties
    assert (got["i2t_amr"], got["t2i_amr"]) == pytest.approx(want, abs=1e-9)


def test_perfect_embeddings_give_one():
    g = torch.Generator().manual_seed(1)
    image_emb = torch.nn.functional.normalize(torch.randn(60, 64, generator=g), dim=-1)
    index = torch.arange(60).repeat_interleave(5)
    got = average_median_rank(image_emb, image_emb[index], index, chunk_size=12, chunks=5)
    assert got["i2t_amr"] == 1.0 and got["t2i_amr"] == 1.0 and got["chance_amr"] == 6.5


def test_image_order_by_id_is_numeric_for_integer_ids():
    assert image_order_by_id(["10", "9", "100", "1"]).tolist() == [3, 1, 0, 2]  # as string order: 1, 10, 100, 9
    assert image_order_by_id(["b-2", "a-10", "a-9"]).tolist() == [1, 2, 0]


def test_clear_errors():
    image_emb, text_emb, index = hand_example()
    with pytest.raises(ValueError, match=r"needs chunks x chunk_size = 3 x 4 = 12 images, the split has 9"):
        median_ranks(image_emb, text_emb, index, chunk_size=4, chunks=3, captions_per_image=2)
    with pytest.raises(ValueError, match=r"image row 0 has 2 captions, median rank needs captions_per_image=3"):
        median_ranks(image_emb, text_emb, index, chunk_size=4, chunks=2, captions_per_image=3)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        median_ranks(image_emb, text_emb, index, chunk_size=0)
    with pytest.raises(ValueError, match="caption_image_index must have shape"):
        median_ranks(image_emb, text_emb, index[:-1], chunk_size=4, chunks=2, captions_per_image=2)


@pytest.mark.smoke
def test_median_rank_task_through_the_harness(in_eval_home, tmp_path):
    _, run = in_eval_home
    rows_file = tmp_path / "rows.jsonl"
    result = evaluate(["median-rank-coco"], str(run), scale="smoke", per_sample=rows_file, show_progress=False)
    got = result.metrics["median-rank-coco"]
    # the same numbers from embeddings computed here, outside the harness and its cache, images sorted by id
    loaded = load_model(str(run))
    data = load_retrieval_split("shapes", "test", loaded.image_transform, loaded.tokenizer, loaded.max_text_length)
    order = image_order_by_id(data.image_ids)
    row_in_order = torch.empty_like(order)
    row_in_order[order] = torch.arange(len(order))
    want = average_median_rank(
        loaded.model.encode_image(data.images)[order],
        loaded.model.encode_text(data.text_ids, data.text_padding_mask),
        row_in_order[data.caption_image_index],
        chunk_size=8,
        chunks=5,
        captions_per_image=4,
    )
    assert {k: got[k] for k in want} == pytest.approx(want)
    assert got["chance_amr"] == 4.5 and got["images"] == data.num_images
    assert 1.0 <= got["i2t_amr"] <= 8.0 and 1.0 <= got["t2i_amr"] <= 8.0
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert len(rows) == 5 * 4
    assert sum(r["i2t_median_rank"] for r in rows) / len(rows) == pytest.approx(got["i2t_amr"])


def test_median_rank_task_on_too_small_a_split_fails_in_one_line(in_eval_home):
    _, run = in_eval_home
    task = get_task("median-rank-coco").at_scale("smoke")
    task = type(task)(**{**task.to_json(), "params": {**task.params, "chunk_size": 100}})
    with pytest.raises(ConfigError, match=r"median-rank-coco on shapes/test: .*= 500 images, the split has 48"):
        run_median_rank(EvalContext(load_model(str(run)), scale="smoke", show_progress=False), task)


def test_task_spec_is_the_thesis_protocol_at_full_scale():
    full, smoke = get_task("median-rank-coco").at_scale("full"), get_task("median-rank-coco").at_scale("smoke")
    assert (full.protocol, full.dataset, full.split) == ("median-rank", "coco", "test")
    assert full.params == {"chunk_size": 1000, "chunks": 5, "captions_per_image": 5}
    assert smoke.dataset == "shapes" and smoke.params == {"chunk_size": 8, "chunks": 5, "captions_per_image": 4}
    assert full.metrics == ["i2t_amr", "t2i_amr", "chance_amr"]
