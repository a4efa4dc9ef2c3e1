"""Figures of a trained multimodal VAE (``reproductions/figure-vae-*.yaml``; not thesis figures).

* ``vae-traversal``: images decoded while one latent dimension moves from -span to +span around a caption's latent;
* ``vae-arithmetic-examples``: shapes latent-arithmetic queries (the eval's own ``build_queries``) with the source,
  the operands, and the image and caption decoded from the summed latent;
* ``vae-generation``: captions -> images, the posterior mean and samples of q(z | caption).

Each spec names a VAE recipe (trained at the figure's scale through the VAE run cache) or a finished ``run``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmthesis.eval.reproduce.engine import Context
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure
from mmthesis.eval.reproduce.figures.style import new_figure


@dataclass
class _VAESource:
    vae: str = "vae-mopoe"  # the VAE recipe, trained at the figure's scale (reused when finished)
    overrides: list[str] = field(default_factory=list)
    run: str | None = None  # or a finished VAE run (folder or NAME[/HASH]); then vae/overrides are ignored


@dataclass
class TraversalParams(_VAESource):
    caption: str = "a red circle in the centre"  # the traversal's centre: this caption's posterior mean
    dims: int = 8  # the first `dims` latent dimensions (at most latent_dim), one row each
    steps: int = 7
    span: float = 3.0  # in prior standard deviations


@dataclass
class ArithmeticExamplesParams(_VAESource):
    kinds: list[str] = field(default_factory=lambda: ["image-swap-colour", "image-swap-shape", "image-add-object",
                                                      "text-swap-colour"])
    per_kind: int = 2
    seed: int = 0
    dataset: str = "shapes"
    split: str = "test"


@dataclass
class GenerationParams(_VAESource):
    captions: list[str] = field(default_factory=lambda: ["a red circle in the centre", "a blue square at the top"])
    samples: int = 4  # besides the posterior mean
    seed: int = 0


def _load(p: _VAESource, ctx: Context) -> tuple[Any, str, str]:
    """The VAE model, its recipe name and its result.json path: ``run`` as it is, else ``vae`` trained (or reused) at ctx.scale."""
    from mmthesis.core.results import run_dir
    from mmthesis.vae.artifact import load_vae

    if p.run is not None:
        trained = load_vae(p.run)
    else:
        from mmthesis.vae.recipes import load_vae_recipe
        from mmthesis.vae.train import train_vae

        result = train_vae(load_vae_recipe(p.vae, ctx.scale, p.overrides), ctx.scale, root=ctx.runs_root)
        trained = load_vae(run_dir(result.name, result.config_hash, ctx.runs_root))
    return trained.model.eval(), trained.config.recipe, str(trained.folder / "result.json")


def _text_latent(model: Any, captions: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return model.latent_text(*model.encode_captions(captions))


def _show(ax: Any, pixels: torch.Tensor) -> None:
    ax.imshow(pixels.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


@register_figure("vae-traversal", params=TraversalParams)
def traversal(spec: FigureSpec, ctx: Context) -> FigureOutput:
    p: TraversalParams = spec.params
    model, recipe, record = _load(p, ctx)
    dims = min(p.dims, model.config.latent_dim)
    centre = _text_latent(model, [p.caption])[0]
    offsets = torch.linspace(-p.span, p.span, p.steps)
    z = centre.repeat(dims, p.steps, 1)  # (dims, steps, Z)
    for d in range(dims):
        z[d, :, d] = centre[d] + offsets
    with torch.no_grad():
        images = model.decode_image(z.flatten(0, 1)).view(dims, p.steps, 3, model.image_size, model.image_size)
    fig, axes = new_figure(0.8 * p.steps + 0.6, 0.8 * dims + 0.4, nrows=dims, ncols=p.steps, squeeze=False)
    for d in range(dims):
        for s in range(p.steps):
            _show(axes[d][s], images[d, s])
            if s == 0:
                axes[d][s].set_ylabel(f"z{d}", rotation=0, labelpad=12)
            if d == dims - 1:
                axes[d][s].set_xlabel(f"{offsets[s]:+.1f}")
    caption = (f"Latent traversal of {recipe} ({model.aggregation}): images decoded from the posterior mean "
               f"of \"{p.caption}\" with one latent dimension (row) moved by -{p.span:g}..+{p.span:g}.")
    values = {"caption_latent": [round(float(v), 4) for v in centre], "offsets": offsets.tolist(), "dims": dims}
    return FigureOutput(fig, caption, records=[record], values=values)


@register_figure("vae-arithmetic-examples", params=ArithmeticExamplesParams)
def arithmetic_examples(spec: FigureSpec, ctx: Context) -> FigureOutput:
    from mmthesis.data.transforms import eval_transform
    from mmthesis.eval.arithmetic import build_queries, check_kinds
    from mmthesis.eval.data_access import resolve_dataset
    from mmthesis.eval.shapes_attributes import load_shapes_split

    p: ArithmeticExamplesParams = spec.params
    check_kinds(p.kinds, spec.name)
    model, recipe, record = _load(p, ctx)
    data = load_shapes_split(str(resolve_dataset(p.dataset, ctx.scale).folder), p.split)
    queries = build_queries(data.scenes, data.captions, p.kinds, p.per_kind, p.seed)
    transform = eval_transform(model.image_size)
    from PIL import Image

    def image(row: int) -> torch.Tensor:
        return transform(Image.fromarray(data.images[row])).unsqueeze(0)

    latents, rows = [], []
    with torch.no_grad():
        for q in queries:
            z = sum(t.sign * (model.latent_image(image(int(t.ref))) if t.kind == "image" else _text_latent(model, [str(t.ref)]))
                    for t in q.terms)
            latents.append(z[0])
    z = torch.stack(latents)
    with torch.no_grad():
        decoded_images = model.decode_image(z)
        decoded_texts = model.decode_text(z)
    fig, axes = new_figure(7.5, 1.3 * len(queries) + 0.3, nrows=len(queries), ncols=3, squeeze=False,
                           gridspec_kw={"width_ratios": [1, 3, 1]})
    for i, q in enumerate(queries):
        source, ops = q.terms[0], q.terms[1:]
        if source.kind == "image":
            axes[i][0].imshow(data.images[int(source.ref)])
            axes[i][0].set_xticks([])
            axes[i][0].set_yticks([])
        else:
            axes[i][0].axis("off")
            axes[i][0].text(0.5, 0.5, textwrap.fill(str(source.ref), 18), ha="center", va="center", fontsize=7)
        operands = " ".join(f"{'+' if t.sign > 0 else '−'} " + (f"image #{t.ref}" if t.kind == "image" else f"“{t.ref}”")
                            for t in ops)
        axes[i][1].axis("off")
        axes[i][1].text(0.0, 0.5, textwrap.fill(f"{q.kind}: source {operands}", 60) + "\n→ decoded: “"
                        + decoded_texts[i] + "”\n   target: “" + q.target_text + "”", va="center", fontsize=7)
        _show(axes[i][2], decoded_images[i])
    axes[0][0].set_title("source", fontsize=8)
    axes[0][2].set_title("decoded image", fontsize=8)
    rows = [{"kind": q.kind, "terms": [t.to_json() for t in q.terms], "target_text": q.target_text,
             "decoded_text": decoded_texts[i]} for i, q in enumerate(queries)]
    caption = (f"Latent arithmetic with {recipe} ({model.aggregation}) on {p.dataset}/{p.split}: the source "
               "(image or caption) plus the signed caption/image operands, and the image and greedy caption decoded "
               "from the summed latents.")
    return FigureOutput(fig, caption, records=[record], values={"queries": rows})


@register_figure("vae-generation", params=GenerationParams)
def generation(spec: FigureSpec, ctx: Context) -> FigureOutput:
    p: GenerationParams = spec.params
    model, recipe, record = _load(p, ctx)
    ids, mask = model.encode_captions(p.captions)
    with torch.no_grad():
        q = model.components({"text": model.text_expert(ids, mask)})  # the text-only posterior's components
        mean = model.latent_text(ids, mask)
        gen = torch.Generator().manual_seed(p.seed)
        draws = []
        for _ in range(p.samples):  # a mixture component uniformly, then its Gaussian
            pick = torch.randint(len(q), (len(p.captions),), generator=gen)
            mu = torch.stack([q[int(k)].mu[i] for i, k in enumerate(pick)])
            std = torch.stack([torch.exp(0.5 * q[int(k)].logvar[i]) for i, k in enumerate(pick)])
            draws.append(mu + std * torch.randn(mu.shape, generator=gen))
        z = torch.stack([mean, *draws], 1)  # (captions, 1 + samples, Z)
        images = model.decode_image(z.flatten(0, 1)).view(len(p.captions), 1 + p.samples, 3, model.image_size,
                                                          model.image_size)
    cols = 1 + p.samples
    fig, axes = new_figure(0.9 * cols + 2.2, 0.95 * len(p.captions) + 0.3, nrows=len(p.captions), ncols=cols,
                           squeeze=False)
    for r, text in enumerate(p.captions):
        for c in range(cols):
            _show(axes[r][c], images[r, c])
        axes[r][0].set_ylabel(textwrap.fill(text, 20), rotation=0, ha="right", va="center", fontsize=7)
    axes[0][0].set_title("mean", fontsize=8)
    for c in range(1, cols):
        axes[0][c].set_title(f"sample {c}", fontsize=8)
    caption = (f"Caption → image with {recipe} ({model.aggregation}): decoded from the mean of q(z | caption) "
               f"and {p.samples} samples of it (seed {p.seed}).")
    values = {"captions": p.captions, "pixel_mean": np.round(images.mean((2, 3, 4)).numpy(), 4).tolist()}
    return FigureOutput(fig, caption, records=[record], values=values)
