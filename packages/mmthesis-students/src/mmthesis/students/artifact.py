"""A finished training run on disk: the one description of its folder, how it is written and how it is loaded.

A run folder is ``runs_root()/<recipe>-<scale>/<config-hash>/`` and holds

* ``result.json``        status, metrics and provenance (``mmthesis.core.results``);
* ``config.json``        the resolved recipe config (``VLRecipeConfig``);
* ``student.safetensors`` the trained student's state dict (read without unpickling); its metadata
  names the recipe, scale and task, and for the unimodal students the architecture
  (teacher class + config of the cropped encoder), so no teacher checkpoint is needed to rebuild it,
  and for the vision-language students the learnt ITC logit scales (``read_itc_log_scales``);
* ``tokenizer.json``     the tokenizer (absent for image-only students);
* ``losses.csv``         one row per optimisation step (``step``, ``loss``, ``itc``, ``kd``).
* ``logs/metrics.csv``   everything the run logged (Lightning's CSVLogger: ``train/*`` every
  ``log_every_n_steps``, ``val/*`` at each validation); read with ``read_logged_metrics``.

``load_trained(run)`` rebuilds the model of every run kind (``config.task``):

* ``vl``        the ``SSMKE`` student (image + text encoders and the shared block);
* ``image_kd``  the cropped Data2Vec2 image encoder (``mmthesis.teachers.crop(teacher, blocks)``,
  what ``UnimodalDistillationModule.student`` is);
* ``text_kd``   the cropped BERT text encoder.

Nothing here imports Lightning, so evaluation and other users of trained runs stay light.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmthesis.core.checkpoint import load_weights, save_weights
from mmthesis.core.config import from_dict, to_dict
from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.core.io import atomic_write_text
from mmthesis.core.results import RESULT_FILE, read_result
from mmthesis.data.tokenizers import Tokenizer
from mmthesis.students.config import Task, VLRecipeConfig

WEIGHTS = "student.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
LOSSES = "losses.csv"
METRICS = "logs/metrics.csv"  # Lightning CSVLogger(save_dir=run, name="logs", version="")
ITC_LOG_SCALES = "itc_log_scales"  # weights-metadata key: the learnt ITC temperatures (JSON, log space)
RESULT = RESULT_FILE
TASKS: tuple[Task, ...] = ("vl", "image_kd", "text_kd")
_TRAIN_HINT = "train it with `mmthesis train run RECIPE`"


@dataclass
class TrainedRun:
    """A loaded run: its config, tokenizer (None for image-only students), model (eval mode) and folder."""

    folder: Path
    config: VLRecipeConfig
    model: nn.Module  # SSMKE (vl) or the cropped teacher-class encoder (image_kd / text_kd)
    tokenizer: Tokenizer | None

    @property
    def task(self) -> Task:
        return self.config.task

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS


def run_name(config: VLRecipeConfig, scale: str) -> str:
    """``<recipe>-<scale>``: the folder under ``runs_root()`` that holds one folder per config hash."""
    return f"{config.recipe}-{scale}"


# ------------------------------------------------------------------------------ writing
def student_architecture(student: nn.Module) -> dict[str, Any] | None:
    """What rebuilds a unimodal student without its teacher: ``{"teacher": NAME, "config": {...}}``.

    None for the vision-language student (its architecture follows from the recipe config).
    """
    name, config = getattr(student, "teacher_name", ""), getattr(student, "config", None)
    if not name or not isinstance(config, dict):
        return None
    return {"teacher": name, "config": config}


def write_artifact(
    folder: Path,
    config: VLRecipeConfig,
    scale: str,
    student: nn.Module,
    tokenizer: Tokenizer | None,
    loss_rows: list[dict[str, float]] | None = None,
    itc_log_scales: Mapping[str, float] | None = None,
) -> None:
    """Write a run's weights, tokenizer, config and losses (each atomically); result.json is the recorder's.

    ``itc_log_scales``: the learnt ITC temperatures (log space) by module name, kept in the weights' metadata
    because they belong to the training module, not the student, and a run started from this one goes on
    with them (retrieval finetuning, §3.13).
    """
    meta = {"recipe": config.recipe, "scale": scale, "task": config.task}
    if config.task != "vl" and (arch := student_architecture(student)) is not None:
        meta["architecture"] = json.dumps(arch, sort_keys=True)
    if itc_log_scales:
        meta[ITC_LOG_SCALES] = json.dumps({k: float(v) for k, v in itc_log_scales.items()}, sort_keys=True)
    save_weights(folder / WEIGHTS, student.state_dict(), meta)
    if tokenizer is not None:
        tokenizer.save(folder / TOKENIZER)
    atomic_write_text(folder / CONFIG, json.dumps(to_dict(config), indent=2))
    if loss_rows is not None:
        write_losses(folder / LOSSES, loss_rows)


def _loss_keys(keys) -> list[str]:
    return sorted(keys, key=lambda k: (k != "step", k))


def append_loss_row(path: Path, row: dict[str, float]) -> None:
    """Append one row (header first if the file is new); the final ``write_losses`` rewrites atomically."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_loss_keys(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def write_losses(path: Path, rows: list[dict[str, float]]) -> None:
    """``losses.csv`` with every row (``step`` first, then the loss names), written atomically."""
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    writer = csv.DictWriter(_Sink(), fieldnames=_loss_keys({k for r in rows for k in r}))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, "".join(lines))


