"""``load_teacher``, ``inspect_checkpoint`` and ``convert_checkpoint``: file -> converter -> module.

The path a real checkpoint takes: ``reader.read_checkpoint`` (safe reading) ->
``formats.detect_format`` -> the spec's converter (explicit key map) ->
``resolve_config`` (preset + shapes + overrides) -> ``converters.load_into``
(strict: nothing missing, nothing left over, every shape equal) -> frozen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmthesis.core.checkpoint import save_weights
from mmthesis.core.errors import CheckpointError
from mmthesis.teachers.base import TeacherModule
from mmthesis.teachers.converters.common import CheckReport, Converted, check, load_into, map_keys
from mmthesis.teachers.formats import FORMAT_TEACHER, MMTHESIS, detect_format
from mmthesis.teachers.reader import RawCheckpoint, read_checkpoint
from mmthesis.teachers.registry import TeacherSpec, get_spec, resolve_config

log = logging.getLogger("mmthesis.teachers")
EXTRA = "extra."  # prefix of ``Converted.extras`` in our converted files (not part of the model)


@dataclass
class Inspection:
    path: str
    container: str
    format: str
    teacher: str
    config: dict[str, Any]
    params: int
    report: CheckReport
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _convert(raw: RawCheckpoint, name: str | None) -> tuple[TeacherSpec, Converted]:
    fmt = detect_format(raw.state, raw.metadata, where=str(raw.path))
    if fmt == MMTHESIS:
        stored = raw.metadata["mmthesis_teacher"]
        if name is not None and name != stored:
            raise CheckpointError(f"{raw.path} holds teacher {stored!r}, not {name!r}", f"load it as {stored!r}")
        spec = get_spec(stored)
        conv = map_keys(MMTHESIS, raw.state, [(r".+", r"\g<0>")], (EXTRA,))
        conv.config = json.loads(raw.metadata.get("mmthesis_config", "{}"))
        conv.extras = {k[len(EXTRA):]: v for k, v in raw.state.items() if k.startswith(EXTRA)}
        return spec, conv
    spec = get_spec(name or FORMAT_TEACHER[fmt])
    if fmt != spec.format and FORMAT_TEACHER.get(fmt) != spec.name:  # a teacher may accept several layouts
        raise CheckpointError(f"{raw.path} is a {fmt} checkpoint, not one for teacher {spec.name} ({spec.format})",
                              f"load it as {FORMAT_TEACHER[fmt]!r}")
    return spec, spec.convert(raw.state, raw.cfg)


def _build(spec: TeacherSpec, conv: Converted, size: str, overrides: dict[str, Any], meta: bool = False) -> TeacherModule:
    cfg = resolve_config(spec, size, conv.config, overrides)
    if meta:
        with torch.device("meta"):
            model = spec.cls(cfg)
    else:
        model = spec.cls(cfg)
    model.teacher_name = spec.name
    return model


def load_teacher(name: str, path: str | Path | None = None, size: str = "base", *, trust: bool = False,
                 freeze: bool = True, **overrides: Any) -> TeacherModule:
    """A teacher in eval mode with ``requires_grad=False`` that stays in eval mode.

    ``path=None`` gives random weights (smoke scale; logged). Otherwise the file's
    format is detected and converted; any missing, unexpected or mis-shaped key
    is an error. ``trust`` allows unrestricted unpickling (avoid; convert once).
    """
    spec = get_spec(name)
    if path is None:
        from mmthesis.teachers.registry import build_model

        model = build_model(name, size, **overrides)
        log.warning("teacher %s (%s) has random weights: no checkpoint given (smoke scale only)", name, size)
    else:
        raw = read_checkpoint(path, trust=trust)
        spec, conv = _convert(raw, name)
        for note in conv.notes:
            log.info("%s: %s", path, note)
        model = _build(spec, conv, size, overrides)
        load_into(model, conv, str(path))
    return model.freeze() if freeze else model


def inspect_checkpoint(path: str | Path, name: str | None = None, size: str = "base", trust: bool = False) -> Inspection:
    """What a file is and whether it loads: format, architecture, params, missing/unexpected keys."""
    raw = read_checkpoint(path, trust=trust)
    spec, conv = _convert(raw, name)
    model = _build(spec, conv, size, {}, meta=True)
    return Inspection(
        path=str(path), container=raw.container, format=conv.format, teacher=spec.name, config=dict(model.config),
        params=sum(p.numel() for p in model.parameters()), report=check(model, conv), dropped=conv.dropped,
        notes=conv.notes,
    )


def convert_checkpoint(src: str | Path, dst: str | Path, name: str | None = None, size: str = "base",
                       trust: bool = False) -> Inspection:
    """Convert ``src`` to a safetensors file in our layout that ``load_teacher`` reads without pickle."""
    raw = read_checkpoint(src, trust=trust)
    spec, conv = _convert(raw, name)
    model = _build(spec, conv, size, {}, meta=True)
    rep = check(model, conv)
    if not rep.ok:
        first = (rep.missing or rep.unexpected or rep.mismatched)[0]
        raise CheckpointError(f"{src} does not convert cleanly to {spec.name} ({first})",
                              f"run `mmthesis teachers inspect {src}` to see every key")
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()}
    tensors = {k: v.detach().contiguous() for k, v in conv.state_dict.items()}
    tensors |= {EXTRA + k: v.detach().contiguous() for k, v in conv.extras.items()}
    save_weights(dst, tensors, {"mmthesis_teacher": spec.name, "mmthesis_config": json.dumps(cfg, sort_keys=True),
                                "mmthesis_source_format": conv.format, "mmthesis_source": Path(src).name})
    return Inspection(str(dst), "safetensors", conv.format, spec.name, cfg, sum(p.numel() for p in model.parameters()),
                      rep, conv.dropped, conv.notes)


def load_pooler(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor] | None:
    """The pretrained BERT pooler a text checkpoint carries beside the encoder, or None if it has none.

    Returns ``{"weight": (D, D), "bias": (D,)}`` for an ``nn.Linear`` (the pooler is that Linear + tanh on
    the CLS). Reads HF folders / weights files and our converted files; the teacher never uses it.
    """
    raw = read_checkpoint(path, trust=trust)
    _, conv = _convert(raw, None)
    w, b = conv.extras.get("pooler.dense.weight"), conv.extras.get("pooler.dense.bias")
    return None if w is None or b is None else {"weight": w, "bias": b}
