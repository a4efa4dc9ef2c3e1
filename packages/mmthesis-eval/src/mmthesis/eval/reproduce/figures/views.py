"""Random-crop views of one training image (Figures 12, 35, 36), drawn with the recipes' own transform.

Why the recipe's transform: the figures argue that RandomResizedCrop with a
lower scale bound of 8% loses an image-text pair's semantics and 90% keeps them,
so the views must be exactly what ``mmthesis.data.transforms.train_transform``
gives a student. ``crop_views`` replays that Compose step by step under a
seeded RNG, only reading the crop box on the way, so its views are the ones
``train_transform(size, scale)`` returns for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torchvision.transforms import v2

from mmthesis.data.transforms import denormalise, train_transform


@dataclass
class CropViews:
    boxes: list[tuple[int, int, int, int]]  # (top, left, height, width) of each crop in the original image
    views: torch.Tensor  # (n, 3, size, size) normalised, as the student sees them
    image_size: tuple[int, int]  # (height, width) of the original

    @property
    def area_fractions(self) -> list[float]:
        h, w = self.image_size
        return [bh * bw / (h * w) for _, _, bh, bw in self.boxes]


def crop_views(image: Image.Image, size: int, scale: tuple[float, float], n: int, seed: int) -> CropViews:
    """``n`` draws of ``train_transform(size, scale)`` on ``image`` under ``torch.manual_seed(seed)`` (RNG forked)."""
    transform = train_transform(size, scale)
    crop = next(t for t in transform.transforms if isinstance(t, v2.RandomResizedCrop))
    boxes, views = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(n):
            out = image
            for t in transform.transforms:
                if t is crop:  # what RandomResizedCrop.forward does, keeping its parameters
                    params = t.make_params([out])
                    boxes.append((int(params["top"]), int(params["left"]), int(params["height"]), int(params["width"])))
                    out = t.transform(out, params)
                else:
                    out = t(out)
            views.append(out)
    return CropViews(boxes, torch.stack(views), (image.height, image.width))


def draw_crop_views(image: Image.Image, views: CropViews, title: str) -> Figure:
    """The original with each crop box outlined and numbered, then the views (denormalised) in the same colours."""
    from mmthesis.eval.reproduce.figures.run_parts import image_axes
    from mmthesis.eval.reproduce.figures.style import OKABE_ITO, new_figure

    n = len(views.boxes)
    fig, axes = new_figure(1.6 * (n + 1), 2.0, nrows=1, ncols=n + 1)
    axes[0].imshow(image)
    axes[0].set_title("original")
    for i, (top, left, h, w) in enumerate(views.boxes):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor=colour, linewidth=1.5))
        axes[0].text(left, top, str(i + 1), color=colour, fontsize=7, va="top", ha="left")
        ax = axes[i + 1]
        ax.imshow(denormalise(views.views[i]).permute(1, 2, 0).numpy())
        ax.set_title(f"view {i + 1}: {100 * views.area_fractions[i]:.0f}%", color=colour, fontsize=8)
        image_axes(ax, colour)
    image_axes(axes[0])
    fig.suptitle(title)
    return fig