# ------------------------------------------------------------------------------ reading
def read_losses(run: Path) -> list[dict[str, float]]:
    """The rows of a run's ``losses.csv`` (empty cells dropped)."""
    path = Path(run) / LOSSES
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist", _TRAIN_HINT)
    with path.open(encoding="utf-8", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def read_logged_metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run's ``logs/metrics.csv`` as ``name -> [(step, value), ...]`` in logged order.

    Lightning's CSV logger writes one row per logging call with empty cells for the metrics not logged
    then; those are skipped, so each series has only real points (what the figures plot).
    """
    path = Path(run) / METRICS
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist", "train the run again with this version (it logs metrics.csv)")
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series


def check_finished(run: Path) -> Path:
    """``run`` if it is a folder with a finished run's result.json, else a one-line CheckpointError."""
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"run folder {run} does not exist", "pass a folder under $MMTHESIS_HOME/runs or run:NAME")
    result = read_result(run)
    if result is None:
        raise CheckpointError(f"{run} is not a training run folder (no readable {RESULT})", _TRAIN_HINT)
    if result.status != "finished":
        raise CheckpointError(f"{run} holds no finished training run (status {result.status})", _TRAIN_HINT)
    return run


def read_config(run: Path) -> VLRecipeConfig:
    """The resolved recipe config a run was trained with."""
    path = Path(run) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run folder is incomplete", _TRAIN_HINT)
    try:
        return from_dict(VLRecipeConfig, json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a valid recipe config ({str(e).splitlines()[0][:160]})", _TRAIN_HINT) from e


def read_tokenizer(run: Path, config: VLRecipeConfig | None = None) -> Tokenizer | None:
    """The run's tokenizer; None for an image-only student (``image_kd``)."""
    config = config or read_config(run)
    if config.task == "image_kd":
        return None
    path = Path(run) / TOKENIZER
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run folder is incomplete", _TRAIN_HINT)
    try:
        return Tokenizer.load(path)
    except Exception as e:  # tokenizers raises its own Exception type for a corrupt file
        raise CheckpointError(f"{path} is not a readable tokenizer ({str(e).splitlines()[0][:160]})", _TRAIN_HINT) from e


def read_weights(run: Path) -> dict[str, torch.Tensor]:
    """The student's state dict (safetensors only: no unpickling)."""
    path = Path(run) / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run folder is incomplete", _TRAIN_HINT)
    state = load_weights(path)  # a CheckpointError for empty / corrupt files
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no tensor state dict", _TRAIN_HINT)
    return state


def read_weights_metadata(run: Path) -> dict[str, str]:
    """The metadata written with the weights (recipe, scale, task, architecture); {} if none."""
    from safetensors import SafetensorError, safe_open

    path = Path(run) / WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e)[:160]})", _TRAIN_HINT) from e


