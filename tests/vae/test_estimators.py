"""The Gaussian algebra and ELBO estimators against torch.distributions and hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from mmthesis.vae.estimators import (
    Gaussian,
    iwae_bound,
    kl_standard_normal,
    mixture_elbo,
    mixture_log_prob,
    product_of_experts,
    standard_normal_log_prob,
    stratified_dreg,
    stratified_iwae,
)


def _normal(g: Gaussian) -> D.Independent:
    return D.Independent(D.Normal(g.mu, g.std), 1)


def test_log_prob_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    q = Gaussian(torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g))
    z = torch.randn(5, 3, 4, generator=g)
    assert torch.allclose(q.log_prob(z), _normal(q).log_prob(z), atol=1e-5)
    prior = D.Independent(D.Normal(torch.zeros(3, 4), torch.ones(3, 4)), 1)
    assert torch.allclose(kl_standard_normal(q), D.kl_divergence(_normal(q), prior), atol=1e-5)
    assert torch.allclose(standard_normal_log_prob(z), prior.log_prob(z), atol=1e-5)


def test_product_of_experts_is_the_precision_weighted_product():
    # experts N(1, 1) and N(3, 1/4): precisions 1 and 4
    a = Gaussian(torch.tensor([[1.0]]), torch.tensor([[0.0]]))
    b = Gaussian(torch.tensor([[3.0]]), torch.tensor([[math.log(0.25)]]))
    with_prior = product_of_experts([a, b], prior_expert=True)  # precision 1 + 4 + 1 = 6, mean (1 + 12 + 0) / 6
    assert with_prior.mu.item() == pytest.approx(13 / 6, rel=1e-6)
    assert torch.exp(with_prior.logvar).item() == pytest.approx(1 / 6, rel=1e-6)
    no_prior = product_of_experts([a, b], prior_expert=False)  # precision 5, mean 13 / 5
    assert no_prior.mu.item() == pytest.approx(13 / 5, rel=1e-6)
    assert torch.exp(no_prior.logvar).item() == pytest.approx(1 / 5, rel=1e-6)
    # a product of Gaussian densities is proportional to the PoE density: the log-ratio is constant in z
    z = torch.linspace(-2, 4, 7).view(7, 1, 1)
    ratio = a.log_prob(z) + b.log_prob(z) - no_prior.log_prob(z)
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)


def test_iwae_bound_is_the_log_mean_of_the_weights():
    lw = torch.tensor([[-1.0, 2.0], [0.5, 2.0], [3.0, 2.0]])  # K=3, B=2
    expected = [math.log((math.exp(-1) + math.exp(0.5) + math.exp(3)) / 3), 2.0]
    assert torch.allclose(iwae_bound(lw), torch.tensor(expected), atol=1e-6)


def test_mixture_log_prob_matches_mixture_same_family():
    g = torch.Generator().manual_seed(1)
    comps = [Gaussian(torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)) for _ in range(3)]
    z = torch.randn(4, 2, 3, generator=g)
    mix = D.MixtureSameFamily(
        D.Categorical(torch.ones(2, 3)),
        D.Independent(D.Normal(torch.stack([c.mu for c in comps], 1), torch.stack([c.std for c in comps], 1)), 1),
    )
    assert torch.allclose(mixture_log_prob(z, comps), mix.log_prob(z), atol=1e-5)


def _toy(seed: int = 0):
    """Two 2-d experts for a batch of 3 and a Gaussian likelihood log N(x; z, 1) of fixed data x."""
    g = torch.Generator().manual_seed(seed)
    comps = [
        Gaussian(torch.randn(3, 2, generator=g).requires_grad_(), (0.3 * torch.randn(3, 2, generator=g)).requires_grad_())
        for _ in range(2)
    ]
    x = torch.randn(3, 2, generator=g)
    return comps, x, (lambda z: -0.5 * (math.log(2 * math.pi) + (x - z) ** 2).sum(-1))


def test_stratified_iwae_matches_a_manual_computation():
    comps, x, ll = _toy()
    k = 5
    torch.manual_seed(7)
    got = stratified_iwae(comps, ll, k)
    torch.manual_seed(7)  # the same draws: component by component, (K, B, Z) standard normals each
    bounds = []
    for c in comps:
        z = c.mu + c.std * torch.randn(k, 3, 2)
        log_q = torch.logsumexp(torch.stack([_normal(d).log_prob(z) for d in comps]), 0) - math.log(2)
        lw = D.Normal(0.0, 1.0).log_prob(z).sum(-1) + D.Normal(z, 1.0).log_prob(x).sum(-1) - log_q
        bounds.append(torch.logsumexp(lw, 0) - math.log(k))
    assert torch.allclose(got, torch.stack(bounds).mean(0), atol=1e-5)


def test_iwae_tightens_with_k_and_elbo_is_k1():
    comps, _, ll = _toy(3)
    torch.manual_seed(0)
    elbo = torch.stack([mixture_elbo(comps, ll) for _ in range(400)]).mean(0)
    iwae = torch.stack([stratified_iwae(comps, ll, 16) for _ in range(100)]).mean(0)
    assert bool((iwae > elbo).all())


def test_dreg_gradient_is_squared_weights_times_the_pathwise_derivative():
    """One 1-d expert: the DReG encoder gradient is sum_k w~_k^2 d lw_k / d z_k (dz/dmu = 1), lw with q's
    parameters held fixed; the bound returned is the IWAE value of the same samples."""
    mu = torch.tensor([[0.3]], requires_grad=True)
    logvar = torch.tensor([[math.log(0.49)]], requires_grad=True)
    x = 1.2
    ll = lambda z: -0.5 * (math.log(2 * math.pi) + (x - z) ** 2).sum(-1)  # noqa: E731
    k = 6
    torch.manual_seed(3)
    surrogate, bound = stratified_dreg([Gaussian(mu, logvar)], ll, k)
    surrogate.sum().backward()
    torch.manual_seed(3)
    eps = torch.randn(k, 1, 1)
    with torch.no_grad():
        sigma2 = 0.49
        z = 0.3 + math.sqrt(sigma2) * eps
        lw = (-0.5 * z**2 - 0.5 * (x - z) ** 2 + 0.5 * (z - 0.3) ** 2 / sigma2 + 0.5 * math.log(sigma2)).view(k)
        lw = lw - 0.5 * math.log(2 * math.pi)  # log p(z) + log p(x|z) - log q(z): three 1/2 log 2 pi terms
        w = torch.softmax(lw, 0)
        dlw_dz = (-z + (x - z) + (z - 0.3) / sigma2).view(k)
        expected = (w**2 * dlw_dz).sum()
    assert mu.grad.item() == pytest.approx(expected.item(), rel=1e-4)
    assert bound.item() == pytest.approx((torch.logsumexp(lw, 0) - math.log(k)).item(), rel=1e-5)
