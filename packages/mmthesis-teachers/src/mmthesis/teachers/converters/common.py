"""The shape every converter shares: explicit key rules, listed drops, and a strict check.

A converter is a pure function ``convert(state_dict) -> Converted``: it maps
every key of a foreign checkpoint through an explicit list of regex rules into
our module's names, drops keys only when they match a *listed* training-only
prefix, and reports every key that no rule matched as unexpected. ``check``
then compares the result with the module built from the inferred config:
missing keys, unexpected keys and shape mismatches are named, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmthesis.core.errors import CheckpointError

Rule = tuple[str, str | Callable[[re.Match[str]], str]]


@dataclass
class Converted:
    """A foreign state dict in our module's layout, plus what was left aside."""

    format: str
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)  # inferred from shapes / the checkpoint's cfg
    dropped: list[str] = field(default_factory=list)  # training-only keys, dropped by a listed prefix
    unexpected: list[str] = field(default_factory=list)  # keys no rule maps
    notes: list[str] = field(default_factory=list)
    # weights the checkpoint carries beside the model, kept for other uses (BERT's pretrained pooler,
    # re-attached for GLUE finetuning); never loaded into the model
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class CheckReport:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]  # "key: checkpoint (a, b) vs model (c, d)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def map_keys(fmt: str, sd: Mapping[str, torch.Tensor], rules: Iterable[Rule], drop_prefixes: Iterable[str],
             drop_patterns: Iterable[str] = ()) -> Converted:
    """Apply ``rules`` (first full match wins) after removing listed training-only keys."""
    rules = [(re.compile(p), r) for p, r in rules]
    drop_prefixes = tuple(drop_prefixes)
    drop_res = [re.compile(p) for p in drop_patterns]
    out = Converted(format=fmt, state_dict={})
    for key, value in sd.items():
        if key.startswith(drop_prefixes) or any(p.fullmatch(key) for p in drop_res):
            out.dropped.append(key)
            continue
        for pattern, repl in rules:
            m = pattern.fullmatch(key)
            if m:
                new = repl(m) if callable(repl) else m.expand(repl)
                if new in out.state_dict:
                    raise CheckpointError(f"{fmt} checkpoint maps two keys onto {new!r}", "the file is not a single model")
                out.state_dict[new] = value
                break
        else:
            out.unexpected.append(key)
    return out


def check(model: nn.Module, conv: Converted) -> CheckReport:
    """Compare converted weights with ``model``'s persistent state (names and shapes)."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in conv.state_dict)
    unexpected = sorted(list(conv.unexpected) + [k for k in conv.state_dict if k not in expected])
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in conv.state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    return CheckReport(missing, unexpected, mismatched)


def load_into(model: nn.Module, conv: Converted, source: str) -> None:
    """Strictly load ``conv`` into ``model``; raise a one-line ``CheckpointError`` on any gap."""
    rep = check(model, conv)
    if not rep.ok:
        parts = []
        if rep.missing:
            parts.append(f"{len(rep.missing)} missing (e.g. {rep.missing[0]})")
        if rep.unexpected:
            parts.append(f"{len(rep.unexpected)} unexpected (e.g. {rep.unexpected[0]})")
        if rep.mismatched:
            parts.append(f"{len(rep.mismatched)} with wrong shape (e.g. {rep.mismatched[0]})")
        raise CheckpointError(
            f"{source} does not match the {conv.format} layout: {'; '.join(parts)}",
            f"run `mmthesis teachers inspect {source}` to see every key",
        )
    model.load_state_dict(conv.state_dict, strict=True, assign=_on_meta(model))


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def block_ids(sd: Mapping[str, Any], prefix: str) -> list[int]:
    """Sorted distinct ``N`` of keys ``{prefix}N.*``."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def shape(sd: Mapping[str, torch.Tensor], key: str, fmt: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{fmt} checkpoint has no {key!r}", "check that the file is the model you named")
    return tuple(sd[key].shape)