def read_itc_log_scales(run: Path) -> dict[str, float]:
    """A vision-language run's learnt ITC log scales by module name (``log_scale`` = the final CLS's).

    Runs written before they were recorded in the weights' metadata have them in their last Lightning
    checkpoint (read with ``weights_only=True``).
    """
    run = Path(run)
    meta = read_weights_metadata(run)
    if ITC_LOG_SCALES in meta:
        return {k: float(v) for k, v in json.loads(meta[ITC_LOG_SCALES]).items()}
    last = run / "checkpoints" / "last.ckpt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True).get("state_dict", {})
        scales = {k: float(v) for k, v in state.items() if k.startswith("log_scale") and v.ndim == 0}
        if scales:
            return scales
    raise CheckpointError(f"{run} records no ITC logit scale (neither in {WEIGHTS} nor in {last})", _TRAIN_HINT)


# ------------------------------------------------------------------------------ rebuilding
def build_student(
    config: VLRecipeConfig, state: Mapping[str, torch.Tensor], tokenizer: Tokenizer | None, meta: Mapping[str, str]
) -> nn.Module:
    """An untrained model of the run's architecture, ready for ``state``."""
    if config.task == "vl":
        from mmthesis.students.model import SSMKE

        if tokenizer is None:
            raise CheckpointError(f"a vision-language run needs its {TOKENIZER}", _TRAIN_HINT)
        head = next((k for k in ("kd_head.1.weight", "shared.head.1.weight") if k in state), None)
        kd_dim = state[head].shape[0] if head else None
        return SSMKE(config.model, tokenizer.vocab_size, kd_dim, load_pretrained=False)
    if config.task not in TASKS:
        raise CheckpointError(f"unknown run kind {config.task!r}", f"runs are one of {', '.join(TASKS)}")
    if "architecture" in meta:
        from mmthesis.teachers import get_spec

        try:
            arch = json.loads(meta["architecture"])
            model = get_spec(arch["teacher"]).cls(arch["config"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"the architecture recorded in the weights' metadata is unusable ({e})", _TRAIN_HINT) from e
        model.teacher_name = arch["teacher"]
        return model
    return _cropped_teacher(config, tokenizer)  # runs written before the architecture was recorded


def _cropped_teacher(config: VLRecipeConfig, tokenizer: Tokenizer | None) -> nn.Module:
    """The crop of the recipe's teacher, built as training built it (needs the teacher checkpoint if any)."""
    from mmthesis.students.paths import resolve_checkpoint
    from mmthesis.teachers import crop, load_teacher

    m, t = config.model, config.teacher
    image = config.task == "image_kd"
    kw: dict[str, Any] = dict(t.overrides)
    if image:
        kw = {"img_size": m.img_size, "patch_size": m.patch_size, **kw}
    elif tokenizer is not None and t.checkpoint is None:
        kw = {"vocab_size": tokenizer.vocab_size, **kw}
    teacher = load_teacher(t.name, path=resolve_checkpoint(t.name, t.checkpoint), size=m.size, **kw)
    return crop(teacher, (m.image if image else m.text).blocks)


def load_trained(run: Path) -> TrainedRun:
    """Rebuild a finished run's trained student (weights loaded safely, strictly) with its config and tokenizer."""
    run = check_finished(Path(run))
    config = read_config(run)
    tokenizer = read_tokenizer(run, config)
    state = read_weights(run)
    meta = read_weights_metadata(run)
    if meta.get("task", config.task) != config.task:
        raise CheckpointError(
            f"{run / WEIGHTS} holds a {meta['task']} student but {CONFIG} says {config.task}", _TRAIN_HINT
        )
    model = build_student(config, state, tokenizer, meta)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:160])
        raise CheckpointError(f"{run / WEIGHTS} does not match the recipe's model ({first})", _TRAIN_HINT) from e
    if missing or unexpected:
        raise CheckpointError(
            f"{run / WEIGHTS} does not match the recipe's model (missing {missing[:3]}, unexpected {unexpected[:3]})",
            _TRAIN_HINT,
        )
    if hasattr(model, "freeze"):  # a teacher-class encoder: no grads, pinned eval mode (a copy can unfreeze)
        model.freeze()
    return TrainedRun(folder=run, config=config, model=model.eval(), tokenizer=tokenizer)

