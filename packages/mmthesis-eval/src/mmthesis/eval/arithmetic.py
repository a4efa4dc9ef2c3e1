"""Latent arithmetic on shapes (issue 14; the exposé's question: does arithmetic work across modalities?).

Compositional queries are built from the shapes ground truth (seeded, deterministic), each a signed sum of image
and text terms with a target (the attributes its answer's main shape should have):

- ``image-swap-colour``: image(x) - text("a red circle") + text("a blue circle") -> x with a blue main circle;
- ``image-swap-shape``: image(x) - text("a red circle") + text("a red square") -> x with a red main square;
- ``image-add-object``: image(A, one shape at p) + text("a B on the <opposite of p>") -> A at p beside B (count 2);
- ``text-swap-colour``: text(caption of x) - text("a red circle") + text("a blue circle") -> the swapped caption;
- ``text-analogy``: text("a c1 s1") - text("a c1 s2") + text("a c2 s2") -> a c2 s1;
- ``image-analogy``: image(c1 s1) - image(c1 s2) + image(c2 s2) -> a c2 s1 (single-shape images).

Each query is scored four ways (``METHODS``), after the "image only" / "text only" baselines of composed retrieval
(TIRG, Vo et al. 2019): the composed query (``arithmetic``); ``source`` only (its first term: no arithmetic);
``modifier`` only (the sum of its positive terms after the source, i.e. what is added: text("a blue circle") for
a swap, the added shape's caption for image-add-object, the added caption / image for text- / image-analogy), which
names the new attribute but not what the source keeps (position, count, the kept shape or colour); and
``target-text`` only (the generator's full caption of the target, stating every scored attribute: an oracle, the
upper reference rather than a baseline to beat). For an embedding model the (re-normalised) sum retrieves from the
test images; a method's accuracy per attribute is the share of queries whose top-1 image has the target's attribute
(``shapes_attributes.match``), ``all`` every specified one, ``all_r5`` whether any of the top 5 has all. ``chance``
is the expectation for a random test image. For a ``CrossModalGenerator`` the latents are summed (not normalised)
and decoded, the image read by the attribute classifier and the text by the grammar reader, with the same methods
and chance from a random test image/caption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmthesis.core.errors import ConfigError
from mmthesis.core.registry import lookup
from mmthesis.data.datasets.shapes import SHAPES, single_captions
from mmthesis.eval.shapes_attributes import (
    ATTRIBUTES,
    COLOUR_NAMES,
    OPPOSITE,
    Scene,
    ShapeObject,
    Target,
    caption_target,
    match,
    read_caption,
    with_article,
)

METHODS = ("arithmetic", "source", "modifier", "target-text")
SCORES = (*ATTRIBUTES, "all")


@dataclass(frozen=True)
class Term:
    sign: int  # +1 or -1
    kind: str  # "image" (ref = gallery row) or "text" (ref = the text)
    ref: int | str

    def to_json(self) -> dict[str, Any]:
        return {"sign": self.sign, "kind": self.kind, "ref": self.ref}


@dataclass(frozen=True)
class Query:
    kind: str
    terms: tuple[Term, ...]  # the composed query = the signed sum; the first term is the source
    target: Target
    target_text: str

    def method_terms(self, method: str) -> tuple[Term, ...]:
        if method == "arithmetic":
            return self.terms
        if method == "source":
            return self.terms[:1]
        if method == "modifier":  # what the query adds: its positive terms after the source
            added = tuple(t for t in self.terms[1:] if t.sign > 0)
            if not added:
                raise ValueError(f"{self.kind} query adds no term after its source: no modifier baseline")
            return added
        if method == "target-text":
            return (Term(1, "text", self.target_text),)
        raise ValueError(f"unknown method {method!r}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "terms": [t.to_json() for t in self.terms], "target": self.target.to_json(),
                "target_text": self.target_text}  # fmt: skip


# ------------------------------------------------------------------------------ query sets
def _pick(rng: np.random.Generator, candidates: Sequence[int], n: int) -> list[int]:
    """``n`` candidates, without replacement while there are enough."""
    if not candidates:
        return []
    replace_ = n > len(candidates)
    return [candidates[int(i)] for i in rng.choice(len(candidates), size=n, replace=replace_)]


def _swap(scene: Scene, attribute: str, value: str) -> Scene:
    main = replace(scene.objects[0], **{attribute: value})
    return Scene((main, *scene.objects[1:]))


def _swap_choices(scene: Scene, attribute: str) -> list[str]:
    """Values the main shape can take instead: not its own, and not making it the second shape's twin."""
    values = COLOUR_NAMES if attribute == "colour" else SHAPES
    others = {o.name for o in scene.objects[1:]}
    main = scene.objects[0]
    return [v for v in values if v != getattr(main, attribute) and replace(main, **{attribute: v}).name not in others]


