"""GLUE: the official TSV layouts (QUOTE_NONE, CoLA without header, MNLI's 12/16 columns), malformed rows, stand-in, HF parquet/arrow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import data_root, raw_root
from mmthesis.data.datasets import glue
from mmthesis.data.manifest import verify
from mmthesis.data.registry import PrepareRequest, get_dataset


def mnli_row(i: int, s1: str, s2: str, gold: str, dev: bool) -> str:
    labels = [gold] * (5 if dev else 1)
    return "\t".join(
        [
            str(i),
            str(31193 + i),
            f"{31193 + i}n",
            "government",
            f"( ( {s1} ) )",
            f"( ( {s2} ) )",
            f"(ROOT (S {s1}))",
            f"(ROOT (S {s2}))",
            s1,
            s2,
            *labels,
            gold,
        ]
    )


MNLI_HEAD = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1"
FILES: dict[str, bytes] = {
    # CoLA: no header; source, label, original label, sentence. Row 4 starts with an unbalanced quote (QUOTE_NONE keeps row 5 separate)
    "CoLA/train.tsv": (
        b"gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
        b"gj04\t1\t\tOne more pseudo generalization and I'm giving up.\n"
        b"gj04\t0\t*\tThey drank the pub.\n"
        b'gj04\t1\t\t"Hello, he said.\n'
        b"gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
        b"gj04\t1\tonly three columns\n"
        b"gj04\t2\t\tA label that does not exist.\n"
        b"gj04\t1\t\tA NUL \x00 byte.\n"
        b"gj04\t1\t\tcaf\xe9 in latin-1.\n"
        b"\n"
    ),
    "CoLA/dev.tsv": b"gj04\t1\t\tThe weights made the rope stretch over the pulley.\r\ngj04\t0\t*\tThe mechanical doll wriggled itself loose.\r\n",
    "SST-2/train.tsv": b"sentence\tlabel\nhide new secretions from the parental units \t0\ncontains no wit , only labored gags \t0\nthat loves its characters and communicates something rather beautiful about human nature \t1\n",
    "SST-2/dev.tsv": b"sentence\tlabel\nit 's a charming and often affecting journey . \t1\n",
    "MRPC/train.tsv": (
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t702876\t702977\tAmrozi accused his brother , whom he called " the witness " , of deliberately distorting his evidence .\tReferring to him as only " the witness " , Amrozi accused his brother of deliberately distorting his evidence .\n'
        "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ 2.5 billion .\tYucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ 1.8 billion in 1998 .\n"
    ).encode(),
    "MRPC/dev.tsv": b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1355540\t1355592\tHe said the foodservice pie business doesn 't fit .\tThe foodservice pie business does not fit .\n",
    "STS-B/train.tsv": (
        b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        b"0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n"
        b"1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a large flute.\tA man is playing a flute.\t3.800\n"
        b"2\tmain-captions\tMSRvid\t2012test\t0005\tnone\tnone\tA score too high.\tA score.\t7.5\n"
    ),
    "STS-B/dev.tsv": b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA man wearing a hard hat is dancing.\t5.000\n",
    "QQP/train.tsv": (
        b"id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        b"133273\t213221\t213222\tHow is the life of a math student? Could you describe your own experiences?\tWhich level of prepration is enough for the exam jlpt5?\t0\n"
        b"402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1\n"
        b"201841\t303951\t303952\tWhat can one do after MBBS?\t0\n"
    ),
    "QQP/dev.tsv": b"id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n40066\t56869\t56870\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0\n",
    "MNLI/train.tsv": "\n".join(
        [
            f"{MNLI_HEAD}\tgold_label",
            mnli_row(
                0,
                "Conceptually cream skimming has two basic dimensions.",
                "Product and geography are what make cream skimming work.",
                "neutral",
                False,
            ),
            mnli_row(
                1,
                "you know during the season and i guess at at your level",
                "You lose the things to the following level.",
                "entailment",
                False,
            ),
            mnli_row(
                2,
                "One of our number will carry out your instructions minutely.",
                "A member of my team will execute your orders.",
                "contradiction",
                False,
            ),
            mnli_row(3, "An unlabelled pair.", "It has no gold label.", "-", False),
        ]
    ).encode()
    + b"\n",
    "MNLI/dev_matched.tsv": (
        f"{MNLI_HEAD}\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        + mnli_row(0, "The new rights are nice enough", "Everyone really likes the newest benefits", "neutral", True)
        + "\n"
    ).encode(),
    "MNLI/dev_mismatched.tsv": (
        f"{MNLI_HEAD}\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        + mnli_row(
            0,
            "Your contribution helped make it possible.",
            "Your contributions were of no help.",
            "contradiction",
            True,
        )
        + "\n"
    ).encode(),
    "QNLI/train.tsv": b"index\tquestion\tsentence\tlabel\n0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it, Digimon Tamers takes a darker approach.\tnot_entailment\n1\tWhich missile batteries often have individual launchers?\tWhen MANPADS is operated by specialists, batteries may have several dozen teams.\tentailment\n",
    "QNLI/dev.tsv": b"index\tquestion\tsentence\tlabel\n0\tWhat came into force after the new constitution was herald?\tAs of that day, the new constitution heralding the Second Republic came into force.\tentailment\n",
    "RTE/train.tsv": b"index\tsentence1\tsentence2\tlabel\n0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in Iraq.\tnot_entailment\n",
    "RTE/dev.tsv": b"index\tsentence1\tsentence2\tlabel\n0\tDana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44.\tChristopher Reeve had an accident.\tnot_entailment\n",
    "WNLI/train.tsv": b"index\tsentence1\tsentence2\tlabel\n0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\tThe carrot had a hole.\t1\n1\tJohn couldn't see the stage with Billy in front of him because he is so short.\tJohn is so short.\t1\n2\tThe police arrested all of the gang members.\tThe police were trying to stop the gang.\t0\n",
    "WNLI/dev.tsv": b"index\tsentence1\tsentence2\tlabel\n0\tThe drain is clogged with hair. It has to be cleaned.\tThe hair has to be cleaned.\t0\n",
}


def write_raw(raw: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
    return raw


def test_registered() -> None:
    spec = get_dataset("glue")
    assert spec.kind == "glue" and spec.scales == ("smoke", "full")
    assert spec.stand_in == {"smoke": "generated GLUE-format toy task files"}


def test_official_tsvs(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "glue"
    m = glue.prepare_from_raw(write_raw(tmp_path / "glue_data"), folder)
    assert m.stats["train_rows"] == {
        "CoLA": 5,
        "SST-2": 3,
        "MRPC": 2,
        "STS-B": 2,
        "QQP": 2,
        "MNLI": 3,
        "QNLI": 2,
        "RTE": 1,
        "WNLI": 3,
    }
    assert m.stats["train_total"] == 23
    assert m.skipped == {"bad label": 3, "blank line": 1, "invalid utf-8": 1, "nul byte": 1, "wrong column count": 2}
    assert m.samples("MNLI/dev_matched") == 1 and m.samples("MNLI/dev_mismatched") == 1 and m.samples("CoLA/dev") == 2
    cola = glue.read_rows(folder, "CoLA", "train")
    assert cola[0] == {
        "idx": 0,
        "sentence1": "Our friends won't buy this analysis, let alone the next one we propose.",
        "sentence2": None,
        "label": 1,
    }
    assert [r["label"] for r in cola] == [1, 1, 0, 1, 1]
    assert (
        cola[3]["sentence1"] == '"Hello, he said.' and cola[4]["idx"] == 4
    )  # QUOTE_NONE: the quote does not swallow the next row
    skipped = {s["id"]: s["reason"] for s in m.split("CoLA/train")["shards"][0]["skipped"]}
    assert skipped == {
        "CoLA/train.tsv:6": "wrong column count",
        "CoLA/train.tsv:7": "bad label",
        "CoLA/train.tsv:8": "nul byte",
        "CoLA/train.tsv:9": "invalid utf-8",
        "CoLA/train.tsv:10": "blank line",
    }
    assert (
        glue.read_rows(folder, "CoLA", "dev")[0]["sentence1"] == "The weights made the rope stretch over the pulley."
    )  # CRLF stripped
    mrpc = glue.read_rows(folder, "MRPC", "train")  # header with a BOM, quotes kept verbatim
    assert mrpc[0]["sentence1"].startswith('Amrozi accused his brother , whom he called " the witness "') and [
        r["label"] for r in mrpc
    ] == [1, 0]
    assert [r["label"] for r in glue.read_rows(folder, "STS-B", "train")] == [5.0, 3.8]
    assert glue.read_rows(folder, "SST-2", "train")[0] == {
        "idx": 0,
        "sentence1": "hide new secretions from the parental units ",
        "sentence2": None,
        "label": 0,
    }
    mnli = glue.read_rows(folder, "MNLI", "train")
    assert [r["label"] for r in mnli] == [1, 0, 2]  # HF order: entailment, neutral, contradiction
    assert mnli[0]["sentence2"] == "Product and geography are what make cream skimming work."
    assert glue.read_rows(folder, "MNLI", "dev_mismatched")[0]["label"] == 2
    assert [r["label"] for r in glue.read_rows(folder, "QNLI", "train")] == [1, 0]  # entailment, not_entailment
    assert [r["label"] for r in glue.read_rows(folder, "WNLI", "train")] == [1, 1, 0]
    assert glue.read_rows(folder, "QQP", "train")[1]["sentence2"] == "How do you control your horniness?"
    assert verify("glue", tmp_path / "out") == []


def test_missing_task_and_bad_header(tmp_path: Path) -> None:
    partial = {k: v for k, v in FILES.items() if not k.startswith("WNLI/")}
    with pytest.raises(DataMissingError, match="lacks WNLI/train, WNLI/dev"):
        glue.prepare_from_raw(write_raw(tmp_path / "a", partial), tmp_path / "out" / "glue")
    bad = dict(FILES)
    bad["RTE/train.tsv"] = b"index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n"
    with pytest.raises(DataMissingError, match=r"lacks column\(s\) \['sentence1', 'sentence2'\]"):
        glue.prepare_from_raw(write_raw(tmp_path / "b", bad), tmp_path / "out2" / "glue")
    assert not (tmp_path / "out2" / "glue" / "manifest.json").exists()
    with pytest.raises(DataMissingError, match="neither GLUE task folders"):
        glue.prepare_from_raw(tmp_path, tmp_path / "out3" / "glue")


def test_rerun_with_same_files_reuses(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw")
    first = glue.prepare_from_raw(raw, tmp_path / "out" / "glue")
    mtime = (tmp_path / "out/glue/manifest.json").stat().st_mtime_ns
    assert glue.prepare_from_raw(raw, tmp_path / "out" / "glue") == first
    assert (tmp_path / "out/glue/manifest.json").stat().st_mtime_ns == mtime
    (raw / "RTE/train.tsv").write_bytes(FILES["RTE/train.tsv"] + b"1\tA.\tB.\tentailment\n")  # changed input -> redone
    assert glue.prepare_from_raw(raw, tmp_path / "out" / "glue").stats["train_rows"]["RTE"] == 2


def test_smoke_stand_in_is_generated_in_the_official_formats() -> None:
    m = get_dataset("glue").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    assert m.name == "glue-smoke" and m.stats["stand_in"] == glue.STAND_IN
    assert m.stats["train_rows"] == glue.STANDIN_TRAIN_ROWS and m.skipped == {}
    assert all(m.samples(f"{t}/{s}") == glue.STANDIN_DEV_ROWS for t, task in glue.TASKS.items() for s in task.dev)
    raw = raw_root() / "glue-smoke"
    assert "NOT THE REAL DATASET" in (raw / "STAND-IN.txt").read_text()
    cola = (raw / "CoLA/train.tsv").read_text().splitlines()
    assert all(len(line.split("\t")) == 4 for line in cola) and not cola[0].startswith("index")
    assert (raw / "MNLI/train.tsv").read_text().splitlines()[0].split("\t")[-1] == "gold_label"
    assert len((raw / "MNLI/dev_matched.tsv").read_text().splitlines()[1].split("\t")) == 16
    labels = {t: {r["label"] for r in glue.read_rows(data_root() / "glue-smoke", t, "train")} for t in glue.TASKS}
    assert labels["MNLI"] == {0, 1, 2} and labels["CoLA"] == {0, 1} and all(0 <= x <= 5 for x in labels["STS-B"])


def test_stand_in_generation_is_deterministic(tmp_path: Path) -> None:
    glue.write_standin_tsvs(tmp_path / "a")
    glue.write_standin_tsvs(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tsv"))
    assert len(files) == 19  # 9 train + 8 dev + MNLI's second dev
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_hf_parquet_snapshot(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    raw = tmp_path / "hf"
    for task in glue.TASKS.values():
        cols = glue.HF_TEXT[task.hf]
        for split in task.splits:
            hf_split = split.replace("dev", "validation")
            n = 3 if split == "train" else 1
            table = {c: [f"{task.hf} {c} {i}" for i in range(n)] for c in cols}
            table["label"] = (
                [2.5 * (i % 3) for i in range(n)]
                if not task.label_names
                else [i % len(task.label_names) for i in range(n)]
            )
            if task.hf == "qqp" and split == "train":
                table["label"][2] = 7  # out of range -> skipped
            table["idx"] = list(range(n))
            (raw / task.hf).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(table), raw / task.hf / f"{hf_split}-00000-of-00001.parquet")
    m = glue.prepare_from_raw(raw, tmp_path / "out" / "glue")
    assert m.config["layout"] == "parquet"
    assert m.stats["train_rows"] == {t: (2 if t == "QQP" else 3) for t in glue.TASKS}
    assert m.skipped == {"bad label": 1}
    row = json.loads((tmp_path / "out/glue/MNLI/train.jsonl").read_text().splitlines()[2])
    assert row == {"idx": 2, "sentence1": "mnli premise 2", "sentence2": "mnli hypothesis 2", "label": 2}
    assert glue.read_rows(tmp_path / "out" / "glue", "STS-B", "train")[1]["label"] == 2.5


# --------------------------------------------------------------------------- HF layouts == TSVs
# How the HF nyu-mll/glue dataset stores each task, written down from its dataset card (independent of glue.TASKS):
# TSV folder -> (HF config, TSV text columns (CoLA: positions), TSV label column, HF text columns, TSV label -> HF label)
_BIN = {"0": 0, "1": 1}
_NLI2 = {"entailment": 0, "not_entailment": 1}
HF_CARD = {
    "CoLA": ("cola", (3,), 1, ("sentence",), _BIN),
    "SST-2": ("sst2", ("sentence",), "label", ("sentence",), _BIN),
    "MRPC": ("mrpc", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2"), _BIN),
    "STS-B": ("stsb", ("sentence1", "sentence2"), "score", ("sentence1", "sentence2"), float),
    "QQP": ("qqp", ("question1", "question2"), "is_duplicate", ("question1", "question2"), _BIN),
    "MNLI": (
        "mnli",
        ("sentence1", "sentence2"),
        "gold_label",
        ("premise", "hypothesis"),
        {"entailment": 0, "neutral": 1, "contradiction": 2},
    ),
    "QNLI": ("qnli", ("question", "sentence"), "label", ("question", "sentence"), _NLI2),
    "RTE": ("rte", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"), _NLI2),
    "WNLI": ("wnli", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"), _BIN),
}


def _twin_data(tsv_root: Path) -> dict[tuple[str, str], dict[str, list]]:
    """Write GLUE-format TSVs and return the same rows as HF columns, with a NUL row and a bad label in both."""
    glue.write_standin_tsvs(tsv_root)
    tables = {}
    for folder, (config, text_cols, label_col, hf_text, to_hf) in HF_CARD.items():
        for path in sorted((tsv_root / folder).glob("*.tsv")):
            lines = path.read_text(encoding="utf-8").splitlines()
            header = lines.pop(0).split("\t") if folder != "CoLA" else None
            rows = [line.split("\t") for line in lines]
            at = [header.index(c) if header else c for c in text_cols]
            label_at = header.index(label_col) if header else label_col
            nul, bad = list(rows[0]), list(rows[0])
            nul[at[-1]] = "a NUL \x00 inside"
            bad[label_at] = "7.5" if to_hf is float else "maybe"
            rows[1:1] = [nul]
            rows[3:3] = [bad]
            lines = ["\t".join(r) for r in ([header] if header else []) + rows]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            hf_split = path.stem.replace("dev", "validation")
            table: dict[str, list] = {c: [r[i] for r in rows] for c, i in zip(hf_text, at, strict=True)}
            table["label"] = [
                float(r[label_at]) if to_hf is float else to_hf.get(r[label_at], -1) for r in rows
            ]  # HF writes unlabelled rows as -1
            table["idx"] = list(range(len(rows)))
            tables[(config, hf_split)] = table
    return tables


def _features(table: dict[str, list], config: str):
    """The hub's feature types: a ClassLabel label (STS-B: float32 score), int32 idx."""
    import datasets

    classes = 3 if config == "mnli" else 2
    label = datasets.Value("float32") if config == "stsb" else datasets.ClassLabel(num_classes=classes)
    return datasets.Features(
        {
            c: (label if c == "label" else datasets.Value("int32") if c == "idx" else datasets.Value("string"))
            for c in table
        }
    )


