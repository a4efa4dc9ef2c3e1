"""The Gaussian algebra and ELBO estimators against torch.distributions and hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from mmthesis.vae.estimators import (
    Gaussian,
    PrivateLatents,
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


def _private_toy(seed: int = 0, batch: int = 3, zd: int = 2, wd: int = 2):
    """Two shared experts, two private posteriors q(w_n | x_n), two auxiliary priors r_n = N(0, exp(rho_n)) and a
    Gaussian likelihood sum_n log N(x_n; z + w_n, 1): modality n's decoder reads (z, w_n)."""
    g = torch.Generator().manual_seed(seed)

    def gaussian(d: int) -> Gaussian:
        return Gaussian(torch.randn(batch, d, generator=g).requires_grad_(), (0.3 * torch.randn(batch, d, generator=g)).requires_grad_())

    comps, posts = [gaussian(zd) for _ in range(2)], [gaussian(wd) for _ in range(2)]
    rhos = [(0.5 * torch.randn(wd, generator=g)).requires_grad_() for _ in range(2)]
    aux = [Gaussian(torch.zeros(batch, wd), r.expand(batch, wd)) for r in rhos]
    xs = [torch.randn(batch, wd, generator=g) for _ in range(2)]

    def ll(z, ws):
        return sum(-0.5 * (math.log(2 * math.pi) + (x - z - w) ** 2).sum(-1) for x, w in zip(xs, ws, strict=True))

    return comps, posts, aux, rhos, xs, ll


def _manual_private_log_weights(comps, posts, aux, xs, k, use_aux: bool):
    """MMVAE+'s log weights by hand with torch.distributions, drawing what the estimator draws in its order: per
    component m, z (K, B, Z), then w_1, w_2 (K, B, W) each, w_n from r_n when n != m and ``use_aux``."""
    batch = comps[0].mu.shape[0]
    lws, draws = [], []
    for m, c in enumerate(comps):
        z = c.mu + c.std * torch.randn(k, *c.mu.shape)
        ws, ratio = [], 0.0
        for n, q in enumerate(posts):
            eps = torch.randn(k, *q.mu.shape)
            if n == m or not use_aux:
                w = q.mu + q.std * eps
                ratio = ratio + D.Normal(0.0, 1.0).log_prob(w).sum(-1) - _normal(q).log_prob(w)
            else:
                w = aux[n].std * eps
            ws.append(w)
        log_q = torch.logsumexp(torch.stack([_normal(d).log_prob(z) for d in comps]), 0) - math.log(len(comps))
        log_lik = sum(D.Normal(z + w, 1.0).log_prob(x).sum(-1) for x, w in zip(xs, ws, strict=True))
        lws.append(D.Normal(0.0, 1.0).log_prob(z).sum(-1) + log_lik - log_q + ratio)
        draws.append((z, ws))
        assert lws[-1].shape == (k, batch)
    return lws, draws


def test_stratified_iwae_with_private_latents_matches_a_manual_computation():
    """MMVAE+: in component m, w_m from its posterior (with its prior/posterior ratio), the other w from r."""
    comps, posts, aux, _, xs, ll = _private_toy()
    k = 4
    torch.manual_seed(5)
    got = stratified_iwae(comps, ll, k, PrivateLatents(posts, aux))
    torch.manual_seed(5)
    lws, _ = _manual_private_log_weights(comps, posts, aux, xs, k, use_aux=True)
    expected = torch.stack([torch.logsumexp(lw, 0) - math.log(k) for lw in lws]).mean(0)
    assert torch.allclose(got, expected, atol=1e-5)
    # without auxiliary priors: the single-sample ELBO of q_mix(z|x) q(w_1|x_1) q(w_2|x_2), every w from its posterior
    torch.manual_seed(6)
    elbo = mixture_elbo(comps, ll, PrivateLatents(posts))
    torch.manual_seed(6)
    lws, _ = _manual_private_log_weights(comps, posts, aux, xs, 1, use_aux=False)
    assert torch.allclose(elbo, torch.stack([lw[0] for lw in lws]).mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="1 private posteriors for 2 mixture components"):
        stratified_iwae(comps, ll, 1, PrivateLatents(posts[:1]))


def test_private_elbo_averages_to_reconstruction_minus_both_kls():
    """One component, no auxiliary prior: E[log w] = E[log N(x; z + w, 1)] - KL(q(z) || p) - KL(q(w) || p), the
    expectation in closed form: -1/2 log 2 pi - 1/2 ((x - mu_z - mu_w)^2 + s_z^2 + s_w^2)."""
    mu_z, lv_z, mu_w, lv_w, x = 0.4, math.log(0.3), -0.2, math.log(0.5), 1.1
    n = 200000  # independent single-sample ELBOs, one per batch row

    def gaussian(mu: float, lv: float) -> Gaussian:
        return Gaussian(torch.full((n, 1), mu, dtype=torch.float64), torch.full((n, 1), lv, dtype=torch.float64))

    ll = lambda z, ws: -0.5 * (math.log(2 * math.pi) + (x - z - ws[0]) ** 2).sum(-1)  # noqa: E731
    torch.manual_seed(0)
    mc = mixture_elbo([gaussian(mu_z, lv_z)], ll, PrivateLatents([gaussian(mu_w, lv_w)])).mean()
    rec = -0.5 * math.log(2 * math.pi) - 0.5 * ((x - mu_z - mu_w) ** 2 + 0.3 + 0.5)
    kl = sum(0.5 * (mu**2 + math.exp(lv) - 1 - lv) for mu, lv in ((mu_z, lv_z), (mu_w, lv_w)))
    assert mc.item() == pytest.approx(rec - kl, abs=0.02)


def test_dreg_with_private_latents_squares_the_weights_on_posterior_draws_only():
    """Two 1-d components: the private posterior's mean gets sum_k w~_k^2 d lw_k / d w_k (w_m drawn in its own
    component), the auxiliary prior's log-variance sum_k w~_k d lw_k / d w~_k * w~_k / 2 (drawn in the other one);
    both halved by the mean over the two components."""
    comps, posts, aux, rhos, xs, ll = _private_toy(2, batch=1, zd=1, wd=1)
    k = 5
    torch.manual_seed(9)
    surrogate, bound = stratified_dreg(comps, ll, k, PrivateLatents(posts, aux))
    surrogate.sum().backward()
    torch.manual_seed(9)
    with torch.no_grad():
        lws, draws = _manual_private_log_weights(comps, posts, aux, xs, k, use_aux=True)
        weights = [torch.softmax(lw, 0).view(k) for lw in lws]
        for m in range(2):
            z, ws = draws[m]
            q = posts[m]
            w_m = ws[m]
            # d lw / d w_m with q's parameters fixed: prior, likelihood of x_m, minus log q(w_m)
            dlw = (-w_m + (xs[m] - z - w_m) + (w_m - q.mu) / torch.exp(q.logvar)).view(k)
            assert posts[m].mu.grad.item() == pytest.approx(0.5 * (weights[m] ** 2 * dlw).sum().item(), rel=1e-4)
            n = 1 - m  # r_n is drawn in component m
            w_n = ws[n]
            dlw_n = (xs[n] - z - w_n).view(k)
            expected = 0.5 * (weights[m] * dlw_n * 0.5 * w_n.view(k)).sum()
            assert rhos[n].grad.item() == pytest.approx(expected.item(), rel=1e-4)
        iwae = torch.stack([torch.logsumexp(lw, 0) - math.log(k) for lw in lws]).mean(0)
    assert bound.item() == pytest.approx(iwae.item(), rel=1e-5)
