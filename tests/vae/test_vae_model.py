"""MultimodalVAE: posteriors per aggregation, likelihoods against torch, objectives, the eval interface."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from mmthesis.core.config import from_dict
from mmthesis.core.errors import ConfigError
from mmthesis.vae import MultimodalVAE
from mmthesis.vae.config import VAELossConfig, VAERecipeConfig
from mmthesis.vae.estimators import PrivateLatents, mixture_elbo, product_of_experts
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
    ("aggregation", "estimator", "k", "private_dim"),
    [("poe", "elbo", 1, 0), ("mopoe", "elbo", 1, 0), ("moe", "elbo", 1, 0), ("moe", "iwae", 3, 0), ("moe", "dreg", 3, 0),
     ("moe", "dreg", 3, 3), ("moe", "iwae", 2, 3)],
)
def test_objectives_train(aggregation, estimator, k, private_dim, tokenizer, tiny_config):
    """Every objective gives finite gradients to both encoders and decoders (and MMVAE+'s auxiliary priors), and
    25 Adam steps on one batch raise the test ELBO of that batch."""
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config(aggregation, private_dim=private_dim), tokenizer)
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
            if private_dim:
                for m in ("image", "text"):
                    grad = model.aux_prior_logvar[m].grad
                    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, m
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


def _plus(tokenizer, tiny_config, **kw):
    torch.manual_seed(0)
    model = MultimodalVAE(tiny_config("moe", private_dim=3, **kw), tokenizer).eval()
    with torch.no_grad():  # auxiliary priors other than N(0, I), so a draw from the wrong distribution shows
        model.aux_prior_logvar["image"].copy_(torch.tensor([1.0, -1.0, 0.5]))
        model.aux_prior_logvar["text"].copy_(torch.tensor([-0.5, 2.0, 0.0]))
    return model


def test_mmvaeplus_shapes_and_the_shared_latent_interface(tokenizer, tiny_config):
    model = _plus(tokenizer, tiny_config)
    images, ids, mask = _batch(tokenizer)
    full = model._image_posterior(images)
    assert full.mu.shape == (len(CAPTIONS), 7)  # (z, w_image): 4 + 3
    experts, private = model._posteriors(images, ids, mask)
    assert experts["image"].mu.shape == (len(CAPTIONS), 4) and private["text"].mu.shape == (len(CAPTIONS), 3)
    assert torch.equal(experts["image"].mu, full.mu[:, :4]) and torch.equal(private["image"].logvar, full.logvar[:, 4:])
    assert torch.equal(model.latent_image(images), full.mu[:, :4])  # the eval interface: the shared z only
    assert model.encode_text(ids, mask).shape == (len(CAPTIONS), 4)
    r = model.aux_prior("text", 2)
    assert torch.equal(r.mu, torch.zeros(2, 3)) and torch.allclose(r.logvar[1], 8 * torch.tanh(torch.tensor([-0.5, 2.0, 0.0]) / 8))
    with pytest.raises(ConfigError, match="model.private_dim is MMVAE\\+'s.*set model.aggregation=moe"):
        from_dict(VAERecipeConfig, {"recipe": "x", "thesis_name": "x", "model": {"aggregation": "mopoe", "private_dim": 2}})
    with pytest.raises(ConfigError, match="private_dim must be >= 0"):
        from_dict(VAERecipeConfig, {"recipe": "x", "thesis_name": "x", "model": {"aggregation": "moe", "private_dim": -1}})


def test_mmvaeplus_loss_is_the_stratified_bound_with_the_other_w_from_the_auxiliary_prior(tokenizer, tiny_config):
    """model.loss (iwae) against the bound assembled by hand from the model's parts and the same draws: component
    image decodes the caption from (z ~ q(z|image), w_text ~ r_text), component text the image from
    (z ~ q(z|text), w_image ~ r_image); likelihoods weighted by image_weight / text_weight."""
    model = _plus(tokenizer, tiny_config, image_weight=0.5, text_weight=2.0)
    images, ids, mask = _batch(tokenizer)
    k, b = 3, len(CAPTIONS)
    torch.manual_seed(4)
    with torch.no_grad():
        out = model.loss(images, ids, mask, VAELossConfig(estimator="iwae", k=k))
    torch.manual_seed(4)
    with torch.no_grad():
        experts, private = model._posteriors(images, ids, mask)
        comps, names = [experts["image"], experts["text"]], ["image", "text"]
        normal = lambda g: D.Independent(D.Normal(g.mu, g.std), 1)  # noqa: E731
        bounds = []
        for m, c in enumerate(comps):
            z = c.mu + c.std * torch.randn(k, b, 4)
            ws, ratio = [], 0.0
            for n, name in enumerate(names):
                eps = torch.randn(k, b, 3)
                if n == m:
                    w = private[name].mu + private[name].std * eps
                    ratio = ratio + D.Normal(0.0, 1.0).log_prob(w).sum(-1) - normal(private[name]).log_prob(w)
                else:
                    w = model.aux_prior(name, b).std * eps
                ws.append(w)
            lik = 0.5 * model.image_log_likelihood(torch.cat([z, ws[0]], -1), images) + 2.0 * model.text_log_likelihood(
                torch.cat([z, ws[1]], -1), ids, mask
            )
            log_q = torch.logsumexp(torch.stack([normal(q).log_prob(z) for q in comps]), 0) - math.log(2)
            lw = D.Normal(0.0, 1.0).log_prob(z).sum(-1) + lik - log_q + ratio
            bounds.append(torch.logsumexp(lw, 0) - math.log(k))
    expected = torch.stack(bounds).mean(0).mean()
    assert out["bound"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(-expected.item(), rel=1e-5)


def test_mmvaeplus_evaluate_decodes_cross_modally_with_the_auxiliary_prior(tokenizer, tiny_config):
    model = _plus(tokenizer, tiny_config)
    images, ids, mask = _batch(tokenizer)
    b = len(CAPTIONS)
    torch.manual_seed(2)
    scores = model.evaluate(images, ids, mask)
    torch.manual_seed(2)  # evaluate's draws: z_image, z_text, w_image, w_text ~ posteriors, then r_image, r_text
    with torch.no_grad():
        experts, private = model._posteriors(images, ids, mask)
        z_i, z_t = experts["image"].rsample(1), experts["text"].rsample(1)
        w_i, w_t = private["image"].rsample(1), private["text"].rsample(1)
        r_i, r_t = model.aux_prior("image", b).rsample(1), model.aux_prior("text", b).rsample(1)
        ll = lambda z, ws: (model.image_log_likelihood(torch.cat([z, ws[0]], -1), images)  # noqa: E731
                            + model.text_log_likelihood(torch.cat([z, ws[1]], -1), ids, mask))
        elbo = mixture_elbo([experts["image"], experts["text"]], ll, PrivateLatents([private["image"], private["text"]]))
        expected = {
            "image_to_text": model.text_log_likelihood(torch.cat([z_i, r_t], -1), ids, mask)[0],
            "text_to_image": model.image_log_likelihood(torch.cat([z_t, r_i], -1), images)[0],
            "self_image": model.image_log_likelihood(torch.cat([z_i, w_i], -1), images)[0],
            "self_text": model.text_log_likelihood(torch.cat([z_t, w_t], -1), ids, mask)[0],
            "elbo": elbo,
        }
    assert set(scores) == set(expected)
    for key, value in expected.items():
        assert scores[key].shape == (b,) and torch.allclose(scores[key], value, atol=1e-4), key


def test_mmvaeplus_decoding_uses_the_private_mean_or_a_draw(tokenizer, tiny_config):
    model = _plus(tokenizer, tiny_config)
    z = torch.randn(2, 4)
    with torch.no_grad():
        at_mean = torch.cat([z, torch.zeros(2, 3)], -1)
        assert torch.equal(model.decode_image(z), model.image_decoder(at_mean))
        ids = model.text_decoder.generate(at_mean, tokenizer.cls_id, tokenizer.sep_id, 5, True, None)
        assert model.decode_text(z, max_len=5) == [tokenizer.decode(r) for r in ids]
        full = torch.randn(2, 7)  # (z, w) given: decoded as is
        assert torch.equal(model.decode_image(full), model.image_decoder(full))
        drawn = model.decode_image(z, private="sample", generator=torch.Generator().manual_seed(1))
        eps = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
        by_hand = model.image_decoder(torch.cat([z, eps * model.aux_prior("image", 2).std], -1))
        assert torch.allclose(drawn, by_hand) and not torch.allclose(drawn, model.decode_image(z))
    with pytest.raises(ValueError, match="latents must have 4 \\(or 7\\) dimensions, got 5"):
        model.decode_image(torch.randn(2, 5))