def _swap_queries(kind, scenes, captions, rng, n, attribute: str, text_source: bool) -> list[Query]:
    out = []
    for row in _pick(rng, range(len(scenes)), n):
        scene = scenes[row]
        choices = _swap_choices(scene, attribute)
        new = _swap(scene, attribute, choices[int(rng.integers(len(choices)))])
        old_phrase, new_phrase = with_article(scene.objects[0].name), with_article(new.objects[0].name)
        if text_source:
            k = int(rng.integers(len(captions[row])))
            source, target_text = Term(1, "text", captions[row][k]), new.captions()[k]
            target = caption_target(new, target_text)
        else:
            source, target_text, target = Term(1, "image", row), new.captions()[0], new.main()
        terms = (source, Term(-1, "text", old_phrase), Term(1, "text", new_phrase))
        out.append(Query(kind, terms, target, target_text))
    return out


def _add_object_queries(kind, scenes, captions, rng, n) -> list[Query]:
    singles = [i for i, s in enumerate(scenes) if s.count == 1 and s.objects[0].position in OPPOSITE]
    names = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
    out = []
    for row in _pick(rng, singles, n):
        a = scenes[row].objects[0]
        others = [(c, s) for c, s in names if f"{c} {s}" != a.name]
        c, s = others[int(rng.integers(len(others)))]
        b = ShapeObject(c, s, OPPOSITE[a.position])
        new = Scene((a, b))
        terms = (Term(1, "image", row), Term(1, "text", single_captions(b.name, b.position)[0]))
        out.append(Query(kind, terms, new.main(), new.captions()[0]))
    return out


def _text_analogy_queries(kind, scenes, captions, rng, n) -> list[Query]:
    out = []
    for _ in range(n):
        c1, c2 = (COLOUR_NAMES[int(i)] for i in rng.choice(len(COLOUR_NAMES), 2, replace=False))
        s1, s2 = (SHAPES[int(i)] for i in rng.choice(len(SHAPES), 2, replace=False))
        terms = (
            Term(1, "text", with_article(f"{c1} {s1}")),
            Term(-1, "text", with_article(f"{c1} {s2}")),
            Term(1, "text", with_article(f"{c2} {s2}")),
        )
        out.append(Query(kind, terms, Target(shape=s1, colour=c2), with_article(f"{c2} {s1}")))
    return out


def _image_analogy_queries(kind, scenes, captions, rng, n) -> list[Query]:
    """x = (c1, s1), y = (c1, s2), z = (c2, s2), all single-shape test images; positions free (not scored)."""
    singles = [i for i, s in enumerate(scenes) if s.count == 1]
    by_name: dict[tuple[str, str], list[int]] = {}
    for i in singles:
        o = scenes[i].objects[0]
        by_name.setdefault((o.colour, o.shape), []).append(i)

    def ys(x: ShapeObject) -> list[tuple[int, list[int]]]:
        pairs = []
        for (c, s), rows in by_name.items():
            if c == x.colour and s != x.shape:
                zs = [r for (c2, s2), rr in by_name.items() if s2 == s and c2 != c for r in rr]
                pairs += [(y, zs) for y in rows if zs]
        return pairs

    valid = [(x, ys(scenes[x].objects[0])) for x in singles]
    valid = [(x, p) for x, p in valid if p]
    out = []
    for i in _pick(rng, range(len(valid)), n):
        x, pairs = valid[i]
        y, zs = pairs[int(rng.integers(len(pairs)))]
        z = zs[int(rng.integers(len(zs)))]
        ox, oz = scenes[x].objects[0], scenes[z].objects[0]
        terms = (Term(1, "image", x), Term(-1, "image", y), Term(1, "image", z))
        out.append(Query(kind, terms, Target(shape=ox.shape, colour=oz.colour, count=1),
                         with_article(f"{oz.colour} {ox.shape}")))  # fmt: skip
    return out


QUERY_KINDS: dict[str, Callable[..., list[Query]]] = {
    "image-swap-colour": lambda *a: _swap_queries(*a, attribute="colour", text_source=False),
    "image-swap-shape": lambda *a: _swap_queries(*a, attribute="shape", text_source=False),
    "image-add-object": _add_object_queries,
    "text-swap-colour": lambda *a: _swap_queries(*a, attribute="colour", text_source=True),
    "text-analogy": _text_analogy_queries,
    "image-analogy": _image_analogy_queries,
}


