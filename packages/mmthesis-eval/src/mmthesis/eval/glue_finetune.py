"""GLUE finetuning of a text encoder (REFERENCE.md §5.3 "Text", Table 34).

Model: encoder -> CLS -> pooler (Linear D->D + tanh) -> dropout -> Linear
(C classes; 1 output with MSE for STS-B). Sentence pairs are encoded BERT
style, ``[CLS] a [SEP] b [SEP]`` truncated longest-first, with token-type ids
(passed to BERT encoders, whose token-type embeddings are trained). No layer
decay; AdamW with weight decay on all parameters; linear ("polynomial", power
1) decay after a linear warmup (transformers' schedule). Scores are the
official corpus-level metrics of ``glue_metrics`` on the dev set(s); MNLI
reports matched and mismatched accuracy.

Pooler: the thesis re-attaches the *pretrained* ``bert-base-uncased`` pooler
(REFERENCE.md 3.12). Here it comes from the BERT checkpoint the evaluated text
encoder was built from (``mmthesis.teachers.load_pooler``): a teacher's
``teacher:NAME:CKPT`` file, or a training run's ``model.text.checkpoint``
(the student's text encoder started from those BERT layers). When there is no
such checkpoint (random smoke encoders) or it has no pooler, the pooler starts
random and the result says so in a note.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.core.paths import data_root
from mmthesis.core.registry import unknown_name
from mmthesis.data.datasets.glue import TASKS, read_rows
from mmthesis.eval.adapters import LoadedModel
from mmthesis.eval.context import EvalContext
from mmthesis.eval.glue_metrics import mnli_metrics, task_metrics
from mmthesis.eval.protocols import TaskOutput, params_of, register
from mmthesis.eval.task_registry import ResolvedTask
from mmthesis.eval.threads import single_thread_if_small
from mmthesis.teachers.base import TeacherModule


@dataclass
class GlueParams:
    task: str  # official folder name: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI
    epochs: int = 10
    max_steps: int = -1
    batch_size: int = 32
    lr: float = 2e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    head_dropout: float = 0.1
    max_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise unknown_name("GLUE task", self.task, TASKS)


def encode_pairs(
    tokenizer, first: list[str], second: list[str | None], max_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, padding_mask, token_type_ids) of ``[CLS] a [SEP] (b [SEP])``, truncated longest-first."""
    a = [e.ids for e in tokenizer.hf.encode_batch(first, add_special_tokens=False)]
    b = [
        e.ids if s is not None else None
        for e, s in zip(
            tokenizer.hf.encode_batch([s or "" for s in second], add_special_tokens=False), second, strict=True
        )
    ]
    seqs, types = [], []
    for x, y in zip(a, b, strict=True):
        x, y = list(x), (list(y) if y is not None else None)
        budget = max_length - (3 if y is not None else 2)
        while len(x) + len(y or []) > budget:  # longest first, as BERT's encode_plus
            (x if y is None or len(x) >= len(y) else y).pop()
        seq = [tokenizer.cls_id, *x, tokenizer.sep_id] + ([*y, tokenizer.sep_id] if y is not None else [])
        seqs.append(seq)
        types.append([0] * (len(x) + 2) + ([1] * (len(y) + 1) if y is not None else []))
    ids, mask = tokenizer.pad(seqs)
    token_types = torch.zeros_like(ids)
    for row, t in enumerate(types):
        token_types[row, : len(t)] = torch.tensor(t)
    return ids, mask, token_types


class TextClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, outputs: int, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        dim = int(backbone.embed_dim)
        self.pooler = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, outputs)

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        """The pooler's output on the CLS (HF ``BertModel``'s ``pooler_output``)."""
        hf = getattr(self.backbone, "model", None)
        if hf is not None and hasattr(getattr(hf, "embeddings", None), "token_type_embeddings"):
            hidden = hf(input_ids=ids, attention_mask=(~mask).long(), token_type_ids=token_types).last_hidden_state
        else:
            hidden = self.backbone(ids, mask).last_hidden_state
        return self.pooler(hidden[:, 0])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(ids, mask, token_types)))


