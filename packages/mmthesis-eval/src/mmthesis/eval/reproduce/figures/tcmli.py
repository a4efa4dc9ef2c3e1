"""T-CMLI's token -> teacher-patch matches of a trained model (Figure 29).

The match is the one the loss uses (``students.lightning_module.tcmli_kd``):
each caption token (CLS, SEP and padding excluded) goes through the student's
regression head and T-CMLI's shared projection g, each teacher patch through g,
and the token's patches are ranked by cosine similarity. The figure marks the
top-k patches per token and shows the token's similarity map over all patches.
"""

from __future__ import annotations

import textwrap
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


@dataclass
class MatchPanel:
    image: torch.Tensor  # (3, H, W) normalised, as the teacher saw it
    tokens: list[str]  # every caption token (positions index it)
    matches: TokenMatches
    caption: str


def draw_token_matches(panels: list[MatchPanel], grid: tuple[int, int], max_tokens: int = 8) -> Figure:
    """Per pair two rows: each token's top-k patches outlined on the image (best thick, vermillion), and its cosine
    similarity map over the patch grid; at most ``max_tokens`` tokens per pair."""
    from mmthesis.eval.reproduce.figures.run_parts import image_axes
    from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure

    cols = max(2, min(max_tokens, max(len(p.matches.token_positions) for p in panels)))
    fig, axes = new_figure(1.3 * cols, 2.9 * len(panels), nrows=2 * len(panels), ncols=cols, squeeze=False)
    gh, gw = grid
    heat = None
    for i, panel in enumerate(panels):
        img = denormalise(panel.image).permute(1, 2, 0).numpy()
        ph, pw = img.shape[0] / gh, img.shape[1] / gw
        top_row, heat_row = axes[2 * i], axes[2 * i + 1]
        top_row[0].set_ylabel("\n".join(textwrap.wrap(panel.caption, 18)[:4]), fontsize=6)
        shown = panel.matches.token_positions[:cols]
        for j, pos in enumerate(shown):
            ax = top_row[j]
            ax.imshow(img)
            for rank, patch in enumerate(panel.matches.top[j].tolist()):
                r, c = divmod(patch, gw)
                ax.add_patch(Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False,
                                       edgecolor=OKABE_ITO[3 if rank == 0 else 1], linewidth=2.5 if rank == 0 else 1.0))
            ax.set_title(panel.tokens[pos], fontsize=8)
            heat = heat_row[j].imshow(panel.matches.similarity[j].reshape(gh, gw).numpy(), cmap="viridis", vmin=-1, vmax=1)
        for j in range(len(shown), cols):
            top_row[j].set_visible(False)
            heat_row[j].set_visible(False)
    for ax in axes.flat:
        image_axes(ax)
    if heat is not None:
        fig.colorbar(heat, ax=axes.flatten().tolist(), shrink=0.5, label="cosine similarity after g")
    return fig
