"""``pair:IMAGE_SPEC+TEXT_SPEC``: two unimodal models as one (Table 10's unaligned Data2Vec2 baseline)."""

from __future__ import annotations

import pytest
import torch

from mmthesis.core.errors import ConfigError
from mmthesis.data.gpt2_bpe import FairseqTokenizer
from mmthesis.data.image_text import load_retrieval_split
from mmthesis.eval.adapters import ModalityMissingError, load_model, split_pair
from mmthesis.eval.harness import evaluate
from mmthesis.eval.retrieval import retrieval_recall

IMAGE, TEXT = "teacher:data2vec2_image", "teacher:data2vec2_text"
PAIR = f"pair:{IMAGE}+{TEXT}"


@pytest.fixture(scope="module")
def loaded():
    return load_model(PAIR, "smoke"), load_model(IMAGE, "smoke"), load_model(TEXT, "smoke")


def test_each_side_embeds_exactly_as_its_own_model(loaded) -> None:
    pair, image, text = loaded
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pair.model.encode_image(images), image.model.encode_image(images), rtol=0, atol=0)
    assert isinstance(pair.tokenizer, FairseqTokenizer) and pair.max_text_length == text.max_text_length
    ids, mask = pair.tokenizer.encode_batch(["a red circle", "two blue squares left of a cross"], 64)
    assert ids[0, 0] == 0 and ids[0, 4] == 2 and ids[0, -1] == 1  # <s> ... </s> <pad>: the fairseq format
    got = pair.model.encode_text(ids, mask)
    torch.testing.assert_close(got, text.model.encode_text(ids, mask), rtol=0, atol=0)
    assert not torch.allclose(got[0], got[1])  # the captions really reach the text model
    assert pair.image_backbone is pair.model.image_model.teacher and pair.text_backbone is None
    want = image.image_backbone.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in pair.image_backbone.state_dict().items())
    assert repr(pair.image_transform) == repr(image.image_transform)
    assert pair.info["image"]["teacher"] == "data2vec2_image" and pair.info["text"]["teacher"] == "data2vec2_text"


def test_fingerprint_changes_with_either_side(loaded) -> None:
    pair = loaded[0]
    assert load_model(PAIR, "smoke").fingerprint == pair.fingerprint  # same weights, same fingerprint
    other_image = load_model(f"pair:teacher:dino_vitb16+{TEXT}", "smoke")
    other_text = load_model(f"pair:{IMAGE}+teacher:bert_base_uncased", "smoke")
    assert len({pair.fingerprint, other_image.fingerprint, other_text.fingerprint}) == 3


def test_two_text_models_fail_in_one_line() -> None:
    with pytest.raises(ModalityMissingError) as err:
        load_model(f"pair:{TEXT}+teacher:bert_base_uncased", "smoke")
    assert "image side 'teacher:data2vec2_text'" in str(err.value) and "has no image encoder" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ModalityMissingError, match="text side 'teacher:dino_vitb16'.*has no text encoder"):
        load_model(f"pair:{IMAGE}+teacher:dino_vitb16", "smoke")


def test_split_keeps_plus_and_colons_inside_checkpoint_paths() -> None:
    spec = "pair:teacher:data2vec2_image:/ck+pts/a:b.pt+teacher:data2vec2_text:/x+y/nlp.pt"
    assert split_pair(spec) == ("teacher:data2vec2_image:/ck+pts/a:b.pt", "teacher:data2vec2_text:/x+y/nlp.pt")
    assert split_pair("pair:/runs/a+b+run:text-run") == ("/runs/a+b", "run:text-run")
    for bad in ("pair:teacher:data2vec2_image", "pair:+teacher:data2vec2_text", f"pair:{IMAGE}+pair:{IMAGE}+{TEXT}"):
        with pytest.raises(ConfigError):
            split_pair(bad)


@pytest.mark.smoke
def test_pair_retrieval_through_the_harness(in_eval_home, loaded) -> None:
    pair, image, text = loaded
    result = evaluate(["retrieval-shapes"], PAIR, scale="smoke", show_progress=False)
    assert result.status == "finished" and result.config["model_fingerprint"] == pair.fingerprint
    # equals retrieval on embeddings of each model alone, the captions tokenised as the text model needs
    data = load_retrieval_split("shapes", "test", image.image_transform, text.tokenizer, text.max_text_length)
    want = retrieval_recall(
        image.model.encode_image(data.images),
        text.model.encode_text(data.text_ids, data.text_padding_mask),
        data.caption_image_index,
    )
    got = result.metrics["retrieval-shapes"]
    assert all(got[k] == pytest.approx(v, abs=1e-9) for k, v in want.items())
