"""Gaussian posteriors, their aggregation, and the ELBO estimators of the three multimodal VAEs.

Everything works on diagonal Gaussians given as ``(mu, logvar)`` with the latent in the last dimension;
densities are summed over it. Why own functions next to ``torch.distributions``: the product of experts and
the stop-gradient copies the DReG estimator needs are one line each on ``(mu, logvar)``, and the tests check
every function here against ``torch.distributions`` or a hand computation.

* ``product_of_experts``: MVAE's joint posterior (Wu & Goodman 2018), precision-weighted, optionally with the
  N(0, I) prior as one more expert.
* ``stratified_iwae`` / ``stratified_dreg``: MMVAE's importance-weighted objectives for a mixture posterior
  (Shi et al. 2019): K samples from *each* component (stratified sampling), weights against the mixture density.
* ``mixture_elbo``: the ELBO of any posterior that is a uniform mixture of Gaussians (a PoE is one component,
  MoE one per modality, MoPoE one per subset of modalities): one code path to compare the aggregations.
* ``PrivateLatents``: MMVAE+'s modality-private latents w_m (Palumbo et al. 2023) next to the shared z; the three
  estimators above take them as ``private=`` and then estimate over the joint latent (z, w_1, ..., w_M).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


@dataclass
class Gaussian:
    """A diagonal Gaussian over the last dimension; batch dimensions in front."""

    mu: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, k: int | None = None) -> torch.Tensor:
        """Reparameterised samples: ``(*batch, Z)`` or, with ``k``, ``(k, *batch, Z)``."""
        shape = self.mu.shape if k is None else (k, *self.mu.shape)
        return self.mu + self.std * torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mu, diag(exp(logvar))) summed over the latent dimension (broadcasts over leading dims)."""
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu) ** 2 / torch.exp(self.logvar)).sum(-1)

    def detach(self) -> Gaussian:
        """The same distribution with parameters cut from the graph (DReG's log q)."""
        return Gaussian(self.mu.detach(), self.logvar.detach())


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (LOG_2PI + z**2).sum(-1)


def kl_standard_normal(q: Gaussian) -> torch.Tensor:
    """KL(q || N(0, I)) in closed form, summed over the latent dimension."""
    return 0.5 * (q.mu**2 + torch.exp(q.logvar) - 1.0 - q.logvar).sum(-1)


def product_of_experts(experts: Sequence[Gaussian], prior_expert: bool = True, eps: float = 1e-8) -> Gaussian:
    """Product of Gaussian experts: precision = sum of precisions, mean = precision-weighted mean of the means.

    ``prior_expert`` multiplies in N(0, I) too (MVAE), which keeps a single-modality posterior close to the prior
    where that modality's expert is unsure.
    """
    if not experts:
        raise ValueError("product_of_experts needs at least one expert")
    precisions = [torch.exp(-e.logvar) + eps for e in experts]
    weighted = [e.mu * p for e, p in zip(experts, precisions, strict=True)]
    precision = torch.stack(precisions).sum(0)
    mean_num = torch.stack(weighted).sum(0)
    if prior_expert:
        precision = precision + 1.0  # N(0, I): precision 1, mean 0
    mu = mean_num / precision
    return Gaussian(mu, -torch.log(precision))


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along ``dim``, stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def mixture_log_prob(z: torch.Tensor, components: Sequence[Gaussian]) -> torch.Tensor:
    """log of the uniform mixture density (1/C) sum_c q_c(z)."""
    return log_mean_exp(torch.stack([c.log_prob(z) for c in components]), dim=0)


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """IWAE bound log (1/K) sum_k w_k from ``(K, *batch)`` log-weights: ``(*batch)``."""
    return log_mean_exp(log_weights, dim=0)


# log p(x | z) summed over the observed modalities, for z of shape (K, B, Z): returns (K, B). With private latents
# it is called as log_likelihood(z, ws): ws[m] (K, B, W) is the private latent modality m's decoder reads.
LogLikelihood = Callable[..., torch.Tensor]


@dataclass
class PrivateLatents:
    """MMVAE+'s modality-private latents, one per mixture component (= per modality, in the components' order).

    ``posteriors[m]`` is q(w_m | x_m), prior N(0, I). In component m's term (z ~ q_m(z | x_m)) w_m is drawn from its
    posterior and, with ``aux_priors``, every other w_n from the auxiliary prior r_n (MMVAE+'s objective: decoding x_n
    from z with a w_n that knows nothing of x_n pushes the shared content into z; r_n enters no density ratio, as
    in MMVAE+). ``aux_priors=None``: every w_n from its posterior, the plain ELBO of the joint posterior
    q_mix(z | x) prod_n q(w_n | x_n).
    """

    posteriors: Sequence[Gaussian]
    aux_priors: Sequence[Gaussian] | None = None


