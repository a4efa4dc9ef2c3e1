"""Shapes ground truth, the caption reader on the generator's own captions, and the image attribute classifier."""

from __future__ import annotations

import pytest
import torch

from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import mmthesis_home
from mmthesis.data.datasets.shapes import ShapesConfig, generate
from mmthesis.eval.data_access import resolve_dataset
from mmthesis.eval.shapes_attributes import (
    AttributeClassifier,
    ClassifierConfig,
    Scene,
    ShapeObject,
    Target,
    caption_target,
    classifier_accuracy,
    load_or_train_classifier,
    load_shapes_split,
    match,
    prepare_images,
    read_caption,
    scene_of_meta,
    text_reader_accuracy,
    train_classifier,
)


def test_scene_of_metadata_and_its_captions_round_trip():
    config = ShapesConfig()
    for i in range(200):
        meta = generate(config, "train", i)[1]
        scene = scene_of_meta(meta)
        assert scene.objects[0].name == meta["label_name"] and scene.count == len(meta["objects"])
        assert scene.captions() == meta["captions"]  # the scene holds everything the generator wrote from


def test_scene_of_a_pair_places_both_shapes():
    meta = {"objects": ["red cross", "purple triangle"], "relation": "above"}
    assert scene_of_meta(meta) == Scene((ShapeObject("red", "cross", "top"), ShapeObject("purple", "triangle", "bottom")))
    with pytest.raises(DataMissingError, match="shapes sample 'x' has no scene metadata"):
        scene_of_meta({"id": "x", "objects": ["red cross"]})


def test_reader_parses_every_generator_caption_exactly():
    config = ShapesConfig()
    for i in range(300):
        meta = generate(config, "val", i)[1]
        scene = scene_of_meta(meta)
        for caption in meta["captions"]:
            read, exact = read_caption(caption)
            assert exact, caption
            target = caption_target(scene, caption)
            assert match(read, target)["all"], (caption, read, target)
            assert (target.position is None) == (caption in (meta["label_name"],) or " and " in caption)


def test_reader_hand_cases():
    # the backward phrasing names the second shape first; positions still place both
    assert read_caption("a purple triangle to the right of a red cross") == (
        Scene((ShapeObject("purple", "triangle", "right"), ShapeObject("red", "cross", "left"))),
        True,
    )
    # decoders' spacing and punctuation do not matter
    assert read_caption("Two shapes : a red cross and a purple triangle .")[0].count == 2
    assert read_caption("an orange circle") == (Scene((ShapeObject("orange", "circle"),)), True)
    # not a caption of the grammar: the named shapes, no positions, flagged inexact
    assert read_caption("a red circle circle blue square the") == (
        Scene((ShapeObject("red", "circle"), ShapeObject("blue", "square"))),
        False,
    )
    assert read_caption("nothing here") == (Scene(()), False)


def test_match_takes_the_best_reading_and_scores_only_stated_attributes():
    pair = Scene((ShapeObject("red", "cross", "left"), ShapeObject("blue", "circle", "right")))
    assert match(pair, Target("circle", "blue", 2, "right")) == dict.fromkeys(
        ("shape", "colour", "count", "position", "all"), True
    )
    # both readings agree on one attribute: the tie goes to the first shape (the red cross)
    assert match(pair, Target(shape="circle", colour="red")) == {"shape": False, "colour": True, "all": False}
    assert match(Scene(()), Target(shape="circle")) == {"shape": False, "all": False}


def test_prepare_images_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\) in \[0, 1\], got shape \(3, 8, 8\)"):
        prepare_images(torch.zeros(3, 8, 8), 32)


TINY = ClassifierConfig(width=4, epochs=1)


def test_classifier_training_is_deterministic_and_cached(in_eval_home):
    data = resolve_dataset("shapes", "smoke")
    train = load_shapes_split(data.folder, "train")
    a, b = train_classifier(train, TINY), train_classifier(train, TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    first = load_or_train_classifier(data.folder, data.fingerprint, TINY)
    assert len(list((mmthesis_home() / "cache" / "attributes").glob("*.safetensors"))) >= 1
    again = load_or_train_classifier(data.folder, data.fingerprint, TINY)
    assert again.metrics == first.metrics and first.metrics["image_classifier_test_images"] == 48
    test = load_shapes_split(data.folder, "test")
    assert classifier_accuracy(AttributeClassifier(again.net, {}), test) == first.metrics


def test_text_reader_accuracy_on_a_prepared_split(in_eval_home):
    test = load_shapes_split(resolve_dataset("shapes", "smoke").folder, "test")
    got = text_reader_accuracy(test)
    assert got["text_reader_exact"] == 100.0 and got["text_reader_captions"] == sum(map(len, test.captions))
    assert all(got[f"text_reader_{a}"] == 100.0 for a in ("shape", "colour", "count", "position"))
