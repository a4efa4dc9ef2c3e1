"""``--model SPEC`` -> one object every task can evaluate (the model interface of DESIGN.md).

SPEC forms:
  PATH | run:NAME[/HASH]     a finished mmthesis training run (folder with result.json)
  teacher:NAME[:CKPT]        a teacher of ``mmthesis teachers list``; no CKPT = random weights
                             (deterministic, seed 0; ``tiny`` size at smoke scale)
  open_clip:ARCH[:CKPT]      an open_clip model (optional extra ``mmthesis-eval[open_clip]``)

Besides ``encode_image`` / ``encode_text`` a task may need the tokenizer, the
image transform and, for finetuning, the token-level encoders; the adapter
carries them. Its ``fingerprint`` identifies the weights (not the path), so
cached embeddings are reused exactly when the same weights see the same data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.core.errors import CheckpointError, ConfigError, MMThesisError
from mmthesis.core.io import sha256_file, sha256_json
from mmthesis.core.paths import runs_root
from mmthesis.core.registry import unknown_name
from mmthesis.core.results import read_result
from mmthesis.data.transforms import eval_transform


class ModalityMissingError(MMThesisError):
    """A task needs an encoder the model does not have (e.g. text for an image-only teacher)."""


@dataclass
class LoadedModel:
    spec: str
    fingerprint: str
    model: nn.Module  # has encode_image / encode_text (either may raise ModalityMissingError)
    image_transform: Callable[[Any], torch.Tensor] | None
    tokenizer: Any = None  # ``encode_batch(texts, max_length) -> (ids, padding_mask)``; None = the dataset's
    max_text_length: int = 64
    image_backbone: nn.Module | None = None  # tokens: ``forward(images).last_hidden_state``, ``.blocks``
    text_backbone: nn.Module | None = None  # tokens: ``forward(ids, padding_mask).last_hidden_state``
    info: dict[str, Any] = field(default_factory=dict)

    def require(self, what: str) -> None:
        """Fail up front (one line) if this model cannot serve ``what`` (image / text / image_backbone / text_backbone)."""
        ok = {
            "image": self.image_transform is not None,
            "text": bool(self.info.get("has_text")),
            "image_backbone": self.image_backbone is not None,
            "text_backbone": self.text_backbone is not None,
        }
        if not ok.get(what, True):
            raise ModalityMissingError(
                f"model {self.spec} has no {what.replace('_', ' ')}",
                "pick a task for the modality it has (see `mmthesis eval list`)",
            )


# ------------------------------------------------------------------------------ mmthesis runs
def resolve_run(spec: str) -> Path:
    """``run:NAME[/HASH]`` or a folder path -> the run folder; ambiguity is an error, not a guess."""
    if not spec.startswith("run:"):
        return Path(spec).expanduser()
    name = spec[4:]
    folder = runs_root() / name
    if (folder / "result.json").is_file():
        return folder
    finished = (
        sorted(p for p in folder.glob("*/") if (r := read_result(p)) is not None and r.status == "finished")
        if folder.is_dir()
        else []
    )
    if not finished:
        raise CheckpointError(
            f"no finished training run named {name!r} under {runs_root()}",
            f"train it with `mmthesis train run {name.rsplit('-', 1)[0]}` or pass the run folder",
        )
    if len(finished) > 1:
        raise CheckpointError(
            f"{len(finished)} finished runs named {name!r}",
            f"pick one: run:{name}/{finished[0].name} (or pass the folder)",
        )
    return finished[0]


def load_run(spec: str) -> LoadedModel:
    """A finished training run of any kind, through ``mmthesis.students.artifact`` (no Lightning import).

    ``vl``: the S-SMKE student, both modalities. ``image_kd``: the cropped Data2Vec2 student behind the
    model interface (normalised CLS), no text. ``text_kd``: the cropped BERT student (normalised CLS),
    no image; its teacher's checkpoint is where GLUE takes the pretrained pooler from.
    """
    from mmthesis.students.artifact import RESULT, WEIGHTS, load_trained

    run = resolve_run(spec)
    if not (run / RESULT).is_file():
        raise CheckpointError(
            f"{run} is not a training run folder (no {RESULT})",
            "pass a folder under $MMTHESIS_HOME/runs/<recipe>-<scale>/ or run:NAME",
        )
    trained = load_trained(run)
    config, model = trained.config, trained.model
    fingerprint = sha256_json({"kind": "mmthesis-run", "weights": sha256_file(run / WEIGHTS)})[:16]
    info: dict[str, Any] = {"kind": "mmthesis-run", "run": str(run), "recipe": config.recipe}
    if config.task == "image_kd":
        return LoadedModel(
            spec=spec,
            fingerprint=fingerprint,
            model=TeacherEncoder(model).eval(),
            image_transform=eval_transform(config.model.img_size),
            image_backbone=model,
            info={**info, "task": config.task, "has_text": False},
        )
    if config.task == "text_kd":
        return LoadedModel(
            spec=spec,
            fingerprint=fingerprint,
            model=TeacherEncoder(model).eval(),
            image_transform=None,
            tokenizer=trained.tokenizer,
            max_text_length=config.data.max_text_length,
            text_backbone=model,
            # the student is the first layers of its teacher: GLUE re-attaches that checkpoint's pooler
            info={**info, "task": config.task, "has_text": True, "text_encoder": config.teacher.name,
                  "text_checkpoint": config.teacher.checkpoint},
        )
    return LoadedModel(
        spec=spec,
        fingerprint=fingerprint,
        model=model,
        image_transform=eval_transform(config.model.img_size),
        tokenizer=trained.tokenizer,
        max_text_length=config.data.max_text_length,
        image_backbone=model.image_encoder,
        text_backbone=model.text_encoder,
        info={**info, "has_text": True,
              # where the text encoder's weights started (GLUE re-attaches that checkpoint's pooler)
              "text_encoder": config.model.text.name, "text_checkpoint": config.model.text.checkpoint},
    )


# ------------------------------------------------------------------------------ teachers
class TeacherEncoder(nn.Module):
    """A unimodal teacher behind the model interface: normalised CLS of its last hidden state."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.modality = getattr(teacher, "modality", "image")

    def _check(self, modality: str) -> None:
        if self.modality != modality:
            name = getattr(self.teacher, "teacher_name", "teacher")
            raise ModalityMissingError(
                f"teacher {name} is a {self.modality} model and has no {modality} encoder",
                "use a task for its modality",
            )

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self._check("image")
        return F.normalize(self.teacher(images).cls.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        self._check("text")
        return F.normalize(self.teacher(text_ids, padding_mask).cls.float(), dim=-1)


def load_teacher_model(spec: str, scale: str) -> LoadedModel:
    from mmthesis.data.tokenizers import bert_wordpiece
    from mmthesis.teachers import load_teacher

    _, _, rest = spec.partition(":")
    name, _, ckpt = rest.partition(":")
    if not name:
        raise ConfigError(
            f"model spec {spec!r} names no teacher", "write teacher:NAME[:CKPT], names in `mmthesis teachers list`"
        )
    size = "tiny" if scale == "smoke" and not ckpt else "base"
    if ckpt:
        teacher = load_teacher(name, path=ckpt, size=size)
        fingerprint = sha256_json({"kind": "teacher", "name": name, "weights": _path_digest(Path(ckpt))})[:16]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights, but the same ones every time: the embedding cache stays valid
            teacher = load_teacher(name, path=None, size=size)
        fingerprint = sha256_json({"kind": "teacher", "name": name, "size": size, "random_seed": 0})[:16]
    image = teacher.modality == "image"
    vocab = Path(ckpt) / "vocab.txt" if ckpt else None
    return LoadedModel(
        spec=spec,
        fingerprint=fingerprint,
        model=TeacherEncoder(teacher).eval(),
        image_transform=eval_transform(int(teacher.config.get("img_size", 224))) if image else None,
        tokenizer=bert_wordpiece(vocab) if vocab is not None and vocab.is_file() else None,
        image_backbone=teacher if image else None,
        text_backbone=None if image else teacher,
        info={"kind": "teacher", "teacher": name, "size": size, "checkpoint": ckpt or None, "has_text": not image},
    )


def _path_digest(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        return sha256_json(
            {p.relative_to(path).as_posix(): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}
        )
    raise CheckpointError(f"checkpoint {path} does not exist", "pass an existing file or folder after the last ':'")


# ------------------------------------------------------------------------------ entry point
def _load_open_clip(spec: str, scale: str) -> LoadedModel:
    from mmthesis.eval.open_clip_adapter import load_open_clip

    return load_open_clip(spec)


# ``--model KIND:...`` -> its loader (a SPEC without a known ``KIND:`` is a run folder path)
MODEL_KINDS: dict[str, Callable[[str, str], LoadedModel]] = {
    "run": lambda spec, scale: load_run(spec),
    "teacher": load_teacher_model,
    "open_clip": _load_open_clip,
}


def load_model(spec: str, scale: str = "full") -> LoadedModel:
    """Resolve ``--model SPEC`` (see the module docstring)."""
    kind, sep, _ = spec.partition(":")
    if sep and kind in MODEL_KINDS:
        return MODEL_KINDS[kind](spec, scale)
    if sep and kind.replace("_", "").replace("-", "").isalnum() and not Path(spec).expanduser().exists():
        raise unknown_name("model spec kind", kind, MODEL_KINDS, also="(as KIND:...), or give a run folder path")
    return load_run(spec)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Put ``module`` in eval mode for the block, restoring its previous mode afterwards."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
