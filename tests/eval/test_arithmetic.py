"""Latent arithmetic on shapes: query sets, scoring against hand-computed toy embeddings, chance, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmthesis.core.errors import UnknownNameError
from mmthesis.data.datasets.shapes import ShapesConfig, generate
from mmthesis.eval.arithmetic import (
    QUERY_KINDS,
    Query,
    Term,
    build_queries,
    chance_hits,
    score_decoded,
    score_retrieval,
    texts_of,
)
from mmthesis.eval.shapes_attributes import (
    COLOUR_NAMES,
    POSITIONS,
    SHAPES,
    Scene,
    ShapeObject,
    Target,
    read_caption,
    scene_of_meta,
)

# ------------------------------------------------------------------------------ a toy model where arithmetic is exact
# embedding = L2-normalised sum of one-hots of the main shape's stated attributes (colour, shape, count, position)
DIMS = [*(f"c:{c}" for c in COLOUR_NAMES), *(f"s:{s}" for s in SHAPES), "n:1", "n:2", *(f"p:{p}" for p in POSITIONS)]


def toy(target: Target) -> torch.Tensor:
    v = torch.zeros(len(DIMS))
    for key in (f"c:{target.colour}", f"s:{target.shape}", f"n:{target.count}", f"p:{target.position}"):
        if key in DIMS:
            v[DIMS.index(key)] = 1.0
    return F.normalize(v, dim=0)


def toy_text(text: str) -> torch.Tensor:
    scene, exact = read_caption(text)
    assert exact, text
    main = scene.main()
    return toy(main if scene.objects[0].position is not None else Target(main.shape, main.colour))


GALLERY = [
    Scene((ShapeObject("red", "circle", "left"),)),
    Scene((ShapeObject("blue", "circle", "left"),)),
    Scene((ShapeObject("red", "square", "left"),)),
    Scene((ShapeObject("blue", "square", "right"),)),
    Scene((ShapeObject("blue", "circle", "right"),)),
]
IDS = [f"g{i}" for i in range(len(GALLERY))]
SWAP = Query(
    "image-swap-colour",
    (Term(1, "image", 0), Term(-1, "text", "a red circle"), Term(1, "text", "a blue circle")),
    Target("circle", "blue", 1, "left"),
    "a blue circle on the left",
)
TEXT_ANALOGY = Query(
    "text-analogy",
    (Term(1, "text", "a red circle"), Term(-1, "text", "a red square"), Term(1, "text", "a blue square")),
    Target("circle", "blue"),
    "a blue circle",
)
IMAGE_ANALOGY = Query(
    "image-analogy",
    (Term(1, "image", 0), Term(-1, "image", 2), Term(1, "image", 3)),
    Target("circle", "blue", 1),
    "a blue circle",
)


def _score(queries, k=5):
    image_emb = torch.stack([toy(s.main()) for s in GALLERY])
    return score_retrieval(queries, image_emb, {t: toy_text(t) for t in texts_of(queries)}, GALLERY, IDS, k)


def test_exact_arithmetic_retrieves_the_target_and_baselines_get_their_hand_values():
    m = _score([SWAP, TEXT_ANALOGY, IMAGE_ANALOGY]).metrics
    # image(red circle L) - (r+c)/sqrt2 + (b+c)/sqrt2: scores g1 1.104 > g4 0.854 > g0 0.646 > g3 0.604 > g2 0.396
    assert m["image-swap-colour/arithmetic/all"] == 100.0
    # source only retrieves itself: red circle left -> colour wrong, the rest right
    assert [m[f"image-swap-colour/source/{a}"] for a in ("shape", "colour", "count", "position", "all")] == [
        100.0, 0.0, 100.0, 100.0, 0.0,
    ]  # fmt: skip
    assert m["image-swap-colour/target-text/all"] == 100.0  # "a blue circle on the left" = g1 exactly
    # (r+c - r-s + b+s)/sqrt2 = (b+c)/sqrt2: g1 and g4 tie at 1/sqrt2, the lower row (g1) first
    assert m["text-analogy/arithmetic/all"] == 100.0 and m["text-analogy/source/colour"] == 0.0
    assert "text-analogy/arithmetic/count" not in m  # the target does not state it
    # (r+c+1+L - r-s-1-L + b+s+1+R)/2 = (b+c+1+R)/2 = g4
    assert m["image-analogy/arithmetic/all"] == 100.0
    # chance for the swap target (circle, blue, 1, left): circle 3/5, blue 3/5, count 5/5, left 3/5, all 1/5
    assert [m[f"image-swap-colour/chance/{a}"] for a in ("shape", "colour", "count", "position", "all")] == (
        pytest.approx([60.0, 60.0, 100.0, 60.0, 20.0])
    )
    assert m["image-swap-colour/chance/all_r5"] == 100.0  # 5 of 5 gallery images always contain g1
    assert m["mean/arithmetic/all"] == 100.0
    assert m["mean/source/all"] == 0.0  # every source lacks the target colour
    # modifier = the added term alone: text("a blue square") = (b+s)/sqrt2 -> g3 (blue square): colour only
    assert [m[f"text-analogy/modifier/{a}"] for a in ("shape", "colour", "all")] == [0.0, 100.0, 0.0]
    # image(g3) alone retrieves g3 itself: blue, one shape, but a square
    assert [m[f"image-analogy/modifier/{a}"] for a in ("shape", "colour", "count", "all")] == [0.0, 100.0, 100.0, 0.0]


def test_modifier_says_what_is_added_but_not_where_the_source_is():
    # the blue circle on the right comes before the target (blue circle on the left) in this gallery
    gallery = [GALLERY[0], GALLERY[4], GALLERY[1], GALLERY[2]]
    image_emb = torch.stack([toy(s.main()) for s in gallery])
    texts = texts_of([SWAP])
    assert texts == ["a red circle", "a blue circle", "a blue circle on the left"]
    m = score_retrieval([SWAP], image_emb, {t: toy_text(t) for t in texts}, gallery, IDS[:4], 1).metrics
    # (r+c+1+L)/2 - (r+c)/sqrt2 + (b+c)/sqrt2 scores rows 0.646, 0.854, 1.104, 0.396 -> row 2, the target
    assert m["image-swap-colour/arithmetic/all"] == 100.0
    # (b+c)/sqrt2 ties rows 1 and 2 at 1/sqrt2; row 1 (on the right) comes first: all but the position right
    assert [m[f"image-swap-colour/modifier/{a}"] for a in ("shape", "colour", "count", "position", "all")] == [
        100.0, 100.0, 100.0, 0.0, 0.0,
    ]  # fmt: skip
    assert m["image-swap-colour/source/all"] == 0.0 and m["image-swap-colour/target-text/all"] == 100.0


def test_a_query_that_adds_nothing_has_no_modifier():
    removal = Query("text-analogy", (Term(1, "text", "a red circle"), Term(-1, "text", "a red square")),
                    Target("circle", "red"), "a red circle")  # fmt: skip
    assert removal.method_terms("source") == (Term(1, "text", "a red circle"),)
    with pytest.raises(ValueError, match="text-analogy query adds no term after its source: no modifier baseline"):
        removal.method_terms("modifier")


def test_r_at_k_and_its_chance():
    m = _score([SWAP], k=2).metrics
    assert m["image-swap-colour/arithmetic/all_r2"] == 100.0
    # source = g0: cos 1 with itself, then g1 and g2 tie at 3/4 and the lower row (g1, the target) comes second
    assert m["image-swap-colour/source/all"] == 0.0 and m["image-swap-colour/source/all_r2"] == 100.0
    assert m["image-swap-colour/chance/all_r2"] == pytest.approx(100.0 * (1 - math.comb(4, 2) / math.comb(5, 2)))


def test_chance_averages_each_attribute_over_the_queries_that_state_it():
    # text-swap targets state a position only when the source caption does
    swap = (Term(-1, "text", "a red circle"), Term(1, "text", "a blue circle"))
    stated = Query("text-swap-colour", (Term(1, "text", "a red circle on the left"), *swap),
                   Target("circle", "blue", 1, "left"), "a blue circle on the left")  # fmt: skip
    unstated = Query("text-swap-colour", (Term(1, "text", "red circle"), *swap), Target("circle", "blue", 1), "blue circle")
    m = _score([stated, unstated]).metrics
    assert m["text-swap-colour/chance/position"] == pytest.approx(60.0)  # left: 3 of 5, from the first query only
    assert m["text-swap-colour/chance/colour"] == pytest.approx(60.0)
    assert m["text-swap-colour/chance/all"] == pytest.approx((20.0 + 40.0) / 2)  # blue circle anywhere: g1, g4


def test_chance_hits_on_a_two_shape_gallery_uses_the_best_reading():
    pair = Scene((ShapeObject("red", "cross", "left"), ShapeObject("blue", "circle", "right")))
    # reading "blue circle on the right, count 2" agrees on 3 of 4 with the target -> position wrong
    got = chance_hits(Target("circle", "blue", 2, "left"), [pair], 1)
    assert got == {"shape": True, "colour": True, "count": True, "position": False, "all": False, "all_r1": 0.0}


def test_query_sets_are_seeded_and_consistent_with_the_ground_truth():
    config = ShapesConfig()
    metas = [generate(config, "test", i)[1] for i in range(120)]
    scenes, captions = [scene_of_meta(m) for m in metas], [m["captions"] for m in metas]
    queries = build_queries(scenes, captions, list(QUERY_KINDS), 20, seed=3)
    assert queries == build_queries(scenes, captions, list(QUERY_KINDS), 20, seed=3)
    assert queries != build_queries(scenes, captions, list(QUERY_KINDS), 20, seed=4)
    # a kind's queries do not depend on which other kinds are asked for
    assert [q for q in queries if q.kind == "text-analogy"] == build_queries(scenes, captions, ["text-analogy"], 20, 3)
    assert {q.kind for q in queries} == set(QUERY_KINDS) and len(queries) == 20 * len(QUERY_KINDS)
    for q in queries:
        assert read_caption(q.target_text)[1], q.target_text  # the target text is in the generator's grammar
        if q.kind == "image-swap-colour":
            src = scenes[q.terms[0].ref].objects[0]
            assert q.terms[1].ref.endswith(src.name) and q.target.colour != src.colour
            assert q.terms[2].ref.endswith(f"{q.target.colour} {src.shape}")
            assert (q.target.count, q.target.position) == (scenes[q.terms[0].ref].count, src.position)
        if q.kind == "image-add-object":
            src = scenes[q.terms[0].ref]
            added = read_caption(q.terms[1].ref)[0].objects[0]
            assert src.count == 1 and q.target.count == 2 and q.target.position == src.objects[0].position
            assert {added.position, src.objects[0].position} in ({"left", "right"}, {"top", "bottom"})
        if q.kind == "image-analogy":
            x, y, z = (scenes[t.ref].objects[0] for t in q.terms)
            assert x.colour == y.colour and y.shape == z.shape and x.shape != y.shape and z.colour != x.colour
            assert (q.target.shape, q.target.colour) == (x.shape, z.colour)
        if q.kind == "text-swap-colour":
            assert q.terms[0].kind == "text" and (q.target.position is None) == (
                read_caption(q.terms[0].ref)[0].objects[0].position is None
            )


def test_bad_query_parameters_fail_clearly():
    with pytest.raises(UnknownNameError, match="unknown arithmetic query kind 'image-swap'"):
        build_queries(GALLERY, [[]] * 5, ["image-swap"], 1, 0)
    with pytest.raises(ValueError, match="queries per kind must be >= 1"):
        build_queries(GALLERY, [[]] * 5, ["text-analogy"], 0, 0)
    with pytest.raises(ValueError, match="2 scenes for 5 gallery images"):
        score_retrieval([SWAP], torch.eye(5), {}, GALLERY[:2], IDS, 1)


def test_decoded_arithmetic_scores_known_decodings():
    # a fake decoder: every summed latent decodes to a blue circle on the left (image) and "a red circle" (text)
    def decode(z):
        return [Scene((ShapeObject("blue", "circle", "left"),))] * len(z), ["a red circle"] * len(z)

    captions = [["a red circle on the left", "red circle"], ["a blue circle on the left"], ["red square"],
                ["a blue square on the right"], ["blue circle"]]  # fmt: skip
    latents = torch.eye(5)
    texts = {t: torch.zeros(5) for t in ("a red circle", "a blue circle", "a blue circle on the left")}
    m = score_decoded([SWAP], latents, texts, decode, GALLERY, captions).metrics
    assert m["decoded-image/image-swap-colour/arithmetic/all"] == 100.0
    # "a red circle": shape and count right, colour wrong, position not stated -> wrong
    assert [m[f"decoded-text/image-swap-colour/source/{a}"] for a in ("shape", "colour", "count", "position")] == [
        100.0, 0.0, 100.0, 0.0,
    ]  # fmt: skip
    assert m["decoded-text/image-swap-colour/source/exact_grammar"] == 100.0
    # chance of text: 6 captions; target (circle, blue, 1, left) -> circle in 4, blue in 3, count 1 in all,
    # "left" stated by 2; all by one ("a blue circle on the left")
    assert m["decoded-text/image-swap-colour/chance/shape"] == pytest.approx(100 * 4 / 6)
    assert m["decoded-text/image-swap-colour/chance/colour"] == pytest.approx(100 * 3 / 6)
    assert m["decoded-text/image-swap-colour/chance/position"] == pytest.approx(100 * 2 / 6)
    assert m["decoded-text/image-swap-colour/chance/all"] == pytest.approx(100 * 1 / 6)
    assert m["decoded-image/image-swap-colour/chance/all"] == pytest.approx(20.0)


def test_decoded_methods_decode_their_own_latents():
    # decoder: z -> the gallery scene (and its first caption) of the largest coordinate; image latents = one-hots
    captions = [["a red circle on the left"], ["a blue circle on the left"], ["a red square on the left"],
                ["a blue square on the right"], ["a blue circle"]]  # fmt: skip

    def decode(z):
        rows = z.argmax(-1).tolist()
        return [GALLERY[r] for r in rows], [captions[r][0] for r in rows]

    e = torch.eye(5)
    texts = {"a red circle": e[0] - e[1], "a blue circle": 0.5 * e[4], "a blue circle on the left": e[1]}
    m = score_decoded([SWAP], e, texts, decode, GALLERY, captions).metrics
    # arithmetic e0 - (e0 - e1) + e4/2 -> row 1 (blue circle on the left): right
    assert m["decoded-image/image-swap-colour/arithmetic/all"] == 100.0
    assert m["decoded-text/image-swap-colour/arithmetic/all"] == 100.0
    # source e0 -> row 0: red; modifier e4/2 -> row 4: blue circle on the right (text: no position)
    assert m["decoded-image/image-swap-colour/source/colour"] == 0.0
    assert [m[f"decoded-image/image-swap-colour/modifier/{a}"] for a in ("colour", "shape", "position", "all")] == [
        100.0, 100.0, 0.0, 0.0,
    ]  # fmt: skip
    assert m["decoded-text/image-swap-colour/modifier/position"] == 0.0
    assert m["decoded-image/image-swap-colour/target-text/all"] == 100.0
    assert m["decoded-image/mean/modifier/all"] == 0.0 and m["decoded-image/mean/arithmetic/all"] == 100.0
