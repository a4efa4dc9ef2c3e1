"""T-CMLI's token -> teacher-patch matches of a trained model (Figure 29).

The match is the one the loss uses (``students.lightning_module.tcmli_kd``):
each caption token (CLS, SEP and padding excluded) goes through the student's
regression head and T-CMLI's shared projection g, each teacher patch through g,
and the token's patches are ranked by cosine similarity. The figure marks the
top-k patches per token and shows the token's similarity map over all patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from mmthesis.data.transforms import denormalise


@dataclass
class TokenMatches:
    token_positions: list[int]  # positions in the caption of the tokens matched (CLS/SEP/padding excluded)
    top: torch.Tensor  # (Z, k) patch indices, best first (row-major over the patch grid)
    similarity: torch.Tensor  # (Z, N) cosine similarity of each token with every patch (after g)


def valid_text_tokens(padding_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) True for caption tokens T-CMLI matches: not padding, not [CLS] (first) and not [SEP] (last)."""
    valid = ~padding_mask.bool()
    sep = valid.sum(1) - 1
    valid = valid.clone()
    valid[:, 0] = False
    valid[torch.arange(valid.shape[0]), sep] = False
    return valid


@torch.no_grad()
def token_patch_matches(
    student: nn.Module,
    projection: nn.Module,
    teacher_patches: torch.Tensor,
    text_ids: torch.Tensor,
    padding_mask: torch.Tensor,
    k: int = 5,
) -> list[TokenMatches]:
    """Per caption: each valid token's top-``k`` teacher patches by cosine after g (``teacher_patches`` (B, N, D))."""
    txt = student.forward_text(text_ids, padding_mask)
    s = F.normalize(projection(student.kd_head(txt.tokens)).float(), dim=-1)  # (B, L, d)
    t = F.normalize(projection(teacher_patches).float(), dim=-1)  # (B, N, d)
    sim = s @ t.transpose(1, 2)  # (B, L, N)
    valid = valid_text_tokens(padding_mask)
    out = []
    for b in range(sim.shape[0]):
        rows = valid[b].nonzero().flatten()
        out.append(TokenMatches(rows.tolist(), sim[b, rows].topk(min(k, sim.shape[-1]), dim=-1).indices, sim[b, rows]))
    return out


def draw_token_matches(image: torch.Tensor, tokens: list[str], matches: TokenMatches, grid: tuple[int, int],
                       caption: str) -> Figure:
    """Row 1: the image with each token's top-k patches outlined (best thickest); row 2: its similarity map."""
    from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure

    z = len(matches.token_positions)
    fig, axes = new_figure(1.4 * max(z, 2), 3.3, nrows=2, ncols=max(z, 2), squeeze=False)
    img = denormalise(image).permute(1, 2, 0).numpy()
    gh, gw = grid
    ph, pw = img.shape[0] / gh, img.shape[1] / gw
    for j, pos in enumerate(matches.token_positions):
        ax = axes[0, j]
        ax.imshow(img)
        for rank, patch in enumerate(matches.top[j].tolist()):
            r, c = divmod(patch, gw)
            ax.add_patch(Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False, edgecolor=OKABE_ITO[1 if rank else 3],
                                   linewidth=2.5 if rank == 0 else 1.0))
        ax.set_title(tokens[pos], fontsize=8)
        heat = axes[1, j].imshow(matches.similarity[j].reshape(gh, gw).numpy(), cmap="viridis", vmin=-1, vmax=1)
        axes[1, j].set_title("cosine to patches", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for j in range(z, axes.shape[1]):
        axes[0, j].set_visible(False)
        axes[1, j].set_visible(False)
    if z:
        fig.colorbar(heat, ax=axes[1].tolist(), shrink=0.8, label="cosine (after g)")
    fig.suptitle(caption, fontsize=8)
    return fig