def build_queries(
    scenes: Sequence[Scene], captions: Sequence[Sequence[str]], kinds: Sequence[str], per_kind: int, seed: int
) -> list[Query]:
    """``per_kind`` queries of each kind over a split's scenes/captions; kind i draws from ``default_rng([seed, i])``
    (i = its index in ``QUERY_KINDS``), so a kind's queries do not change when others are added or dropped."""
    if per_kind < 1:
        raise ValueError(f"queries per kind must be >= 1, got {per_kind}")
    out: list[Query] = []
    for kind in kinds:
        build = lookup(QUERY_KINDS, "arithmetic query kind", kind)
        rng = np.random.default_rng([seed, list(QUERY_KINDS).index(kind)])
        out += build(kind, list(scenes), list(captions), rng, per_kind)
    return out


# ------------------------------------------------------------------------------ scoring
def texts_of(queries: Sequence[Query]) -> list[str]:
    """Every distinct text any method of any query needs, in first-use order."""
    seen: dict[str, None] = {}
    for q in queries:
        for m in METHODS:
            for t in q.method_terms(m):
                if t.kind == "text":
                    seen.setdefault(str(t.ref), None)
    return list(seen)


def compose(
    terms: Sequence[Term], image_vectors: torch.Tensor, text_vectors: dict[str, torch.Tensor], normalise: bool
) -> torch.Tensor:
    """The signed sum of the terms' vectors, L2-normalised for an embedding space."""
    total = sum(t.sign * (image_vectors[int(t.ref)] if t.kind == "image" else text_vectors[str(t.ref)]) for t in terms)
    return F.normalize(total.float(), dim=-1) if normalise else total


def ranked(query_emb: torch.Tensor, image_emb: torch.Tensor, k: int) -> torch.Tensor:
    """(Q, k) gallery rows by descending cosine; ties keep the lower row first."""
    scores = query_emb.float() @ image_emb.float().t()
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]


def mean_hits(hits: list[dict[str, bool]]) -> dict[str, float]:
    """Percent of queries with each score (over the queries that specify it)."""
    out = {}
    for a in SCORES:
        values = [h[a] for h in hits if a in h]
        if values:
            out[a] = 100.0 * sum(values) / len(values)
    return out


def chance_hits(target: Target, scenes: Sequence[Scene], k: int) -> dict[str, float]:
    """Expected hit rate (fraction) of a uniformly random gallery image per score, and of ``k`` random ones for all."""
    matches = [match(s, target) for s in scenes]
    out = {a: sum(m[a] for m in matches) / len(matches) for a in matches[0]}
    n, m = len(scenes), sum(mm["all"] for mm in matches)
    k = min(k, n)
    out[f"all_r{k}"] = 1.0 - math.comb(n - m, k) / math.comb(n, k)
    return out


def _mean_chance(chances: list[dict[str, float]]) -> dict[str, float]:
    """Percent per score, over the queries whose target states it."""
    keys = dict.fromkeys(k for c in chances for k in c)
    return {k: 100.0 * float(np.mean([c[k] for c in chances if k in c])) for k in keys}


@dataclass
class Scored:
    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def score_retrieval(
    queries: Sequence[Query],
    image_emb: torch.Tensor,
    text_emb: dict[str, torch.Tensor],
    scenes: Sequence[Scene],
    image_ids: Sequence[str],
    k: int = 5,
) -> Scored:
    """Retrieval accuracy (percent) per query kind and method, chance, and one row per query."""
    if len(scenes) != len(image_emb):
        raise ValueError(f"{len(scenes)} scenes for {len(image_emb)} gallery images")
    out = Scored()
    rows = [{"query": i, **q.to_json()} for i, q in enumerate(queries)]
    for kind in dict.fromkeys(q.kind for q in queries):
        index = [i for i, q in enumerate(queries) if q.kind == kind]
        for method in METHODS:
            emb = torch.stack([compose(queries[i].method_terms(method), image_emb, text_emb, True) for i in index])
            top = ranked(emb, image_emb, k)
            hits = []
            for i, best in zip(index, top.tolist(), strict=True):
                h = match(scenes[best[0]], queries[i].target)
                h[f"all_r{k}"] = any(match(scenes[r], queries[i].target)["all"] for r in best)
                hits.append(h)
                rows[i][method] = {"top": [image_ids[r] for r in best], **h}
            out.metrics |= {f"{kind}/{method}/{a}": v for a, v in mean_hits(hits).items()}
            out.metrics[f"{kind}/{method}/all_r{k}"] = 100.0 * sum(h[f"all_r{k}"] for h in hits) / len(hits)
        chances = [chance_hits(queries[i].target, scenes, k) for i in index]
        out.metrics |= {f"{kind}/chance/{a}": v for a, v in _mean_chance(chances).items()}
        out.metrics[f"{kind}/queries"] = float(len(index))
    out.metrics |= _means(out.metrics, [*METHODS, "chance"], [*SCORES, f"all_r{k}"])
    out.rows = rows
    return out


