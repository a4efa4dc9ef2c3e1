"""``MultimodalVAE``: image + text with a shared latent, PoE / MoE / MoPoE joint posteriors.

Images enter normalised with the ImageNet mean/std (what every mmthesis image transform gives) and are
reconstructed as [0, 1] pixels under a Laplace (MMVAE) or Gaussian likelihood of fixed scale; captions are
``[CLS] tokens [SEP]`` ids of the run's WordPiece tokenizer, reconstructed autoregressively by a GRU
(``[CLS]`` is the start token, ``[SEP]`` the end).

Each modality m has an encoder giving a Gaussian expert q_m(z | x_m). The joint posterior is

* ``poe``   (MVAE):  q(z | x) = N(0, I) * prod_m q_m  (precision-weighted product);
* ``moe``   (MMVAE): q(z | x) = 1/M sum_m q_m         (each expert must explain every modality);
* ``mopoe`` (MoPoE): q(z | x) = 1/|S| sum_{s in S} PoE(s), S the non-empty subsets of the modalities.

``private_dim`` > 0 (MMVAE+, Palumbo et al. 2023; moe only) gives each modality a private latent w_m next to z:
its encoder gives q(z | x_m) q(w_m | x_m), its decoder reads p(x_m | z, w_m), and a learnt auxiliary prior
r_m(w_m) = N(0, diag(exp(rho_m))) stands in for w_m when x_m is decoded from another modality's z (training and the
cross-modal test likelihoods). The eval interface stays on the shared z: ``latent_*`` are means of z, and
``decode_*`` of a z alone use the private mean 0 (the mean of both p(w) and r(w)), or a draw from r with
``private="sample"``.

The model interface of the eval harness: ``encode_image`` / ``encode_text`` (normalised posterior means),
``latent_image`` / ``latent_text`` (posterior means), ``decode_image`` / ``decode_text``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.vae.config import VAELossConfig, VAEModelConfig
from mmthesis.vae.estimators import (
    Gaussian,
    PrivateLatents,
    kl_standard_normal,
    mixture_elbo,
    product_of_experts,
    stratified_dreg,
    stratified_iwae,
)

IMAGE, TEXT = "image", "text"
MODALITIES = (IMAGE, TEXT)
_MEAN = (0.485, 0.456, 0.406)  # the ImageNet normalisation of mmthesis.data.transforms
_STD = (0.229, 0.224, 0.225)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised images -> [0, 1] pixels (the reconstruction target)."""
    mean = images.new_tensor(_MEAN).view(-1, 1, 1)
    std = images.new_tensor(_STD).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def from_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> ImageNet-normalised images (what the encoders read)."""
    mean = pixels.new_tensor(_MEAN).view(-1, 1, 1)
    std = pixels.new_tensor(_STD).view(-1, 1, 1)
    return (pixels - mean) / std


def _halvings(img_size: int) -> int:
    return int(math.log2(img_size // 4))


class _GaussianHead(nn.Module):
    """features -> (mu, logvar); logvar is soft-clamped so early steps cannot overflow exp()."""

    def __init__(self, dim: int, latent: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * latent)

    def forward(self, h: torch.Tensor) -> Gaussian:
        mu, logvar = self.proj(h).chunk(2, dim=-1)
        return Gaussian(mu, 8.0 * torch.tanh(logvar / 8.0))


class ConvImageEncoder(nn.Module):
    """Strided 4x4 convolutions halving the image down to 4x4, then a Gaussian head."""

    def __init__(self, img_size: int, channels: int, latent: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = 3, channels
        for _ in range(_halvings(img_size)):
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()]
            c_in, c = c, c * 2
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.head = _GaussianHead(c_in * 16, latent)

    def forward(self, images: torch.Tensor) -> Gaussian:
        return self.head(self.net(images))


class ConvImageDecoder(nn.Module):
    """z -> 4x4 feature map -> strided transposed convolutions doubling up to the image size -> sigmoid pixel means."""

    def __init__(self, img_size: int, channels: int, latent: int) -> None:
        super().__init__()
        n = _halvings(img_size)
        widths = [channels * 2**i for i in range(n)][::-1]  # e.g. 128, 64, 32
        self.start = widths[0]
        self.fc = nn.Linear(latent, widths[0] * 16)
        layers: list[nn.Module] = []
        for i, c in enumerate(widths):
            out = widths[i + 1] if i + 1 < n else 3  # the last one gives the pixels (no extra conv: CPU time)
            layers += [nn.SiLU(), nn.ConvTranspose2d(c, out, 4, stride=2, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.start, 4, 4)
        return torch.sigmoid(self.net(h))


class GRUTextEncoder(nn.Module):
    """Bidirectional GRU over the caption (packed: padding never enters), final states -> Gaussian head."""

    def __init__(self, vocab_size: int, dim: int, latent: int, pad_id: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.head = _GaussianHead(2 * dim, latent)

    def forward(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> Gaussian:
        lengths = (~padding_mask).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # (2, B, dim)
        return self.head(torch.cat([h[0], h[1]], dim=-1))


class GRUTextDecoder(nn.Module):
    """Autoregressive GRU: z sets the initial state and is fed with every input token."""

    def __init__(self, vocab_size: int, dim: int, latent: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.init = nn.Linear(latent, dim)
        self.gru = nn.GRU(dim + latent, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab_size)

    def logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token logits ``(B, L, V)`` for input ids ``(B, L)``."""
        h0 = torch.tanh(self.init(z)).unsqueeze(0)
        x = torch.cat([self.embed(inputs), z.unsqueeze(1).expand(-1, inputs.shape[1], -1)], dim=-1)
        out, _ = self.gru(x, h0)
        return self.out(out)

    @torch.no_grad()
    def generate(
        self, z: torch.Tensor, start_id: int, end_id: int, max_len: int, greedy: bool, generator: torch.Generator | None
    ) -> list[list[int]]:
        """Token ids after the start token, up to and without the end token (at most ``max_len``)."""
        h = torch.tanh(self.init(z)).unsqueeze(0)
        token = torch.full((z.shape[0], 1), start_id, dtype=torch.long, device=z.device)
        out: list[list[int]] = [[] for _ in range(z.shape[0])]
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        for _ in range(max_len):
            x = torch.cat([self.embed(token), z.unsqueeze(1)], dim=-1)
            y, h = self.gru(x, h)
            logits = self.out(y[:, -1])
            if greedy:
                token = logits.argmax(-1, keepdim=True)
            else:
                probs = torch.softmax(logits.float(), -1)
                token = torch.multinomial(probs.cpu(), 1, generator=generator).to(z.device)
            done |= token[:, 0] == end_id
            for row in torch.nonzero(~done).flatten().tolist():
                out[row].append(int(token[row, 0]))
            if bool(done.all()):
                break
        return out


