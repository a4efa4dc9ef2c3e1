import json

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score

from mmthesis.core.errors import ConfigError
from mmthesis.data.tokenizers import train_wordpiece
from mmthesis.eval.zeroshot import (
    SMOKE_TEMPLATES,
    imagenet_classnames,
    imagenet_templates,
    load_classnames_file,
    load_templates_file,
    mean_per_class_recall,
    prototypes_from_prompt_embeddings,
    templates_for,
    text_encoder,
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_metrics,
    zero_shot_ranks,
)


class BagOfTokens(torch.nn.Module):
    """A fake ImageTextModel: text embedding = normalised sum of fixed random token vectors."""

    def __init__(self, vocab: int, dim: int = 8):
        super().__init__()
        self.table = torch.randn(vocab, dim, generator=torch.Generator().manual_seed(0))

    def encode_text(self, ids, mask):
        return F.normalize((self.table[ids] * (~mask)[..., None]).sum(1), dim=-1)

    def encode_image(self, images):
        return F.normalize(images.flatten(1), dim=-1)


def test_hand_made_three_classes():
    protos = torch.eye(3)
    # images 0, 2 right; image 1 (class 2) scores 0 > 2 > 1 -> rank 2; image 3 (class 0) scores 1 > 2 > 0 -> rank 3
    images = F.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.8, 0.1, 0.5], [0.0, 0.2, 1.0], [0.1, 1.0, 0.5]]), dim=-1)
    labels = torch.tensor([0, 2, 2, 0])
    acc = zero_shot_accuracy(images, protos, labels, ks=(1, 2, 3))
    assert acc == {"top1": 50.0, "top2": 75.0, "top3": 100.0}
    # a tie is broken towards the lower class index
    assert zero_shot_accuracy(torch.tensor([[1.0, 1.0, 0.0]]), protos, torch.tensor([1]), ks=(1, 2)) == {
        "top1": 0.0,
        "top2": 100.0,
    }
    with pytest.raises(ValueError, match="every k"):
        zero_shot_accuracy(images, protos, labels, ks=(1, 5))
    with pytest.raises(ValueError, match="labels must lie"):
        zero_shot_accuracy(images, protos, torch.tensor([0, 1, 2, 3]), ks=(1,))


def test_prototypes_are_renormalised_mean_of_normalised_prompts():
    tok = train_wordpiece(["a photo of a red circle", "an emoji of blue square", "green cross"], 60)
    model = BagOfTokens(tok.vocab_size)
    classes, templates = ["red circle", "blue square", "green cross"], list(SMOKE_TEMPLATES)
    protos = zero_shot_classifier(text_encoder(model, tok, max_length=16, batch_size=2), classes, templates)
    assert protos.shape == (3, 8)
    for c, name in enumerate(classes):
        ids, mask = tok.encode_batch([t.replace("{c}", name) for t in templates], 16)
        emb = model.encode_text(ids, mask)
        want = emb.mean(0) / emb.mean(0).norm()
        assert torch.allclose(protos[c], want, atol=1e-6)
    # unnormalised prompt embeddings are normalised first: scaling one prompt changes nothing
    raw = torch.randn(2, 3, 4)
    scaled = raw.clone()
    scaled[0, 1] *= 7.0
    assert torch.allclose(prototypes_from_prompt_embeddings(raw), prototypes_from_prompt_embeddings(scaled))
    assert torch.allclose(prototypes_from_prompt_embeddings(raw).norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="class-name slot"):
        zero_shot_classifier(text_encoder(model, tok), classes, ["a photo"])


def test_logit_scale_does_not_change_accuracy_and_images_find_their_prompts():
    # images equal to their class prototype are classified perfectly
    g = torch.Generator().manual_seed(3)
    protos = F.normalize(torch.randn(10, 16, generator=g), dim=-1)
    labels = torch.randint(0, 10, (50,), generator=g)
    images = F.normalize(protos[labels] + 0.05 * torch.randn(50, 16, generator=g), dim=-1)
    assert zero_shot_accuracy(images, protos, labels)["top1"] == 100.0
    assert zero_shot_accuracy(images, protos, labels, logit_scale=1.0) == zero_shot_accuracy(images, protos, labels)