def _means(metrics: dict[str, float], methods: Sequence[str], scores: Sequence[str], prefix: str = "") -> dict:
    """``{prefix}mean/<method>/<score>``: the unweighted mean over query kinds that report it."""
    out = {}
    kinds = {key[len(prefix):].split("/")[0] for key in metrics if key.startswith(prefix) and key.count("/") >= 1}
    for method in methods:
        for s in scores:
            values = [metrics[f"{prefix}{kind}/{method}/{s}"] for kind in sorted(kinds)
                      if f"{prefix}{kind}/{method}/{s}" in metrics]  # fmt: skip
            if values:
                out[f"{prefix}mean/{method}/{s}"] = sum(values) / len(values)
    return out


def score_decoded(
    queries: Sequence[Query],
    image_latents: torch.Tensor,
    text_latents: dict[str, torch.Tensor],
    decode: Callable[[torch.Tensor], tuple[list[Scene], list[str]]],
    scenes: Sequence[Scene],
    captions: Sequence[Sequence[str]],
) -> Scored:
    """Attribute accuracy of the decoded image and text of each method's summed latent, per kind, with chance.

    ``decode(z)`` returns the scenes the image classifier reads from the decoded images and the decoded texts.
    """
    out = Scored()
    rows: list[dict[str, Any]] = [{"query": i} for i in range(len(queries))]
    all_captions = [(s, c) for s, caps in zip(scenes, captions, strict=True) for c in caps]
    caption_scenes = [read_caption(c)[0] for _, c in all_captions]
    for kind in dict.fromkeys(q.kind for q in queries):
        index = [i for i, q in enumerate(queries) if q.kind == kind]
        for method in METHODS:
            z = torch.stack([compose(queries[i].method_terms(method), image_latents, text_latents, False)
                             for i in index])  # fmt: skip
            image_scenes, texts = decode(z)
            text_reads = [read_caption(t) for t in texts]
            image_hits, text_hits = [], []
            for j, i in enumerate(index):
                image_hits.append(match(image_scenes[j], queries[i].target))
                text_hits.append(match(text_reads[j][0], queries[i].target))
                rows[i][method] = {"image": image_hits[-1], "text": text_hits[-1], "decoded_text": texts[j],
                                   "text_exact": text_reads[j][1]}  # fmt: skip
            out.metrics |= {f"decoded-image/{kind}/{method}/{a}": v for a, v in mean_hits(image_hits).items()}
            out.metrics |= {f"decoded-text/{kind}/{method}/{a}": v for a, v in mean_hits(text_hits).items()}
            out.metrics[f"decoded-text/{kind}/{method}/exact_grammar"] = (
                100.0 * sum(r[1] for r in text_reads) / len(text_reads)
            )
        image_chance = _mean_chance([chance_hits(queries[i].target, scenes, 1) for i in index])
        text_chance = _mean_chance([chance_hits(queries[i].target, caption_scenes, 1) for i in index])
        for a in SCORES:
            if a in image_chance:
                out.metrics[f"decoded-image/{kind}/chance/{a}"] = image_chance[a]
                out.metrics[f"decoded-text/{kind}/chance/{a}"] = text_chance[a]
    for side in ("decoded-image/", "decoded-text/"):
        out.metrics |= _means(out.metrics, [*METHODS, "chance"], [*SCORES, "exact_grammar"], side)
    out.metrics = {k: float(v) for k, v in out.metrics.items()}
    out.rows = rows
    return out


def check_kinds(kinds: Sequence[str], task: str) -> None:
    if not kinds:
        raise ConfigError(f"task {task}: params.kinds is empty", f"name some of {', '.join(QUERY_KINDS)}")
    for k in kinds:
        lookup(QUERY_KINDS, "arithmetic query kind", k)
