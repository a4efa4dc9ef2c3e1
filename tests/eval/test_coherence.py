"""Coherence of a generative model: hand-computed scores of known decodings, probes, the harness run, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mmthesis.core.results import run_dir
from mmthesis.data.transforms import eval_transform
from mmthesis.eval.adapters import LoadedModel
from mmthesis.eval.data_access import resolve_dataset
from mmthesis.eval.generative import CrossModalGenerator, NotGenerativeError
from mmthesis.eval.harness import evaluate
from mmthesis.eval.shapes_attributes import Scene, ShapeObject, Target, load_shapes_split, match
from mmthesis.eval.shapes_tasks import image_to_text, probe_metrics, text_to_image

RED_CIRCLE_LEFT = Scene((ShapeObject("red", "circle", "left"),))
BLUE_SQUARE_ABOVE_GREEN_CROSS = Scene((ShapeObject("blue", "square", "top"), ShapeObject("green", "cross", "bottom")))


def test_image_to_text_hand_computed():
    scenes = [RED_CIRCLE_LEFT, BLUE_SQUARE_ABOVE_GREEN_CROSS]
    # image 0: right shape, wrong side; image 1: the backward phrasing of its own scene (all right)
    texts = ["a red circle on the right", "a green cross below a blue square"]
    captions = [["a red circle on the left", "red circle"], ["blue square and green cross"]]
    m = image_to_text(scenes, texts, captions).metrics
    assert [m[f"i2t/{a}"] for a in ("shape", "colour", "count", "position", "all")] == [100, 100, 100, 50, 50]
    assert m["i2t/exact_grammar"] == 100.0
    # chance: a random one of the 3 captions. target 0 (circle, red, 1, left): shape 2/3, colour 2/3, count 2/3,
    # position 1/3, all 1/3. target 1 (square, blue, 2, top): the pair caption has no positions -> shape, colour,
    # count 1/3, position 0, all 0
    assert m["i2t/chance/shape"] == pytest.approx(100 * (2 / 3 + 1 / 3) / 2)
    assert m["i2t/chance/position"] == pytest.approx(100 * (1 / 3 + 0) / 2)
    assert m["i2t/chance/all"] == pytest.approx(100 * (1 / 3) / 2)


def test_text_to_image_scores_what_the_caption_states():
    scenes = [RED_CIRCLE_LEFT, RED_CIRCLE_LEFT, BLUE_SQUARE_ABOVE_GREEN_CROSS]
    captions = ["a red circle on the left", "red circle", "blue square and green cross"]
    decoded = [Scene((ShapeObject("red", "circle", "right"),)), RED_CIRCLE_LEFT, Scene(())]
    m = text_to_image(scenes, captions, decoded, [RED_CIRCLE_LEFT, BLUE_SQUARE_ABOVE_GREEN_CROSS]).metrics
    # caption 0 states the position (wrong in the image), caption 1 does not, caption 2 decoded to nothing
    assert m["t2i/position"] == 0.0 and m["t2i/shape"] == pytest.approx(200 / 3) and m["t2i/all"] == pytest.approx(
        100 / 3
    )
    # chance over the 2 gallery images: caption 0 matches image 0 (1/2), caption 1 image 0 (1/2), caption 2 image 1
    assert m["t2i/chance/all"] == pytest.approx(50.0)


def test_probes_on_separable_latents_and_majority():
    targets = [Target("circle", "red", 1, "left"), Target("square", "blue", 2, "top")] * 6
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 6)
    m = probe_metrics("image", z, targets, z[:3], targets[:3], 1e-3)
    assert m["probe/image/shape"] == 100.0 and m["probe/image/position"] == 100.0
    assert m["probe/image/majority/shape"] == pytest.approx(200 / 3)  # circle, square, circle


class FakeGenerator(nn.Module):
    """Decodes every latent to "a red circle on the left" and a black image; ELBO -2 per pair."""

    image_size = 32

    def __init__(self):
        super().__init__()
        self.tokenizer = None

    def encode_image(self, images):
        return nn.functional.normalize(images.flatten(1)[:, :8] + 1e-3, dim=-1)

    def encode_text(self, ids, mask):
        return nn.functional.normalize(ids[:, :8].float() + 1e-3, dim=-1)

    def latent_image(self, images):
        return images.flatten(1)[:, :4]

    def latent_text(self, ids, mask):
        return ids[:, :4].float()

    def decode_image(self, z):
        return torch.zeros(len(z), 3, self.image_size, self.image_size)

    def decode_text(self, z, max_len=32, greedy=True):
        return ["a red circle on the left"] * len(z)

    def elbo(self, batch):
        return torch.full((len(batch),), -2.0)


def _fake_loaded() -> LoadedModel:
    return LoadedModel("fake:gen", "fakegen0", FakeGenerator(), eval_transform(32), info={"kind": "fake",
                       "has_text": True})  # fmt: skip


@pytest.mark.smoke
def test_coherence_task_through_the_harness(in_eval_home):
    assert isinstance(FakeGenerator(), CrossModalGenerator)
    result = evaluate(["coherence-shapes", "latent-arithmetic-shapes"], _fake_loaded(), scale="smoke",
                      show_progress=False)  # fmt: skip
    m = result.metrics["coherence-shapes"]
    test = load_shapes_split(resolve_dataset("shapes", "smoke").folder, "test")
    red_left = Scene((ShapeObject("red", "circle", "left"),))
    want = 100.0 * sum(match(red_left, s.main())["all"] for s in test.scenes) / len(test.scenes)
    assert m["i2t/all"] == pytest.approx(want) and m["elbo"] == -2.0 and m["images"] == 48
    assert 0 <= m["t2i/all"] <= 100 and "image_classifier_all" in m and m["text_reader_exact"] == 100.0
    assert {"probe/image/shape", "probe/text/colour", "probe/image/majority/count"} <= set(m)
    a = result.metrics["latent-arithmetic-shapes"]
    assert a["decoded-text/mean/arithmetic/exact_grammar"] == 100.0 and "decoded-image/mean/chance/all" in a
    assert a["text-analogy/queries"] == 100 and 0 <= a["mean/arithmetic/all"] <= 100


def test_encoder_only_models_get_a_one_line_error_and_arithmetic_skips_decoding(in_eval_home):
    _, run = in_eval_home
    with pytest.raises(NotGenerativeError, match=r"needs a generative model \(CrossModalGenerator\); .* has no latent"):
        evaluate(["coherence-shapes"], str(run), scale="smoke", show_progress=False)
    result = evaluate(["latent-arithmetic-shapes"], str(run), scale="smoke", show_progress=False)
    m = result.metrics["latent-arithmetic-shapes"]
    assert not any(k.startswith("decoded-") for k in m)
    assert any("decoded arithmetic skipped: the model is not a CrossModalGenerator" in n for n in result.notes)
    record = json.loads((run_dir(result.name, result.config_hash) / "result.json").read_text())
    assert record["metrics"]["latent-arithmetic-shapes"]["mean/chance/all"] == m["mean/chance/all"]