def _component_log_weights(
    components: Sequence[Gaussian], log_likelihood: LogLikelihood, k: int, detach_q: bool,
    private: PrivateLatents | None = None,
) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
    """Per component m: K draws and their log weights.

    Without private latents: z ~ q_m, log w = log p(z) + log p(x | z) - log q_mix(z | x). With them, after z (in
    modality order) w_n ~ q(w_n | x_n) if n = m or no auxiliary priors, else w_n ~ r_n, and
    log w = log p(z) + log p(x | z, w) - log q_mix(z | x) + sum over the posterior draws of log p(w_n) - log q(w_n | x_n).
    Returns the posterior draws of each component (what DReG reweights) and the log weights ``(K, B)``.
    """
    q_for_density = [c.detach() for c in components] if detach_q else list(components)
    if private is not None and len(private.posteriors) != len(components):
        raise ValueError(f"{len(private.posteriors)} private posteriors for {len(components)} mixture components")
    draws, lws = [], []
    for m, c in enumerate(components):
        z = c.rsample(k)
        drawn = [z]
        if private is None:
            lw = standard_normal_log_prob(z) + log_likelihood(z) - mixture_log_prob(z, q_for_density)
        else:
            ws, log_ratio = [], torch.zeros((), dtype=z.dtype, device=z.device)
            for n, q_w in enumerate(private.posteriors):
                if n == m or private.aux_priors is None:
                    w = q_w.rsample(k)
                    log_ratio = log_ratio + standard_normal_log_prob(w) - (q_w.detach() if detach_q else q_w).log_prob(w)
                    drawn.append(w)
                else:
                    w = private.aux_priors[n].rsample(k)
                ws.append(w)
            lw = standard_normal_log_prob(z) + log_likelihood(z, ws) - mixture_log_prob(z, q_for_density) + log_ratio
        draws.append(drawn)
        lws.append(lw)
    return draws, lws


def stratified_iwae(
    components: Sequence[Gaussian], log_likelihood: LogLikelihood, k: int, private: PrivateLatents | None = None
) -> torch.Tensor:
    """MMVAE's stratified IWAE objective: (1/M) sum_m log (1/K) sum_k w(z_mk), z_mk ~ q_m; shape ``(B,)``.

    With ``k=1`` it is the stratified ELBO of the mixture posterior (the expectation over the mixture's
    components computed exactly, one sample each). ``private``: MMVAE+'s, over (z, w) (``PrivateLatents``).
    """
    _, lws = _component_log_weights(components, log_likelihood, k, detach_q=False, private=private)
    return torch.stack([iwae_bound(lw) for lw in lws]).mean(0)


def stratified_dreg(
    components: Sequence[Gaussian], log_likelihood: LogLikelihood, k: int, private: PrivateLatents | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MMVAE's DReG estimator (Tucker et al. 2019) of the stratified IWAE objective.

    Returns ``(surrogate, bound)``, both ``(B,)``: maximise ``surrogate`` (its gradient is the doubly
    reparameterised one: the decoder sees normalised weights w~, the encoder sees w~^2 through z only, since log q
    uses detached parameters); ``bound`` is the IWAE value of the same samples, for logging. With ``private`` the
    posterior draws of w are reweighted as z is; the auxiliary prior's draws get the decoder's w~ (its scale is
    learnt like a decoder parameter).
    """
    draws, lws = _component_log_weights(components, log_likelihood, k, detach_q=True, private=private)
    surrogates, bounds = [], []
    for drawn, lw in zip(draws, lws, strict=True):
        with torch.no_grad():
            w = torch.softmax(lw, dim=0)  # normalised importance weights over the K samples
        for sample in drawn:
            if sample.requires_grad:
                sample.register_hook(lambda grad, w=w: grad * w.unsqueeze(-1))
        surrogates.append((w * lw).sum(0))
        bounds.append(iwae_bound(lw.detach()))
    return torch.stack(surrogates).mean(0), torch.stack(bounds).mean(0)


def mixture_elbo(
    components: Sequence[Gaussian], log_likelihood: LogLikelihood, private: PrivateLatents | None = None
) -> torch.Tensor:
    """ELBO of a uniform-mixture posterior, stratified over components (one sample each): ``(B,)``.

    One component (a PoE) gives the ordinary single-sample ELBO with a Monte-Carlo KL.
    """
    return stratified_iwae(components, log_likelihood, k=1, private=private)