def _pieces(config: str, split: str, n: int) -> list[tuple[int, int]]:
    """MNLI train comes in two files (readers must keep their order), the rest in one."""
    return [(0, n // 2), (n // 2, n)] if (config, split) == ("mnli", "train") else [(0, n)]


def _write_hf(raw: Path, tables: dict[tuple[str, str], dict[str, list]], layout: str) -> Path:
    """The HF layouts, each written the way its owner writes it: parquet as on the hub, ``save_to_disk`` and
    the ``datasets`` cache by ``datasets`` itself (the cache as ``load_dataset`` leaves it: arrow stream files
    named ``glue-<split>[-k-of-n].arrow`` next to a ``dataset_info.json`` with the splits' shard lengths)."""
    import datasets
    import pyarrow.parquet as pq

    by_config: dict[str, dict[str, datasets.Dataset]] = {}
    for (config, split), columns in tables.items():
        by_config.setdefault(config, {})[split] = datasets.Dataset.from_dict(
            columns, features=_features(columns, config)
        )
    for config, splits in by_config.items():
        if layout == "arrow":
            shards = {s: len(_pieces(config, s, 2)) for s in splits}
            datasets.DatasetDict(splits).save_to_disk(str(raw / config), num_shards=shards)
            continue
        folder = raw / "nyu-mll___glue" / config / "0.0.0" / "5f3bf5c1e9d1b2a4"
        infos = datasets.SplitDict(dataset_name="glue")
        for split, ds in splits.items():
            pieces = _pieces(config, split, len(ds))
            n = len(pieces)
            for k, (a, b) in enumerate(pieces):
                piece = ds.select(range(a, b)).flatten_indices()
                if layout in ("parquet", "hub-cache"):
                    base = raw / "datasets--nyu-mll--glue/snapshots/0123abcd" if layout == "hub-cache" else raw
                    (base / config).mkdir(parents=True, exist_ok=True)
                    pq.write_table(piece.data.table, base / config / f"{split}-{k:05d}-of-{n:05d}.parquet")
                else:  # datasets' cache
                    name = f"glue-{split}.arrow" if n == 1 else f"glue-{split}-{k:05d}-of-{n:05d}.arrow"
                    folder.mkdir(parents=True, exist_ok=True)
                    with datasets.arrow_writer.ArrowWriter(path=str(folder / name), features=ds.features) as writer:
                        writer.write_table(piece.data.table)
                        writer.finalize()
            lengths = [b - a for a, b in pieces]
            infos.add(datasets.SplitInfo(split, num_examples=len(ds), shard_lengths=lengths if n > 1 else None))
        if layout == "hf-cache":
            info = datasets.DatasetInfo(
                features=next(iter(splits.values())).features,
                config_name=config,
                dataset_name="glue",
                builder_name="glue",
            )
            info.splits = infos
            info.write_to_directory(str(folder))
    return raw


@pytest.mark.parametrize("layout", ["parquet", "arrow", "hf-cache", "hub-cache"])
def test_hf_layouts_prepare_exactly_what_the_tsvs_give(tmp_path: Path, layout: str) -> None:
    pytest.importorskip("datasets")
    tables = _twin_data(tmp_path / "tsv")
    from_tsv = glue.prepare_from_raw(tmp_path / "tsv", tmp_path / "a" / "glue")
    from_hf = glue.prepare_from_raw(_write_hf(tmp_path / "hf", tables, layout), tmp_path / "b" / "glue")
    assert from_hf.config["layout"] == ("parquet" if layout == "hub-cache" else layout)
    assert from_tsv.skipped == from_hf.skipped == {"bad label": 19, "nul byte": 19}  # one of each per file
    assert from_hf.stats == from_tsv.stats
    for key, split in from_tsv.splits.items():
        task, name = key.split("/")
        assert glue.read_rows(tmp_path / "b" / "glue", task, name) == glue.read_rows(
            tmp_path / "a" / "glue", task, name
        )
        assert from_hf.split(key)["shards"][0]["sha256"] == split["shards"][0]["sha256"]  # byte-identical files
        assert from_hf.samples(key) == split["samples"] > 0
    stsb = glue.read_rows(tmp_path / "b" / "glue", "STS-B", "train")
    assert any(r["label"] != float(np.float32(r["label"])) for r in stsb)  # float32 scores come back as the TSV's
    skipped = {s["reason"]: s["id"] for s in from_hf.split("MNLI/train")["shards"][0]["skipped"]}
    assert skipped["nul byte"].endswith(":1") and skipped["bad label"].endswith(":3")
    assert verify("glue", tmp_path / "b") == []


def test_hf_null_text_and_bad_files(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    tables = _twin_data(tmp_path / "tsv")
    tables[("rte", "train")]["sentence2"][2] = None
    raw = _write_hf(tmp_path / "hf", tables, "parquet")
    m = glue.prepare_from_raw(raw, tmp_path / "out" / "glue")
    assert m.skipped == {"bad label": 19, "missing text": 1, "nul byte": 19}
    assert m.split("RTE/train")["shards"][0]["skipped"][1] == {
        "id": "rte/train-00000-of-00001.parquet:2",
        "reason": "missing text",
    }
    assert [r["idx"] for r in glue.read_rows(tmp_path / "out" / "glue", "RTE", "train")][:3] == [0, 4, 5]

    pq.write_table(pa.table({"premise": ["a"], "label": [0]}), raw / "rte/validation-00000-of-00001.parquet")
    with pytest.raises(
        DataMissingError, match=r"rte/validation-00000-of-00001.parquet: columns .* lack \['sentence1', 'sentence2'\]"
    ):
        glue.prepare_from_raw(raw, tmp_path / "out2" / "glue")
    (raw / "rte/validation-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(
        DataMissingError,
        match=r"parquet \(.*rte/validation-00000-of-00001.parquet\) is not readable by datasets \(ArrowInvalid",
    ):
        glue.prepare_from_raw(raw, tmp_path / "out2" / "glue")
    assert not (tmp_path / "out2" / "glue" / "manifest.json").exists()


def test_hf_layout_errors(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    tables = _twin_data(tmp_path / "tsv")
    cache = _write_hf(tmp_path / "cache", tables, "hf-cache")
    stale = cache / "nyu-mll___glue/cola/0.0.0/0000000000000000"
    stale.mkdir()
    (stale / "glue-train.arrow").write_bytes(b"")
    with pytest.raises(DataMissingError, match="holds 2 cached versions"):
        glue.prepare_from_raw(cache, tmp_path / "out" / "glue")
    hub = _write_hf(tmp_path / "hub", tables, "hub-cache")
    (hub / "datasets--nyu-mll--glue/snapshots/4567cdef").mkdir()
    with pytest.raises(DataMissingError, match="holds 2 revisions"):
        glue.prepare_from_raw(hub / "datasets--nyu-mll--glue", tmp_path / "out" / "glue")
    partial = tmp_path / "partial"
    _write_hf(partial, {k: v for k, v in tables.items() if k[0] != "wnli"}, "arrow")
    with pytest.raises(DataMissingError, match="lacks WNLI/train, WNLI/dev"):
        glue.prepare_from_raw(partial, tmp_path / "out" / "glue")
    (tmp_path / "empty" / "cola").mkdir(parents=True)
    with pytest.raises(DataMissingError, match="neither GLUE task folders .* nor the HF nyu-mll/glue dataset"):
        glue.prepare_from_raw(tmp_path / "empty", tmp_path / "out" / "glue")
    assert not (tmp_path / "out" / "glue").exists()


def test_hf_reads_are_offline_and_restore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    import os

    from mmthesis.data import hf

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    with hf.offline() as datasets:
        assert datasets.config.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
        with pytest.raises(Exception, match="offline|Offline|OFFLINE"):  # a hub name is never fetched
            datasets.load_dataset("nyu-mll/glue", "cola", cache_dir="/nonexistent-mmthesis-cache")
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(DataMissingError, match=r"X, and reading it needs Hugging Face datasets \(fix: `pip install"):
        hf.require("X")
