"""MultimodalVAE: posteriors per aggregation, likelihoods against torch, objectives, the eval interface."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from mmthesis.core.config import from_dict
from mmthesis.core.errors import ConfigError
from mmthesis.vae import MultimodalVAE
from mmthesis.vae.config import VAELossConfig, VAERecipeConfig
from mmthesis.vae.estimators import product_of_experts
from mmthesis.vae.model import from_unit_range, to_unit_range

CAPTIONS = ["a red circle on the left", "a blue square at the top", "a green triangle", "a yellow cross on the right"]


def _batch(tokenizer, size: int = 8):
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(len(CAPTIONS), 3, size, size, generator=g)
    ids, mask = tokenizer.encode_batch(CAPTIONS, 16)
    return from_unit_range(pixels), ids, mask


@pytest.mark.parametrize("aggregation", ["poe", "moe", "mopoe"])
def test_posterior_components_follow_the_aggregation(aggregation, tokenizer, tiny_config):
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config(aggregation), tokenizer).eval()
    images, ids, mask = _batch(tokenizer)
    qi, qt = model.image_expert(images), model.text_expert(ids, mask)
    comps = model.components({"image": qi, "text": qt})
    if aggregation == "poe":
        expected = [product_of_experts([qi, qt])]
    elif aggregation == "moe":
        expected = [qi, qt]
    else:
        expected = [product_of_experts([qi]), product_of_experts([qt]), product_of_experts([qi, qt])]
    assert len(comps) == len(expected)
    for c, e in zip(comps, expected, strict=True):
        assert torch.allclose(c.mu, e.mu) and torch.allclose(c.logvar, e.logvar)
    # one modality: its expert alone (moe) or times the prior expert (poe, mopoe)
    alone = qi.mu if aggregation == "moe" else qi.mu / (1 + torch.exp(qi.logvar))
    assert torch.allclose(model.latent_image(images), alone, atol=1e-5)
    emb = model.encode_image(images)
    assert emb.shape == (len(CAPTIONS), 4)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(CAPTIONS)), atol=1e-5)
    assert torch.allclose(model.encode_text(ids, mask), F.normalize(model.latent_text(ids, mask), dim=-1))


def test_likelihoods_match_torch(tokenizer, tiny_config):
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config("poe"), tokenizer).eval()
    images, ids, mask = _batch(tokenizer)
    z = torch.randn(2, len(CAPTIONS), 4)
    with torch.no_grad():
        mean = model.image_decoder(z.reshape(-1, 4)).view(2, len(CAPTIONS), 3, 8, 8)
        laplace = D.Laplace(mean, 0.1).log_prob(to_unit_range(images).unsqueeze(0)).flatten(2).sum(-1)
        assert torch.allclose(model.image_log_likelihood(z, images), laplace, atol=1e-3)
        # text: log-softmax of the next token after each non-pad position, [CLS] only as input
        logits = model.text_decoder.logits(z[0], ids[:, :-1])
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        manual = (logp * (~mask[:, 1:])).sum(-1)
        assert torch.allclose(model.text_log_likelihood(z, ids, mask)[0], manual, atol=1e-4)
    gaussian = MultimodalVAE(tiny_config("poe", image_likelihood="gaussian", image_scale=0.2), tokenizer).eval()
    gaussian.image_decoder.load_state_dict(model.image_decoder.state_dict())
    with torch.no_grad():
        expected = D.Normal(mean, 0.2).log_prob(to_unit_range(images).unsqueeze(0)).flatten(2).sum(-1)
        assert torch.allclose(gaussian.image_log_likelihood(z, images), expected, atol=1e-3)


@pytest.mark.parametrize(
    ("aggregation", "estimator", "k"), [("poe", "elbo", 1), ("mopoe", "elbo", 1), ("moe", "elbo", 1), ("moe", "iwae", 3), ("moe", "dreg", 3)]
)
def test_objectives_train(aggregation, estimator, k, tokenizer, tiny_config):
    """Every objective gives finite gradients to both encoders and decoders, and 25 Adam steps on one batch
    raise the test ELBO of that batch."""
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config(aggregation), tokenizer)
    images, ids, mask = _batch(tokenizer)
    loss_config = VAELossConfig(estimator=estimator, k=k)  # type: ignore[arg-type]
    torch.manual_seed(1)
    before = model.evaluate(images, ids, mask)["elbo"].mean()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(25):
        out = model.loss(images, ids, mask, loss_config)
        opt.zero_grad()
        out["loss"].backward()
        if step == 0:
            for part in ("image_encoder", "text_encoder", "image_decoder", "text_decoder"):
                grads = [p.grad for p in getattr(model, part).parameters() if p.grad is not None]
                assert grads and all(torch.isfinite(g).all() for g in grads), part
                assert any(g.abs().sum() > 0 for g in grads), part
        opt.step()
    torch.manual_seed(1)
    after = model.evaluate(images, ids, mask)["elbo"].mean()
    assert after > before + 10


def test_evaluate_elbo_of_poe_is_reconstruction_minus_kl(tokenizer, tiny_config):
    """For one Gaussian component the MC ELBO averages to E[log p(x|z)] - KL(q || p) (analytic KL)."""
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config("poe"), tokenizer).eval()
    images, ids, mask = _batch(tokenizer)
    q = model.components({"image": model.image_expert(images), "text": model.text_expert(ids, mask)})[0]
    n = 500  # the batch repeated: n independent single-sample ELBOs per pair in one call
    with torch.no_grad():
        z = q.rsample(n)
        rec = (model.image_log_likelihood(z, images) + model.text_log_likelihood(z, ids, mask)).mean(0)
        prior = D.Independent(D.Normal(torch.zeros_like(q.mu), torch.ones_like(q.mu)), 1)
        kl = D.kl_divergence(D.Independent(D.Normal(q.mu, q.std), 1), prior)
        mc = model.evaluate(images.repeat(n, 1, 1, 1), ids.repeat(n, 1), mask.repeat(n, 1))["elbo"]
        mc = mc.view(n, len(CAPTIONS)).mean(0)
    assert torch.allclose(mc, rec - kl, rtol=0.01)


def test_decoding(tokenizer, tiny_config):
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config("moe"), tokenizer).eval()
    z = torch.randn(3, 4)
    pixels = model.decode_image(z)
    assert pixels.shape == (3, 3, 8, 8) and pixels.min() >= 0 and pixels.max() <= 1
    greedy = model.decode_text(z, max_len=5)
    assert len(greedy) == 3 and all(isinstance(t, str) for t in greedy)
    assert greedy == model.decode_text(z, max_len=5)
    a = model.decode_text(z, max_len=5, greedy=False, generator=torch.Generator().manual_seed(4))
    b = model.decode_text(z, max_len=5, greedy=False, generator=torch.Generator().manual_seed(4))
    assert a == b
    ids = model.text_decoder.generate(z, tokenizer.cls_id, tokenizer.sep_id, 5, True, None)
    assert all(len(row) <= 5 and tokenizer.sep_id not in row for row in ids)


def test_greedy_decoding_follows_the_argmax_of_the_teacher_forced_logits(tokenizer, tiny_config):
    torch.manual_seed(2)
    model = MultimodalVAE(tiny_config("poe"), tokenizer).eval()
    z = torch.randn(2, 4)
    rows = model.text_decoder.generate(z, tokenizer.cls_id, -1, 4, True, None)  # no end token: 4 tokens each
    inputs = torch.tensor([[tokenizer.cls_id, *r[:-1]] for r in rows])
    with torch.no_grad():
        argmax = model.text_decoder.logits(z, inputs).argmax(-1)
    assert argmax.tolist() == rows


def test_config_errors_name_the_fix():
    base = {"recipe": "x", "thesis_name": "x"}
    with pytest.raises(ConfigError, match="loss.estimator=dreg is MMVAE's.*set loss.estimator=elbo"):
        from_dict(VAERecipeConfig, {**base, "model": {"aggregation": "poe"}, "loss": {"estimator": "dreg"}})
    with pytest.raises(ConfigError, match="model.pretrained"):
        from_dict(VAERecipeConfig, {**base, "model": {"encoder": "pretrained"}})
    with pytest.raises(ConfigError, match="power of two"):
        from_dict(VAERecipeConfig, {**base, "model": {"img_size": 48}})


def test_word_dropout_replaces_teacher_forced_inputs_with_unk_in_training_only(tokenizer, tiny_config):
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config("mopoe", word_dropout=0.6), tokenizer)
    _, ids, mask = _batch(tokenizer)
    z = torch.randn(1, len(CAPTIONS), 4)
    with torch.no_grad():
        model.eval()  # test time: the inputs are the caption itself
        assert torch.allclose(model.text_log_likelihood(z, ids, mask)[0], _manual_text_ll(model, z[0], ids, mask))
        model.train()
        torch.manual_seed(1)
        trained = model.text_log_likelihood(z, ids, mask)[0]
        torch.manual_seed(1)  # the same draw by hand: [UNK] where rand < p, never the [CLS] input
        drop = torch.rand(ids[:, :-1].shape) < 0.6
        drop[:, 0] = False
        inputs = ids.clone()
        inputs[:, :-1] = ids[:, :-1].masked_fill(drop, tokenizer.unk_id)
        assert drop.any() and torch.allclose(trained, _manual_text_ll(model, z[0], ids, mask, inputs))
    with pytest.raises(ConfigError, match="word_dropout must be in"):
        from_dict(VAERecipeConfig, {"recipe": "x", "thesis_name": "x", "model": {"word_dropout": 1.0}})


def _manual_text_ll(model, z, ids, mask, inputs=None):
    """log p(caption | z) from the teacher-forced logits on ``inputs`` (default the caption), targets the caption."""
    inputs = ids if inputs is None else inputs
    logp = torch.log_softmax(model.text_decoder.logits(z, inputs[:, :-1]), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (logp * (~mask[:, 1:])).sum(-1)
