"""Parts of a trained run that its ``student.safetensors`` does not hold: the teacher and T-CMLI's projection g.

Why from the Lightning checkpoint: a smoke run's teacher is a tiny random model
pre-fitted at the start of training (``teacher.prefit_steps``), and T-CMLI's
shared projection g belongs to the training module, not the student; both are in
the run's ``checkpoints/last.ckpt`` (read with ``weights_only=True``). A teacher
loaded from a released checkpoint is rebuilt from that file instead. The
checkpoint is only trusted when its student equals the run's final weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmthesis.core.errors import CheckpointError

LAST = Path("checkpoints") / "last.ckpt"


def checkpoint_state(run: Path) -> dict[str, torch.Tensor]:
    """The training module's state dict at the end of ``run`` (checked against the run's final student)."""
    from mmthesis.students.artifact import read_weights

    path = Path(run) / LAST
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run's teacher and training-module weights are gone",
                              "delete the run folder and train it again (`mmthesis train run RECIPE`)")
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    student = read_weights(Path(run))
    stale = [k for k, v in student.items() if f"student.{k}" not in state or not torch.equal(state[f"student.{k}"], v)]
    if stale:
        raise CheckpointError(f"{path} is not the run's final state (student differs at {stale[0]})",
                              "delete the run folder and train it again")
    return state


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(f"the run's checkpoint has no {prefix.rstrip('.')} weights", "train the recipe that has it")
    return out


def run_teacher(run: Path):
    """The frozen teacher ``run`` distilled from: its checkpoint's weights (smoke: random + pre-fitted) loaded strictly."""
    from mmthesis.students.artifact import read_config
    from mmthesis.students.lightning_module import build_teacher

    config = read_config(Path(run))
    teacher = build_teacher(config)
    if config.teacher.checkpoint is None:
        teacher.load_state_dict(sub_state(checkpoint_state(run), "teacher."), strict=True)
    return teacher.freeze()


# ------------------------------------------------------------------------------ inputs and captions of model figures
def chosen_pairs(dataset: str, split: str, scale: str, n: int, seed: int):
    """``n`` (image id, RGB image, first caption) of a prepared split: a seeded choice of its captioned images, read
    from the shards one by one (nothing else is decoded, so a 118k-image split costs no more than a small one)."""
    import numpy as np

    from mmthesis.data.image_text import open_sample_image
    from mmthesis.data.shard_index import SplitIndex
    from mmthesis.eval.data_access import resolve_dataset

    data = resolve_dataset(dataset, scale)
    data.manifest.split(split)  # one-line error for an unknown split
    index = SplitIndex(data.folder, split)
    rows = np.flatnonzero(index.captions > 0)
    picks = sorted(np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False).tolist())
    out = []
    for i in picks:
        sample = index.sample(int(rows[i]))
        meta = sample.get("json", {})
        captions = meta.get("captions", [meta["caption"]] if "caption" in meta else [""])
        out.append((str(meta.get("id", sample["__key__"])), open_sample_image(sample, data.folder), str(captions[0])))
    return out, data.folder


def task_data(task: str, scale: str) -> tuple[str, str, str]:
    """(dataset, split, the dataset at full scale) an eval task reads: ``retrieval-coco`` reads the shapes test split
    at smoke, where shapes stands in for coco."""
    from mmthesis.eval.harness import resolve_tasks

    t = resolve_tasks([task], scale)[0]
    return t.dataset, t.split, resolve_tasks([task], "full")[0].dataset


def data_standin(dataset: str, folder: str, scale: str) -> list[str]:
    """"X stands in for Y" when the prepared folder read is not the thesis's dataset ``dataset``."""
    if folder == dataset:
        return []
    return [f"the prepared {folder!r} data stand in for {dataset!r} at scale {scale}"]


def with_standins(caption: str, standins: list[str]) -> str:
    """The caption followed by the stand-ins as one sentence."""
    if not standins:
        return caption
    text = "; ".join(standins)
    return f"{caption} {text[0].upper()}{text[1:]}."


def teacher_description(config) -> str:
    """What the recipe's teacher is at this scale, for captions: released weights, a package's weights, or random."""
    t = config.teacher
    if t.checkpoint is None:
        steps = f", pre-fitted {t.prefit_steps} steps on the smoke images' labels" if t.prefit_steps else ""
        return f"a tiny randomly initialised {t.name} ({config.model.size}{steps})"
    if str(t.checkpoint).startswith("package:"):
        return f"{t.name} with the weights of {t.checkpoint}"
    return f"{t.name} ({t.checkpoint} checkpoint)"


def image_axes(ax, frame: str | None = None, width: float = 2.0) -> None:
    """An axes that shows a picture: no ticks, no grid, no spines, or all four spines in ``frame``'s colour."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(width)
