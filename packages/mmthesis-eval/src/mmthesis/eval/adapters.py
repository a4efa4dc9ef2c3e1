"""``--model SPEC`` -> one object every task can evaluate (the model interface of DESIGN.md).

SPEC forms:
  PATH | run:NAME[/HASH]     a finished mmthesis training run (folder with result.json)
  teacher:NAME[:CKPT]        a teacher of ``mmthesis teachers list``; CKPT ``default`` = the file that list
                             expects; no CKPT = random weights
                             (deterministic, seed 0; ``tiny`` size at smoke scale)
  open_clip:ARCH[:CKPT]      an open_clip model (optional extra ``mmthesis-eval[open_clip]``)
  pair:IMAGE_SPEC+TEXT_SPEC  two models as one, no training: images through IMAGE_SPEC, captions
                             through TEXT_SPEC (its tokenizer). The separator is the first ``+``
                             followed by ``run:``, ``teacher:`` or ``open_clip:``, so TEXT_SPEC starts
                             with one of those kinds; ``+`` and ``:`` elsewhere (paths, CKPT) are kept.
                             Table 10's unaligned baseline:
                             ``pair:teacher:data2vec2_image[:CKPT]+teacher:data2vec2_text[:CKPT]``

A text teacher tokenises as its model needs: ``data2vec2_text`` with the packaged fairseq GPT-2
BPE + dictionary (a random one gets the full dictionary's embedding rows so real ids fit), BERT
with the ``vocab.txt`` in its CKPT folder (none: the dataset's own tokenizer).

Besides ``encode_image`` / ``encode_text`` a task may need the tokenizer, the
image transform and, for finetuning, the token-level encoders; the adapter
carries them. Its ``fingerprint`` identifies the weights (not the path), so
cached embeddings are reused exactly when the same weights see the same data.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.core.checkpoint import weights_digest
from mmthesis.core.errors import CheckpointError, ConfigError, MMThesisError
from mmthesis.core.io import sha256_file, sha256_json
from mmthesis.core.registry import unknown_name
from mmthesis.core.results import finished_run_folder
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
        """Fail up front (one line) if this model cannot serve ``what`` (image / text / image_backbone / text_backbone
        / generator)."""
        if what == "generator":
            from mmthesis.eval.generative import require_generator

            require_generator(self.model, self.spec, "this task")
            return
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
    return finished_run_folder(spec[4:], prefix="run:", train_command="mmthesis train run")


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
    # the tensors and sorted metadata, not the file bytes: older files have their metadata in a random order
    fingerprint = sha256_json({"kind": "mmthesis-run", "weights": weights_digest(run / WEIGHTS)})[:16]
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


def _teacher_tokenizer(name: str, ckpt: str) -> Any:
    """The tokenizer a text teacher's weights expect; None = the dataset's own (BERT without a vocab.txt)."""
    from mmthesis.data.gpt2_bpe import FairseqTokenizer
    from mmthesis.data.tokenizers import bert_wordpiece

    if name == "data2vec2_text":  # fairseq RoBERTa format: GPT-2 BPE mapped through dict.txt (REFERENCE.md §3.0)
        return FairseqTokenizer()
    vocab = Path(ckpt) / "vocab.txt" if ckpt else None
    return bert_wordpiece(vocab) if vocab is not None and vocab.is_file() else None


def load_teacher_model(spec: str, scale: str) -> LoadedModel:
    from mmthesis.data.gpt2_bpe import FairseqTokenizer
    from mmthesis.teachers import load_teacher
    from mmthesis.teachers.registry import get_spec

    _, _, rest = spec.partition(":")
    name, _, ckpt = rest.partition(":")
    if ckpt == "default":  # the file `mmthesis teachers list` expects, as recipes' `checkpoint: default`
        from mmthesis.teachers import get_spec

        expected = get_spec(name).expected_path()
        if not expected.exists():
            raise CheckpointError(
                f"checkpoint of {name} not found at {expected}",
                "download the released weights there (see `mmthesis teachers list`) or write teacher:NAME:PATH",
            )
        ckpt = str(expected)
    if not name:
        raise ConfigError(
            f"model spec {spec!r} names no teacher", "write teacher:NAME[:CKPT], names in `mmthesis teachers list`"
        )
    size = "tiny" if scale == "smoke" and not ckpt else "base"
    tokenizer = _teacher_tokenizer(name, ckpt)
    if ckpt:
        teacher = load_teacher(name, path=ckpt, size=size)
        fingerprint = sha256_json({"kind": "teacher", "name": name, "weights": _path_digest(Path(ckpt))})[:16]
    else:
        # a random (tiny) Data2Vec2 text model still reads real fairseq ids: the full dictionary's embedding rows
        overrides = (
            {"vocab_size": get_spec(name).presets["base"]["vocab_size"]}
            if isinstance(tokenizer, FairseqTokenizer)
            else {}
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights, but the same ones every time: the embedding cache stays valid
            teacher = load_teacher(name, path=None, size=size, **overrides)
        fingerprint = sha256_json({"kind": "teacher", "name": name, "size": size, "random_seed": 0, **overrides})[:16]
    rows = teacher.config.get("vocab_size")
    if tokenizer is not None and rows is not None and tokenizer.vocab_size > rows:
        raise CheckpointError(
            f"teacher {name} has {rows} token embeddings but its tokenizer emits ids up to {tokenizer.vocab_size - 1}",
            "pass the checkpoint trained with that vocabulary",
        )
    image = teacher.modality == "image"
    return LoadedModel(
        spec=spec,
        fingerprint=fingerprint,
        model=TeacherEncoder(teacher).eval(),
        image_transform=eval_transform(int(teacher.config.get("img_size", 224))) if image else None,
        tokenizer=tokenizer,
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


# ------------------------------------------------------------------------------ pairs
class PairEncoder(nn.Module):
    """Two independently trained models behind one interface: images through one, texts through the other."""

    def __init__(self, image_model: nn.Module, text_model: nn.Module) -> None:
        super().__init__()
        self.image_model = image_model
        self.text_model = text_model

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_model.encode_image(images)

    def encode_text(self, text_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        return self.text_model.encode_text(text_ids, padding_mask)


PAIR_USAGE = "write pair:IMAGE_SPEC+TEXT_SPEC, e.g. pair:teacher:data2vec2_image+teacher:data2vec2_text"


def split_pair(spec: str) -> tuple[str, str]:
    """``pair:A+B`` -> ``(A, B)``, split at the first ``+`` that starts a ``KIND:`` spec."""
    body = spec.removeprefix("pair:")
    from mmthesis.eval.model_kinds import PLUGIN_KINDS

    kinds = "|".join(re.escape(k) for k in [*MODEL_KINDS, *PLUGIN_KINDS])
    found = re.search(rf"\+(?=(?:{kinds}):)", body)
    image, text = (body[: found.start()], body[found.end():]) if found else ("", "")
    if not image or not text:
        raise ConfigError(f"model spec {spec!r} is not an image spec and a text spec joined by '+'", PAIR_USAGE)
    for side in (image, text):
        if side.startswith("pair:"):
            raise ConfigError(f"model spec {spec!r} nests a pair ({side!r}); each side is one model", PAIR_USAGE)
    return image, text


def load_pair(spec: str, scale: str) -> LoadedModel:
    """``pair:IMAGE_SPEC+TEXT_SPEC``: Table 10's unaligned baseline (two unimodal encoders' CLS, no training).

    Images (transform, encoder, backbone) come from the image side; captions (tokenizer, max length,
    encoder) from the text side. No text backbone: token-level text tasks take the text side's own spec.
    """
    image_spec, text_spec = split_pair(spec)
    image = load_model(image_spec, scale)
    if image.image_transform is None:
        raise ModalityMissingError(
            f"the image side {image_spec!r} of {spec!r} has no image encoder", "put an image model before the '+'"
        )
    text = load_model(text_spec, scale)
    if not text.info.get("has_text"):
        raise ModalityMissingError(
            f"the text side {text_spec!r} of {spec!r} has no text encoder", "put a text model after the '+'"
        )
    return LoadedModel(
        spec=spec,
        fingerprint=sha256_json({"kind": "pair", "image": image.fingerprint, "text": text.fingerprint})[:16],
        model=PairEncoder(image.model, text.model).eval(),
        image_transform=image.image_transform,
        tokenizer=text.tokenizer,
        max_text_length=text.max_text_length,
        image_backbone=image.image_backbone,
        info={"kind": "pair", "has_text": True, "image": {"spec": image_spec, **image.info},
              "text": {"spec": text_spec, **text.info}},
    )


# ------------------------------------------------------------------------------ entry point
def _load_open_clip(spec: str, scale: str) -> LoadedModel:
    from mmthesis.eval.open_clip_adapter import load_open_clip

    return load_open_clip(spec)


# ``--model KIND:...`` -> its loader (a SPEC without a known ``KIND:`` is a run folder path)
MODEL_KINDS: dict[str, Callable[[str, str], LoadedModel]] = {
    "run": lambda spec, scale: load_run(spec),
    "teacher": load_teacher_model,
    "open_clip": _load_open_clip,
    "pair": load_pair,
}


def load_model(spec: str, scale: str = "full") -> LoadedModel:
    """Resolve ``--model SPEC`` (see the module docstring)."""
    from mmthesis.eval.model_kinds import PLUGIN_KINDS, plugin_loader

    kind, sep, _ = spec.partition(":")
    if sep and kind in MODEL_KINDS:
        return MODEL_KINDS[kind](spec, scale)
    if sep and kind in PLUGIN_KINDS:  # added by a package above eval (model_kinds.py)
        return plugin_loader(kind)(spec, scale)
    if sep and kind.replace("_", "").replace("-", "").isalnum() and not Path(spec).expanduser().exists():
        known = [*MODEL_KINDS, *PLUGIN_KINDS]
        raise unknown_name("model spec kind", kind, known, also="(as KIND:...), or give a run folder path")
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
