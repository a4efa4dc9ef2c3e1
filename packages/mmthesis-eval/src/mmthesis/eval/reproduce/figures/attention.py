"""Attention maps of the teachers: BERT's first-layer heads (Figure 20) and DINO's last-layer CLS attention (Figure 42).

Both are read from the model as it runs, not re-implemented: BERT's through
transformers' ``output_attentions`` (eager attention, the one implementation
that returns the probabilities), DINO's from the last timm block's own ``qkv``
projection and scale, so the maps are the softmax weights the forward pass uses
(the tests check both against a hand computation and against the block output).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from mmthesis.core.errors import ConfigError
from mmthesis.data.tokenizers import Tokenizer
from mmthesis.data.transforms import denormalise


# ------------------------------------------------------------------------------ BERT (Figure 20)
@dataclass
class TokenAttention:
    tokens: list[str]  # the wordpieces, [CLS] and [SEP] included
    weights: torch.Tensor  # (T, T): row = query token, column = key token; rows sum to 1


@torch.no_grad()
def bert_attention(teacher, tokenizer: Tokenizer, sentence: str, layer: int = 0, head: int = 0) -> TokenAttention:
    """The attention probabilities of ``head`` in ``layer`` of a ``teachers.BERT`` (or an HF ``BertModel``)."""
    model = getattr(teacher, "model", teacher)
    heads, layers = model.config.num_attention_heads, model.config.num_hidden_layers
    if not (0 <= layer < layers and 0 <= head < heads):
        raise ConfigError(f"BERT has {layers} layers of {heads} heads; layer {layer} head {head} does not exist",
                          f"use layer 0..{layers - 1} and head 0..{heads - 1}")
    ids = torch.tensor(tokenizer.encode_ids([sentence], max_length=model.config.max_position_embeddings))
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True, return_dict=True)
    finally:
        model.set_attn_implementation(before)
    tokens = [tokenizer.hf.id_to_token(int(i)) or "[UNK]" for i in ids[0]]
    return TokenAttention(tokens, out.attentions[layer][0, head].float())


def draw_token_attention(maps: list[TokenAttention], titles: list[str]) -> Figure:
    """One heat map per sentence (query tokens down, key tokens across), weights 0..1."""
    from mmthesis.eval.reproduce.figures.style import new_figure

    widths = [max(len(m.tokens), 2) for m in maps]
    fig, axes = new_figure(1.2 + 0.32 * sum(widths) + 1.2 * len(maps), 0.5 + 0.3 * max(widths), nrows=1,
                           ncols=len(maps), gridspec_kw={"width_ratios": widths}, squeeze=False)
    image = None
    for ax, m, title in zip(axes[0], maps, titles, strict=True):
        image = ax.imshow(m.weights.numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(m.tokens)), m.tokens, rotation=90)
        ax.set_yticks(range(len(m.tokens)), m.tokens)
        ax.set_xlabel("key token")
        ax.set_ylabel("query token")
        ax.set_title(title, fontsize=8)
        ax.grid(False)
    fig.colorbar(image, ax=axes[0].tolist(), label="attention weight", shrink=0.8)
    return fig


# ------------------------------------------------------------------------------ DINO (Figure 42)
@torch.no_grad()
def vit_cls_attention(teacher, images: torch.Tensor) -> torch.Tensor:
    """(B, heads, gh, gw): the last block's attention of CLS to every patch of a timm-ViT teacher (DINO).

    The block input is the teacher's own hidden state before its last block; q and k come from that
    block's ``norm1`` and ``qkv`` (with its q/k norms and scale), as timm's ``Attention.forward`` computes them.
    """
    model = getattr(teacher, "model", None)
    if model is None or not hasattr(model, "blocks") or not hasattr(model.blocks[-1].attn, "qkv"):
        raise ConfigError(f"{type(teacher).__name__} is not a timm ViT teacher", "use the DINO teacher (dino_vitb16)")
    out = teacher(images)
    x = out.hidden_states[-2] if len(out.hidden_states) > 1 else out.embeddings
    block = model.blocks[-1]
    attn = block.attn
    b, n, d = x.shape
    qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
    prefix = n - model.patch_embed.num_patches  # CLS (+ register tokens)
    gh, gw = model.patch_embed.grid_size
    return weights[:, :, 0, prefix:].reshape(b, attn.num_heads, gh, gw)


def draw_cls_attention(images: torch.Tensor, maps: torch.Tensor, captions: list[str]) -> Figure:
    """Per pair: the image (denormalised) with its caption, and the head-averaged CLS attention over it."""
    import textwrap

    from mmthesis.eval.reproduce.figures.run_parts import image_axes
    from mmthesis.eval.reproduce.figures.style import new_figure

    n = images.shape[0]
    fig, axes = new_figure(1.9 * n, 4.2, nrows=2, ncols=n, squeeze=False)
    size = images.shape[-2:]
    for i in range(n):
        img = denormalise(images[i]).permute(1, 2, 0).numpy()
        axes[0, i].imshow(img)
        axes[0, i].set_title("\n".join(textwrap.wrap(captions[i], 24)[:3]), fontsize=7)
        up = torch.nn.functional.interpolate(maps[i][None, None], size=size, mode="nearest")[0, 0]
        axes[1, i].imshow(img)
        axes[1, i].imshow(up.numpy(), cmap="inferno", alpha=0.6)
        axes[1, i].set_title("CLS attention (mean of heads)", fontsize=7)
    for ax in axes.flat:
        image_axes(ax)
    return fig