def test_bundled_imagenet_assets():
    names, templates = imagenet_classnames(), imagenet_templates()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    assert len(templates) == 80 and all("{c}" in t for t in templates)
    assert templates_for("imagenet1k") == templates and templates_for("shapes") == list(SMOKE_TEMPLATES)


def test_per_class_prompts_average_each_class_own_prompts():
    tok = train_wordpiece(["a red circle shape", "a blue square", "the green cross sign"], 60)
    model = BagOfTokens(tok.vocab_size)
    embed = text_encoder(model, tok, max_length=16)
    prompts = {"red circle": ["a red circle", "red circle shape"], "blue square": ["a blue square"]}
    protos = zero_shot_classifier(embed, ["red circle", "blue square"], prompts)
    for c, name in enumerate(["red circle", "blue square"]):
        emb = embed(prompts[name])
        assert torch.allclose(protos[c], F.normalize(emb.mean(0), dim=0), atol=1e-6)
    with pytest.raises(ValueError, match="lack 1 class"):
        zero_shot_classifier(embed, ["red circle", "green cross"], prompts)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_mean_per_class_recall_matches_sklearn_balanced_accuracy():
    g = torch.Generator().manual_seed(5)
    labels = torch.tensor([0, 0, 0, 0, 1, 3, 3, 4, 4, 4])  # class 2 absent: it does not count
    preds = torch.randint(0, 5, (10,), generator=g)
    want = 100 * balanced_accuracy_score(labels.numpy(), preds.numpy())
    assert mean_per_class_recall(preds, labels) == pytest.approx(want)
    # hand case: class 0 has 3 of 4 right, class 1 1 of 1: mean recall 87.5 while top-1 is 80
    labels, preds = torch.tensor([0, 0, 0, 0, 1]), torch.tensor([0, 0, 0, 1, 1])
    protos = torch.eye(2)
    images = protos[preds]
    rank, top1 = zero_shot_ranks(images, protos, labels)
    assert top1.tolist() == preds.tolist()
    assert zero_shot_metrics(rank, top1, labels, [1]) == {"top1": 80.0, "mean_per_class_recall": 87.5}


def test_clip_benchmark_style_files(tmp_path):
    names = tmp_path / "classnames.json"
    names.write_text(json.dumps({"imagenet1k": ["tench", "goldfish"], "shapes": ["red circle", "blue square"]}))
    assert load_classnames_file(names, "shapes") == ["red circle", "blue square"]
    assert load_classnames_file(names, "imagenet") == ["tench", "goldfish"]  # CLIP_benchmark's dataset name
    with pytest.raises(ConfigError, match="no entry for dataset 'emoji'"):
        load_classnames_file(names, "emoji")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(["a photo of a {c}.", "{c}"]))
    assert load_templates_file(bare, "anything") == ["a photo of a {c}.", "{c}"]
    cupl = tmp_path / "cupl.json"
    cupl.write_text(json.dumps({"shapes": {"red circle": ["a round red thing"], "blue square": ["a blue box"]}}))
    assert load_templates_file(cupl, "shapes")["blue square"] == ["a blue box"]
    ours = tmp_path / "ours.json"  # the bundled asset's own format
    ours.write_text(json.dumps({"classnames": ["x", "y"], "templates": ["a {c}"]}))
    assert load_classnames_file(ours, "shapes") == ["x", "y"] and load_templates_file(ours, "shapes") == ["a {c}"]
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_templates_file(broken, "shapes")
    with pytest.raises(ConfigError, match="does not exist"):
        load_classnames_file(tmp_path / "missing.json", "shapes")
