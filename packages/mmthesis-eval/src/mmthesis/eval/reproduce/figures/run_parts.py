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