class FeatureHead(nn.Module):
    """MLP posterior head on frozen pretrained features."""

    def __init__(self, dim: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.head = _GaussianHead(hidden, latent)

    def forward(self, features: torch.Tensor) -> Gaussian:
        return self.head(self.net(features))


class MultimodalVAE(nn.Module):
    """A VAE over images and captions with a shared latent; see the module docstring.

    ``tokenizer`` is an mmthesis ``Tokenizer`` (``pad_id``, ``cls_id``, ``sep_id``, ``vocab_size``, ``decode``).
    ``pretrained`` (``encoder=pretrained``): a loaded eval model (``mmthesis.eval.adapters.LoadedModel``) whose
    frozen ``encode_image`` / ``encode_text`` features the posterior heads read. It is not a submodule, so its
    weights stay out of this model's state dict (the run records its spec and reloads it).
    """

    def __init__(self, config: VAEModelConfig, tokenizer: Any, pretrained: Any = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.image_size = config.img_size
        self.aggregation = config.aggregation
        self.private_dim = config.private_dim
        # each encoder's head gives (z, w_m) in one Gaussian (split by _split); each decoder reads (z, w_m)
        vocab, z = tokenizer.vocab_size, config.latent_dim + config.private_dim
        self._pretrained = [pretrained] if pretrained is not None else []  # a list: not registered as a submodule
        if config.encoder == "pretrained":
            if pretrained is None:
                raise ValueError("encoder=pretrained needs the loaded pretrained model")
            dim = self._feature_dim(pretrained)
            self.image_encoder: nn.Module = FeatureHead(dim, config.head_hidden, z)
            self.text_encoder: nn.Module = FeatureHead(dim, config.head_hidden, z)
        else:
            self.image_encoder = ConvImageEncoder(config.img_size, config.image_channels, z)
            self.text_encoder = GRUTextEncoder(vocab, config.text_dim, z, tokenizer.pad_id)
        self.image_decoder = ConvImageDecoder(config.img_size, config.image_channels, z)
        self.text_decoder = GRUTextDecoder(vocab, config.text_dim, z)
        if config.private_dim:
            # log-variances rho_m of the auxiliary priors r_m(w_m) = N(0, diag(exp(rho_m))), learnt (MMVAE+); start at N(0, I)
            self.aux_prior_logvar = nn.ParameterDict({m: nn.Parameter(torch.zeros(config.private_dim)) for m in MODALITIES})

    # -- pretrained features ------------------------------------------------------------------
    def _feature_dim(self, loaded: Any) -> int:
        with torch.no_grad():
            size = _transform_size(loaded.image_transform, self.image_size)
            return int(loaded.model.encode_image(torch.zeros(1, 3, size, size)).shape[-1])

    def _frozen(self) -> Any:
        loaded = self._pretrained[0]
        device = next(self.parameters()).device
        if next(loaded.model.parameters(), torch.empty(0)).device != device:
            loaded.model.to(device)
        return loaded

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        loaded = self._frozen()
        size = _transform_size(loaded.image_transform, self.image_size)
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
        with torch.no_grad():
            return loaded.model.encode_image(images).float()

    def _text_features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._frozen().model.encode_text(ids, mask).float()

    # -- posteriors ---------------------------------------------------------------------------
    def _image_posterior(self, images: torch.Tensor) -> Gaussian:
        if self.config.encoder == "pretrained":
            return self.image_encoder(self._image_features(images))
        return self.image_encoder(images)

    def _text_posterior(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> Gaussian:
        if self.config.encoder == "pretrained":
            return self.text_encoder(self._text_features(ids, padding_mask))
        return self.text_encoder(ids, padding_mask)

    def _split(self, q: Gaussian) -> tuple[Gaussian, Gaussian]:
        """An encoder's Gaussian over (z, w_m) -> q(z | x_m), q(w_m | x_m) (w empty without private latents)."""
        d = self.config.latent_dim
        return Gaussian(q.mu[..., :d], q.logvar[..., :d]), Gaussian(q.mu[..., d:], q.logvar[..., d:])

    def _posteriors(
        self, images: torch.Tensor, ids: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[dict[str, Gaussian], dict[str, Gaussian]]:
        """Both modalities' shared experts q_m(z | x_m) and private posteriors q(w_m | x_m)."""
        qi, wi = self._split(self._image_posterior(images))
        qt, wt = self._split(self._text_posterior(ids, padding_mask))
        return {IMAGE: qi, TEXT: qt}, {IMAGE: wi, TEXT: wt}

    def image_expert(self, images: torch.Tensor) -> Gaussian:
        """q_image(z | image): the image encoder's Gaussian expert over the shared latent."""
        return self._split(self._image_posterior(images))[0]

    def text_expert(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> Gaussian:
        """q_text(z | caption): the text encoder's Gaussian expert over the shared latent."""
        return self._split(self._text_posterior(ids, padding_mask))[0]

    def aux_prior(self, modality: str, batch: int) -> Gaussian:
        """MMVAE+'s auxiliary prior r_m(w_m) over modality m's private latent, broadcast to ``(batch, W)``."""
        logvar = 8.0 * torch.tanh(self.aux_prior_logvar[modality] / 8.0)  # soft-clamped as the encoder heads
        return Gaussian(logvar.new_zeros(batch, self.private_dim), logvar.expand(batch, -1))

    def _private(self, private: dict[str, Gaussian], batch: int, aux: bool) -> PrivateLatents:
        """The private posteriors in the mixture's component order, with the auxiliary priors when ``aux``."""
        priors = [self.aux_prior(m, batch) for m in MODALITIES] if aux else None
        return PrivateLatents([private[m] for m in MODALITIES], priors)

    def components(self, experts: dict[str, Gaussian]) -> list[Gaussian]:
        """The joint posterior given the observed modalities' experts, as a uniform mixture of Gaussians."""
        if not experts:
            raise ValueError("the posterior needs at least one observed modality")
        prior = self.config.prior_expert
        present = [experts[m] for m in MODALITIES if m in experts]
        if self.aggregation == "poe":
            return [product_of_experts(present, prior_expert=prior)]
        if self.aggregation == "moe":
            return present
        return [product_of_experts(list(s), prior_expert=prior) for s in _subsets(present)]

    def posterior_mean(self, experts: dict[str, Gaussian]) -> torch.Tensor:
        """Mean of the joint posterior (the mixture's mean: the average of its components' means)."""
        return torch.stack([c.mu for c in self.components(experts)]).mean(0)

    # -- likelihoods --------------------------------------------------------------------------
    def image_log_likelihood(self, z: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """log p(image | z) over all pixels for z ``(K, B, Z)`` (with private latents: (z, w_image), ``Z + W``): ``(K, B)``."""
        k, b = z.shape[:2]
        mean = self.image_decoder(z.reshape(k * b, -1)).view(k, b, *images.shape[1:])
        target = to_unit_range(images).unsqueeze(0)
        s = self.config.image_scale
        if self.config.image_likelihood == "laplace":
            lp = -math.log(2 * s) - (target - mean).abs() / s
        else:
            lp = -0.5 * math.log(2 * math.pi * s * s) - 0.5 * ((target - mean) / s) ** 2
        return lp.flatten(2).sum(-1)

    def text_log_likelihood(self, z: torch.Tensor, ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """log p(caption | z) = sum of next-token log-probabilities after ``[CLS]`` (to ``[SEP]``): ``(K, B)``.

        With private latents z is (z, w_text), ``(K, B, Z + W)``."""
        k, b = z.shape[:2]
        inputs, targets = ids[:, :-1], ids[:, 1:]
        if self.training and self.config.word_dropout > 0:  # never the first ([CLS]) input, never at test time
            drop = torch.rand(inputs.shape, device=ids.device) < self.config.word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop, self.tokenizer.unk_id)
        valid = ~padding_mask[:, 1:]
        logits = self.text_decoder.logits(z.reshape(k * b, -1), inputs.repeat(k, 1))
        nll = F.cross_entropy(logits.transpose(1, 2), targets.repeat(k, 1), reduction="none")
        return -(nll * valid.repeat(k, 1)).sum(-1).view(k, b)

    def _log_likelihood(self, images, ids, mask, weighted: bool):
        wi = self.config.image_weight if weighted else 1.0
        wt = self.config.text_weight if weighted else 1.0
        if self.private_dim:  # ws: the private latents in MODALITIES order, each decoder reads (z, its w)
            return lambda z, ws: (
                wi * self.image_log_likelihood(torch.cat([z, ws[0]], -1), images)
                + wt * self.text_log_likelihood(torch.cat([z, ws[1]], -1), ids, mask)
            )
        return lambda z: wi * self.image_log_likelihood(z, images) + wt * self.text_log_likelihood(z, ids, mask)

    # -- objectives ---------------------------------------------------------------------------
    def loss(
        self, images: torch.Tensor, ids: torch.Tensor, padding_mask: torch.Tensor, loss: VAELossConfig
    ) -> dict[str, torch.Tensor]:
        """The aggregation's training objective on a paired batch: ``{"loss": -objective, ...}`` (batch means).

        poe:   ELBO(joint) [+ ELBO(image | q_image) + ELBO(text | q_text)], analytic KL (MVAE);
        moe:   stratified ELBO / IWAE / DReG over the modality experts (MMVAE); with private latents over (z, w),
               the other modalities' w from the auxiliary priors (MMVAE+);
        mopoe: mean over subsets s of ELBO(x | PoE(s)), analytic KL per subset (MoPoE's bound).
        """
        experts, private = self._posteriors(images, ids, padding_mask)
        ll = self._log_likelihood(images, ids, padding_mask, weighted=True)
        out: dict[str, torch.Tensor] = {}
        if self.aggregation == "moe":
            comps = self.components(experts)
            aux = self._private(private, images.shape[0], aux=True) if self.private_dim else None
            if loss.estimator == "dreg":
                objective, bound = stratified_dreg(comps, ll, loss.k, aux)
                out["bound"] = bound.mean()
            else:
                objective = stratified_iwae(comps, ll, loss.k if loss.estimator == "iwae" else 1, aux)
                out["bound"] = objective.detach().mean()
        else:
            subsets = [self.components(experts)[0]] if self.aggregation == "poe" else self.components(experts)
            terms = [self._gaussian_elbo(q, ll, loss.beta) for q in subsets]
            if self.aggregation == "poe":
                objective = terms[0]
                if loss.unimodal_elbos:
                    li = lambda z: self.config.image_weight * self.image_log_likelihood(z, images)  # noqa: E731
                    lt = lambda z: self.config.text_weight * self.text_log_likelihood(z, ids, padding_mask)  # noqa: E731
                    objective = objective + self._gaussian_elbo(self.components({IMAGE: experts[IMAGE]})[0], li, loss.beta)
                    objective = objective + self._gaussian_elbo(self.components({TEXT: experts[TEXT]})[0], lt, loss.beta)
            else:
                objective = torch.stack(terms).mean(0)
            out["bound"] = objective.detach().mean()
        out["loss"] = -objective.mean()
        return out

    @staticmethod
    def _gaussian_elbo(q: Gaussian, ll, beta: float) -> torch.Tensor:
        z = q.rsample(1)
        return ll(z)[0] - beta * kl_standard_normal(q)

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, ids: torch.Tensor, padding_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-pair test scores (nats, unweighted likelihoods), each ``(B,)``.

        ``elbo``: the ELBO of the aggregation's own joint posterior (stratified over its mixture components, one
        sample each: comparable across poe / moe / mopoe); ``image_to_text`` / ``text_to_image``: log p(x_other | z)
        with z from the posterior given only the other modality (cross-modal likelihood); ``self_image`` /
        ``self_text``: reconstruction log-likelihood from the same modality alone.

        With private latents (MMVAE+): ``elbo`` is the ELBO of q_mix(z | x) q(w_image | image) q(w_text | text);
        the cross-modal likelihoods decode with the target modality's w drawn from its auxiliary prior r (as
        training does), the same-modality ones with w from its posterior.
        """
        experts, private = self._posteriors(images, ids, padding_mask)
        ll = self._log_likelihood(images, ids, padding_mask, weighted=False)
        # one modality observed: every aggregation's posterior is a single Gaussian
        z_i = self.components({IMAGE: experts[IMAGE]})[0].rsample(1)
        z_t = self.components({TEXT: experts[TEXT]})[0].rsample(1)
        if self.private_dim:
            b = images.shape[0]
            w_i, w_t = private[IMAGE].rsample(1), private[TEXT].rsample(1)
            r_i, r_t = self.aux_prior(IMAGE, b).rsample(1), self.aux_prior(TEXT, b).rsample(1)
            return {
                "elbo": mixture_elbo(self.components(experts), ll, self._private(private, b, aux=False)),
                "image_to_text": self.text_log_likelihood(torch.cat([z_i, r_t], -1), ids, padding_mask)[0],
                "text_to_image": self.image_log_likelihood(torch.cat([z_t, r_i], -1), images)[0],
                "self_image": self.image_log_likelihood(torch.cat([z_i, w_i], -1), images)[0],
                "self_text": self.text_log_likelihood(torch.cat([z_t, w_t], -1), ids, padding_mask)[0],
            }
        return {
            "elbo": mixture_elbo(self.components(experts), ll),
            "image_to_text": self.text_log_likelihood(z_i, ids, padding_mask)[0],
            "text_to_image": self.image_log_likelihood(z_t, images)[0],
            "self_image": self.image_log_likelihood(z_i, images)[0],
            "self_text": self.text_log_likelihood(z_t, ids, padding_mask)[0],
        }

    # -- the eval interface -------------------------------------------------------------------
    @torch.no_grad()
    def latent_image(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior mean of the shared latent given only the image: ``(B, Z)``."""
        return self.posterior_mean({IMAGE: self.image_expert(images)})

    @torch.no_grad()
    def latent_text(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Posterior mean of the shared latent given only the caption: ``(B, Z)``."""
        return self.posterior_mean({TEXT: self.text_expert(ids, padding_mask)})

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``latent_image`` (the embedding every eval task reads)."""
        return F.normalize(self.latent_image(images).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``latent_text``."""
        return F.normalize(self.latent_text(ids, padding_mask).float(), dim=-1)

    def _decoder_input(
        self, z: torch.Tensor, modality: str, private: Literal["mean", "sample"], generator: torch.Generator | None
    ) -> torch.Tensor:
        """A shared latent ``(B, Z)`` -> the decoder's input: (z, w) with w the auxiliary prior's mean (0) or a draw.

        A ``(B, Z + W)`` latent is taken as (z, w) already."""
        z = z.to(next(self.parameters()).device)
        full = self.config.latent_dim + self.private_dim
        if z.shape[-1] == full:
            return z
        if z.shape[-1] != self.config.latent_dim:
            raise ValueError(f"latents must have {self.config.latent_dim} (or {full}) dimensions, got {z.shape[-1]}")
        if private == "mean":
            return torch.cat([z, z.new_zeros(z.shape[0], self.private_dim)], -1)
        if private != "sample":
            raise ValueError(f"private must be 'mean' or 'sample', got {private!r}")
        std = self.aux_prior(modality, z.shape[0]).std
        eps = torch.randn(std.shape, generator=generator, dtype=std.dtype).to(z.device)
        return torch.cat([z, eps * std], -1)

    @torch.no_grad()
    def decode_image(
        self, z: torch.Tensor, private: Literal["mean", "sample"] = "mean", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Pixel means ``(B, 3, H, W)`` in [0, 1] of latents ``(B, Z)``; ``private``: the private part (MMVAE+)."""
        return self.image_decoder(self._decoder_input(z, IMAGE, private, generator)).float()

    @torch.no_grad()
    def decode_text(
        self, z: torch.Tensor, max_len: int = 32, greedy: bool = True, generator: torch.Generator | None = None,
        private: Literal["mean", "sample"] = "mean",
    ) -> list[str]:
        """Captions of latents ``(B, Z)``: greedy (argmax) or sampled tokens until ``[SEP]`` or ``max_len``;
        ``private``: the private part (MMVAE+: the auxiliary prior's mean, or a draw with ``generator``)."""
        tok = self.tokenizer
        u = self._decoder_input(z, TEXT, private, generator)
        ids = self.text_decoder.generate(u, tok.cls_id, tok.sep_id, max_len, greedy, generator)
        return [tok.decode(row) for row in ids]

    def encode_captions(self, texts: Sequence[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, padding_mask) of free texts with the model's tokenizer."""
        return self.tokenizer.encode_batch(list(texts), max_length)


def _subsets(items: Sequence[Gaussian]) -> list[tuple[Gaussian, ...]]:
    """Non-empty subsets, singletons first (for two modalities: {a}, {b}, {a, b})."""
    from itertools import combinations

    return [s for r in range(1, len(items) + 1) for s in combinations(items, r)]


def _transform_size(transform: Any, default: int) -> int:
    """The square size an eval transform resizes to (its first ``Resize``), else ``default``."""
    for t in getattr(transform, "transforms", []):
        size = getattr(t, "size", None)
        if size:
            return int(size[0] if isinstance(size, (list, tuple)) else size)
    return default
