"""The GLUE smoke stand-in: toy task files *generated* in exactly the official TSV layouts.

Templated sentences, deterministic in the seed, parsed by the same code as the
real files (``mmthesis.data.datasets.glue.prepare_from_raw``); they are a
stand-in, not GLUE. Kept apart from the GLUE preparer as the image-text
stand-ins are (``vl_standins``).
"""

from __future__ import annotations

import random
from pathlib import Path

from mmthesis.data.standins import build_once

STAND_IN = "generated GLUE-format toy task files"

STANDIN_TRAIN_ROWS = {
    "CoLA": 40,
    "SST-2": 48,
    "MRPC": 32,
    "STS-B": 36,
    "QQP": 44,
    "MNLI": 60,
    "QNLI": 40,
    "RTE": 28,
    "WNLI": 24,
}
STANDIN_DEV_ROWS = 12

_NAMES = ["Anna", "Ben", "Carla", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas"]
_THINGS = [
    "the book",
    "a bicycle",
    "the old map",
    "a red kite",
    "the letter",
    "a small boat",
    "the piano",
    "a garden chair",
]
_VERBS = [
    ("reads", "read"),
    ("repairs", "repair"),
    ("paints", "paint"),
    ("sells", "sell"),
    ("finds", "find"),
    ("carries", "carry"),
]
_PLACES = ["in the park", "at the station", "near the river", "in the kitchen", "on the roof", "at school"]
_GOOD = ["wonderful", "delightful", "moving", "clever", "charming"]
_BAD = ["dull", "tedious", "clumsy", "forgettable", "painful"]


def _clause(rng: random.Random) -> tuple[str, str, str, str]:
    return rng.choice(_NAMES), rng.choice(_VERBS)[0], rng.choice(_THINGS), rng.choice(_PLACES)


def _sentence(rng: random.Random) -> str:
    who, verb, what, where = _clause(rng)
    return f"{who} {verb} {what} {where}."


def _paraphrase(sentence: str) -> str:
    who, rest = sentence.split(" ", 1)
    return f"{who} indeed {rest}"


def _parse(sentence: str) -> tuple[str, str]:
    words = sentence.rstrip(".").split()
    return "( " + " ".join(words) + " . )", "(ROOT (S " + " ".join(f"(W {w})" for w in words) + " (. .)))"


def _standin_rows(task: str, n: int, rng: random.Random, split: str) -> list[list[str]]:
    rows: list[list[str]] = []
    for i in range(n):
        label = i % 2
        s1 = _sentence(rng)
        if task == "CoLA":
            words = s1.rstrip(".").split()
            text = s1 if label else " ".join(reversed(words)) + "."
            rows.append([rng.choice(["gj04", "bc01", "ks08"]), str(label), "" if label else "*", text])
        elif task == "SST-2":
            adjective = rng.choice(_GOOD if label else _BAD)
            rows.append([f"a {adjective} film about {rng.choice(_THINGS)} ", str(label)])
        elif task in ("MRPC", "QQP"):
            s2 = _paraphrase(s1) if label else _sentence(rng)
            if task == "MRPC":
                rows.append([str(label), str(100000 + 2 * i), str(100001 + 2 * i), s1, s2])
            else:
                q1, q2 = f"Why does {s1[:-1]}?", f"Why does {s2[:-1]}?"
                rows.append([str(i), str(2 * i + 1), str(2 * i + 2), q1, q2, str(label)])
        elif task == "STS-B":
            s2 = _paraphrase(s1) if i % 3 else _sentence(rng)
            common = len(set(s1.split()) & set(s2.split())) / len(set(s1.split()) | set(s2.split()))
            score = round(5.0 * common, 3)
            rows.append(
                [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1, s2, f"{score:.3f}"]
            )
        elif task == "MNLI":
            gold = ("entailment", "neutral", "contradiction")[i % 3]
            who, verb, what, where = _clause(rng)
            premise = f"{who} {verb} {what} {where}."
            hypothesis = {
                "entailment": f"{who} {verb} {what}.",
                "neutral": f"{who} {verb} {what} every day.",
                "contradiction": f"{who} never {verb} anything.",
            }[gold]
            p1, p2 = _parse(premise)
            h1, h2 = _parse(hypothesis)
            genre = rng.choice(["fiction", "government", "slate", "telephone", "travel"])
            labels = [gold] if split == "train" else [gold] * 5
            rows.append(
                [
                    str(i),
                    str(1000 + i),
                    f"{1000 + i}{'enc'[i % 3]}",
                    genre,
                    p1,
                    h1,
                    p2,
                    h2,
                    premise,
                    hypothesis,
                    *labels,
                    gold,
                ]
            )
        elif task == "QNLI":
            who, verb, what, where = _clause(rng)
            question = f"Where does {who} {dict(_VERBS)[verb]} {what}?"
            answer = (
                f"{who} {verb} {what} {where}." if label == 0 else f"{rng.choice(_NAMES)} likes {rng.choice(_THINGS)}."
            )
            rows.append([str(i), question, answer, ("entailment", "not_entailment")[label]])
        elif task == "RTE":
            who, verb, what, where = _clause(rng)
            hypothesis = f"{who} {verb} {what}." if label == 0 else f"{who} has never seen {what}."
            rows.append([str(i), f"{who} {verb} {what} {where}.", hypothesis, ("entailment", "not_entailment")[label]])
        elif task == "WNLI":
            a, b = rng.sample(_NAMES, 2)
            thing = rng.choice(_THINGS)
            referent = a if label else b
            rows.append(
                [str(i), f"{a} gave {thing} to {b} because {a} was leaving.", f"{referent} was leaving.", str(label)]
            )
    return rows


_MNLI_COLUMNS = [
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
]
_HEADERS = {
    "SST-2": ["sentence", "label"],
    "MRPC": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "STS-B": [
        "index",
        "genre",
        "filename",
        "year",
        "old_index",
        "source1",
        "source2",
        "sentence1",
        "sentence2",
        "score",
    ],
    "QQP": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    # MNLI train files carry one annotator label, the dev files five (then the gold label)
    "MNLI": [*_MNLI_COLUMNS, "label1", "gold_label"],
    "MNLI-dev": [*_MNLI_COLUMNS, *(f"label{i}" for i in range(1, 6)), "gold_label"],
    "QNLI": ["index", "question", "sentence", "label"],
    "RTE": ["index", "sentence1", "sentence2", "label"],
    "WNLI": ["index", "sentence1", "sentence2", "label"],
}


def write_standin_tsvs(dest: Path, seed: int = 0) -> None:
    """Generate all 9 tasks' train/dev TSVs in the official layouts (deterministic in ``seed``)."""
    from mmthesis.data.datasets.glue import TASKS  # glue imports this module for its smoke scale

    for task in TASKS.values():
        for split in task.splits:
            rng = random.Random(f"{seed}/{task.name}/{split}")
            n = STANDIN_TRAIN_ROWS[task.name] if split == "train" else STANDIN_DEV_ROWS
            rows = _standin_rows(task.name, n, rng, split)
            header = (
                None
                if not task.header
                else _HEADERS["MNLI-dev" if task.name == "MNLI" and split != "train" else task.name]
            )
            out = dest / task.name / f"{split}.tsv"
            out.parent.mkdir(parents=True, exist_ok=True)
            lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
            out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_standin_raw(dest: Path) -> Path:
    version = {"generator": "glue-standin-v1", "train_rows": STANDIN_TRAIN_ROWS, "dev_rows": STANDIN_DEV_ROWS}
    return build_once(dest, STAND_IN, version, write_standin_tsvs)