def pretrained_pooler(loaded: LoadedModel) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The pooler weights of the BERT checkpoint the model's text encoder comes from, and where they came from.

    ``(None, why)`` when there is none: a teacher without checkpoint, a run whose text encoder started
    from random weights, or a checkpoint without pooler. A run's checkpoint that cannot be found is an error.
    """
    from mmthesis.teachers import load_pooler

    info = loaded.info
    if info.get("kind") == "teacher":
        name, spec = info.get("teacher"), info.get("checkpoint")
        path = spec
    elif info.get("kind") == "mmthesis-run":
        from mmthesis.students.paths import resolve_checkpoint

        name, spec = info.get("text_encoder"), info.get("text_checkpoint")
        path = resolve_checkpoint(name, spec) if spec else None
    else:
        return None, f"{loaded.spec} is not built from a BERT checkpoint"
    if not path:
        return None, f"its text encoder ({name}) started from random weights, not from a checkpoint"
    if not Path(path).exists():
        raise CheckpointError(
            f"checkpoint {path} of the text encoder ({name}) not found: GLUE needs its pretrained pooler",
            "put the checkpoint back at that path (see `mmthesis teachers list`)",
        )
    pooler = load_pooler(path)
    return (pooler, str(path)) if pooler is not None else (None, f"its checkpoint {path} has no pooler weights")


def build_classifier(loaded: LoadedModel, outputs: int, dropout: float) -> tuple[TextClassifier, list[str]]:
    """A trainable copy of the text encoder + pooler (pretrained when available) + head; notes on the pooler."""
    backbone = copy.deepcopy(loaded.text_backbone)
    if isinstance(backbone, TeacherModule):
        backbone.unfreeze()
    backbone.requires_grad_(True)
    model = TextClassifier(backbone, outputs, dropout)
    weights, source = pretrained_pooler(loaded)
    if weights is None:
        return model, [f"pooler initialised randomly: {source} (the thesis re-attaches bert-base-uncased's pooler)"]
    dim = model.pooler[0].weight.shape[0]
    if tuple(weights["weight"].shape) != (dim, dim):
        raise CheckpointError(
            f"the pooler in {source} is {tuple(weights['weight'].shape)}, the text encoder is {dim} wide",
            "evaluate the model with the BERT checkpoint its text encoder was built from",
        )
    model.pooler[0].load_state_dict(weights)
    return model, []


def _rows(folder: Path, task: str, split: str):
    rows = read_rows(folder, task, split)
    return [r["sentence1"] for r in rows], [r.get("sentence2") for r in rows], [r["label"] for r in rows]


def _train(model, ids, mask, types, y, regression: bool, opt, sched, batch_size: int, total: int, g) -> list[float]:
    """``total`` optimiser steps over shuffled batches (epochs as needed); the loss of each step."""
    losses: list[float] = []
    model.train()
    while len(losses) < total:
        order = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), batch_size):
            if len(losses) >= total:
                break
            b = order[start : start + batch_size]
            out = model(ids[b], mask[b], types[b])
            loss = F.mse_loss(out.squeeze(-1), y[b]) if regression else F.cross_entropy(out, y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    return losses


def _predict(model, tokenizer, folder: Path, p: GlueParams, split: str, regression: bool):
    """Predictions (class ids, or scores for STS-B) on a dev split, and its labels."""
    d1, d2, dl = _rows(folder, p.task, split)
    i, m, t = encode_pairs(tokenizer, d1, d2, p.max_length)
    with torch.inference_mode():
        out = torch.cat([model(i[k : k + 256], m[k : k + 256], t[k : k + 256]) for k in range(0, len(dl), 256)])
    return (out.squeeze(-1) if regression else out.argmax(-1)).numpy(), dl


def schedule_steps(p: GlueParams, train_rows: int) -> tuple[int, int]:
    """(total, warmup) optimiser steps: ``epochs`` x ceil(rows / batch) (the last partial batch kept), or
    ``max_steps``; warmup = ``warmup_fraction`` of the total."""
    total = p.max_steps if p.max_steps > 0 else p.epochs * -(-train_rows // p.batch_size)
    return total, int(p.warmup_fraction * total)


def optimizer_and_schedule(
    parameters, p: GlueParams, total: int, warmup: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (weight decay on every parameter), linear warmup then linear ("polynomial", power 1) decay to 0."""
    from transformers import get_polynomial_decay_schedule_with_warmup

    opt = torch.optim.AdamW(  # fused: one kernel per step, 2.5x faster on CPU, same updates
        parameters, lr=p.lr, betas=tuple(p.betas), eps=p.eps, weight_decay=p.weight_decay, fused=True
    )
    return opt, get_polynomial_decay_schedule_with_warmup(opt, warmup, total, lr_end=0.0, power=1.0)


@register("glue", needs=("text_backbone",))
def run_glue(ctx: EvalContext, task: ResolvedTask) -> TaskOutput:
    p = params_of(GlueParams, task)
    ctx.loaded.require("text_backbone")
    tokenizer = ctx.loaded.tokenizer
    if tokenizer is None or not hasattr(tokenizer, "hf"):
        raise ConfigError(
            f"model {ctx.loaded.spec} has no WordPiece tokenizer for GLUE",
            "use an mmthesis run or a BERT teacher with its vocab.txt",
        )
    spec = TASKS[p.task]
    regression = not spec.label_names
    folder = data_root() / ctx.dataset(task.dataset).folder
    s1, s2, labels = _rows(folder, p.task, task.train_split or "train")
    ids, mask, types = encode_pairs(tokenizer, s1, s2, p.max_length)
    y = torch.tensor(labels, dtype=torch.float32 if regression else torch.long)

    torch.manual_seed(p.seed)
    model, notes = build_classifier(ctx.loaded, 1 if regression else len(spec.label_names), p.head_dropout)
    total, warmup = schedule_steps(p, len(y))
    opt, sched = optimizer_and_schedule(model.parameters(), p, total, warmup)
    g = torch.Generator().manual_seed(p.seed)
    # one step's work decides the thread count (threads.py); tokens: the longest padded row, at most max_length
    work = p.batch_size * ids.shape[1] * int(model.backbone.embed_dim) ** 2
    with single_thread_if_small(work):
        losses = _train(model, ids, mask, types, y, regression, opt, sched, p.batch_size, total, g)
        model.eval()
        dev = [task.split] if spec.name != "MNLI" else list(spec.dev)
        preds = {s: _predict(model, tokenizer, folder, p, s, regression) for s in dev}
    if spec.name == "MNLI":
        metrics = mnli_metrics(*preds[dev[0]], *preds[dev[1]])
    else:
        metrics = task_metrics(spec.hf, *preds[task.split])
    metrics = {k: 100.0 * v for k, v in metrics.items()}  # percent, as GLUE tables report
    k = max(1, min(5, len(losses) // 4))  # mean of a few steps: single-batch losses are noisy
    metrics |= {
        "train_loss_first": sum(losses[:k]) / k,
        "train_loss_last": sum(losses[-k:]) / k,
        "steps": len(losses),
        "train_rows": len(y),
    }
    rows = [
        {"split": s, "index": i, "label": lab, "prediction": float(q) if regression else int(q)}
        for s, (q_all, l_all) in preds.items()
        for i, (q, lab) in enumerate(zip(q_all, l_all, strict=True))
    ]
    return TaskOutput(metrics, rows, notes=notes)
