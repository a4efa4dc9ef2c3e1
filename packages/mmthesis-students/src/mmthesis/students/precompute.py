"""Precomputed teacher targets (option ``teacher.precomputed_targets``): run the frozen teacher once, not every step.

The teacher forward costs as much as the student's (BEiTv2 ViT-B/16 vs a 6+6-block
student), but its output depends only on the image. When the recipe allows it,
``precompute_teacher_targets`` embeds every training image once and writes a
safetensors file (targets (N, D) + the image ids), and training then reads the
row of each example's image instead of running the teacher.

What it changes: the teacher sees each image resized without augmentation (the
evaluation transform) instead of the student's random crop/flip of that step. With
the thesis's mild crop range [0.9, 1] this is close, but it is an approximation;
it is refused where the target depends on the view position by position (T-CMLI's
patch targets) or on a separate teacher view (``teacher.independent_augmentation``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

from mmthesis.core.checkpoint import load_weights, save_weights
from mmthesis.core.console import console, progress
from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.data.image_text import ImageTextPairs, PairImages
from mmthesis.data.transforms import eval_transform
from mmthesis.students.config import VLRecipeConfig
from mmthesis.teachers import TeacherModule

TARGETS, IDS, KIND = "targets", "mmthesis_image_ids", "mmthesis_target_kind"


def _stack(items: list[tuple[str, torch.Tensor]]) -> tuple[list[str], torch.Tensor]:
    return [i for i, _ in items], torch.stack([x for _, x in items])


def target_kind(config: VLRecipeConfig) -> str:
    """What a target file holds; a file is only used by recipes that need exactly that."""
    kd = config.loss.kd
    if kd == "tcmli" or config.task != "vl" or kd == "none":
        raise ConfigError(
            f"teacher.precomputed_targets does not apply to task={config.task} loss.kd={kd}",
            "it serves CLS and class-logit targets of the vision-language recipes (mse, contrastive, kl)",
        )
    norm = "logits" if kd == "kl" else ("final-norm-cls" if config.teacher.final_norm else "pre-norm-cls")
    return f"{config.teacher.name}:{norm}"


@torch.no_grad()
def precompute_teacher_targets(
    config: VLRecipeConfig,
    teacher: TeacherModule,
    datasets: list[ImageTextPairs],
    path: Path,
    batch_size: int = 256,
    num_workers: int = 0,
) -> Path:
    """Embed every image of ``datasets`` once with the frozen ``teacher``; write targets + ids to ``path``.

    Images are streamed from the shards (``num_workers`` DataLoader workers); only the targets are kept.
    """
    from mmthesis.students.lightning_module import distillation_target

    kind = target_kind(config)
    transform = eval_transform(config.model.img_size)
    images = ConcatDataset([PairImages(ds, transform) for ds in datasets])
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers, collate_fn=_stack)
    teacher.eval()
    ids: list[str] = []
    rows = []
    with progress() as bar:
        task = bar.add_task("teacher targets", total=len(images))
        for batch_ids, x in loader:
            ids += batch_ids
            rows.append(distillation_target(teacher(x), config.loss.kd, config.teacher.final_norm).float())
            bar.advance(task, len(batch_ids))
    if len(set(ids)) != len(ids):
        raise ConfigError(
            "image ids repeat across the training datasets", "precompute targets for one dataset at a time"
        )
    targets = torch.cat(rows)
    save_weights(path, {TARGETS: targets}, {IDS: json.dumps(ids), KIND: kind})
    console.print(f"wrote {len(ids)} teacher targets ({kind}, dim {targets.shape[1]}) to {path}")
    return path


class TargetTable:
    """The targets of a precomputed file, looked up by image id."""

    def __init__(self, path: str | Path, config: VLRecipeConfig) -> None:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        fix = f"precompute them for this recipe (`mmthesis train precompute {config.recipe} --out FILE`)"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            load_weights(path)  # a missing, empty, corrupt or pickled file: its own one-line error
            raise CheckpointError(f"teacher.precomputed_targets {str(path)!r} is not a safetensors file", fix) from e
        if meta.get(KIND) != target_kind(config):
            raise CheckpointError(
                f"{path} holds {meta.get(KIND)!r} targets, the recipe needs {target_kind(config)!r}", fix
            )
        state = load_weights(path)
        try:
            self.targets = state[TARGETS]
            ids = json.loads(meta[IDS])
            if self.targets.ndim != 2 or len(ids) != len(self.targets):
                raise ValueError(f"{len(ids)} ids for targets of shape {tuple(self.targets.shape)}")
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path} is not a complete teacher-target file ({e})", fix) from e
        self.rows = {image_id: i for i, image_id in enumerate(ids)}

    @property
    def dim(self) -> int:
        return int(self.targets.shape[1])

    def lookup(self, image_ids: list[str], device: torch.device) -> torch.Tensor:
        try:
            idx = [self.rows[i] for i in image_ids]
        except KeyError as e:
            raise CheckpointError(
                f"no precomputed target for image {e.args[0]!r}", "precompute targets for this training data"
            ) from None
        return self.targets[idx].to(device)
