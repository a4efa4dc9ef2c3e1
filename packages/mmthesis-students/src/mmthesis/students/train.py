"""Run a recipe: check data up front, train with Lightning, write weights and result.json.

The run folder is ``runs_root()/<recipe>-<scale>/<config-hash>/``; a finished
run with the same config is reused, an interrupted one resumes from its last
Lightning checkpoint. Weights for downstream use are written as safetensors
(``student.safetensors``) next to the tokenizer and the resolved config.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import Dataset

from mmthesis.core.checkpoint import save_weights
from mmthesis.core.config import config_hash, from_dict, to_dict
from mmthesis.core.console import console
from mmthesis.core.errors import MMThesisError
from mmthesis.core.io import atomic_write_text
from mmthesis.core.registry import unknown_name
from mmthesis.core.results import RunRecorder, RunResult, find_finished_run, read_result, run_dir
from mmthesis.data.image_text import ImageTextPairs
from mmthesis.data.manifest import iter_split, read_manifest
from mmthesis.data.registry import prepare_command, prepared_name
from mmthesis.data.tokenizers import Tokenizer, bert_wordpiece, train_wordpiece
from mmthesis.data.transforms import train_transform
from mmthesis.students.checkpointing import enable_gradient_checkpointing
from mmthesis.students.config import VLRecipeConfig
from mmthesis.students.distributed import ResumableDataLoader, ResumableSampler, SeededSamples
from mmthesis.students.lightning_module import TrainingModule, VLDistillationModule, build_teacher
from mmthesis.students.paths import resolve_path
from mmthesis.students.precompute import precompute_teacher_targets, target_kind
from mmthesis.students.smoke_teacher import prefit_teacher
from mmthesis.students.unimodal_data import ImageSplit, TextBlocks
from mmthesis.students.unimodal_module import UnimodalDistillationModule
from mmthesis.students.views import TwoViews, teacher_transform

WEIGHTS = "student.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
LOSSES = "losses.csv"


def run_name(config: VLRecipeConfig, scale: str) -> str:
    return f"{config.recipe}-{scale}"


def prepared(name: str, scale: str) -> str:
    """The prepared folder a recipe's dataset name means at ``scale`` (stand-ins: ``imagenet-smoke``)."""
    try:
        return prepared_name(name, scale)
    except MMThesisError:
        return name  # not a registered name: a prepared folder named directly


def check_data(names: list[str], scale: str = "full") -> dict[str, str]:
    """Fail up front, with the fixing command, if a dataset is not prepared; returns fingerprints."""
    fingerprints = {}
    for name in dict.fromkeys(names):
        folder = prepared(name, scale)
        try:
            hint = prepare_command(name, scale)
        except MMThesisError:
            hint = "mmthesis data list"
        manifest = read_manifest(folder, prepare_hint=hint)
        digest = [s["sha256"] for split in manifest.splits.values() for s in split.get("shards", [])]
        fingerprints[folder] = config_hash({"shards": digest})
    return fingerprints


def _train_wordpiece_tokenizer(config: VLRecipeConfig, scale: str) -> Tokenizer:
    """``train-wordpiece``: a WordPiece vocabulary learnt from the training captions (smoke)."""
    d = config.data
    captions = [c for name in d.train for s in iter_split(prepared(name, scale), "train") for c in s["json"]["captions"]]
    return train_wordpiece(captions, d.tokenizer_vocab_size)


# recipe ``data.tokenizer`` names -> builder; any other value is a vocab.txt path (plain or ``package:``)
TOKENIZER_BUILDERS: dict[str, Callable[[VLRecipeConfig, str], Tokenizer]] = {
    "train-wordpiece": _train_wordpiece_tokenizer,
}


def build_tokenizer(config: VLRecipeConfig, scale: str = "full") -> Tokenizer | None:
    """The recipe's tokenizer: a named builder of ``TOKENIZER_BUILDERS`` or a vocab.txt (plain or ``package:`` path)."""
    if config.task == "image_kd":
        return None
    name = config.data.tokenizer
    if name in TOKENIZER_BUILDERS:
        return TOKENIZER_BUILDERS[name](config, scale)
    if not any(c in name for c in "/\\:."):  # a bare name, not a vocab.txt path: a typo of a builder
        raise unknown_name("tokenizer", name, TOKENIZER_BUILDERS, also="or a vocab.txt path")
    return bert_wordpiece(resolve_path(name))


def build_training_data(config: VLRecipeConfig, tokenizer: Tokenizer | None, scale: str) -> tuple[Dataset, Any, list]:
    """(dataset, collate_fn, the image-text parts) of a recipe's training split."""
    d, m = config.data, config.model
    names = [prepared(n, scale) for n in d.train]
    if config.task == "image_kd":
        transform = train_transform(m.img_size, scale=tuple(d.crop_scale))
        parts: list = [ImageSplit(n, "train", transform) for n in names]
        return torch.utils.data.ConcatDataset(parts), ImageSplit.collate, []
    if config.task == "text_kd":
        parts = [TextBlocks(n, "train", tokenizer, d.text_block_size) for n in names]
        return torch.utils.data.ConcatDataset(parts), parts[0].collate, []
    transform = train_transform(m.img_size, scale=tuple(d.crop_scale))
    pairs = [ImageTextPairs(n, "train", tokenizer, transform, max_length=d.max_text_length) for n in names]
    parts = pairs
    if config.teacher.independent_augmentation and config.loss.kd != "none":
        view = teacher_transform(m.img_size, tuple(d.crop_scale), config.teacher.color_jitter)
        parts = [TwoViews(p, view) for p in pairs]
    return torch.utils.data.ConcatDataset(parts), parts[0].collate, pairs  # all parts share the tokenizer


def build_module(config: VLRecipeConfig, vocab_size: int | None) -> TrainingModule:
    if config.task == "vl":
        return VLDistillationModule(config, vocab_size=vocab_size or 0)
    return UnimodalDistillationModule(config, vocab_size=vocab_size)


class Throughput(Callback):
    """Shows samples/s in the progress bar (and records it) next to the losses."""

    def __init__(self) -> None:
        self._start: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._start is not None:
            rate = len(batch) * trainer.world_size / max(time.perf_counter() - self._start, 1e-9)
            module.log("train/samples_per_s", rate, prog_bar=True, batch_size=len(batch))


class LossHistory(Callback):
    """Records every optimisation step's losses (for result.json and losses.csv).

    The rows are part of the checkpoint (``state_dict``), so a resumed run keeps the
    curve up to its checkpoint; with ``path`` each row is also appended to the csv as
    it comes (progress survives a kill; rows past the checkpoint are dropped on resume).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.rows: list[dict[str, float]] = []
        self.path = path

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.path is not None and trainer.is_global_zero:
            # drop rows logged after the checkpoint we resumed from
            if self.rows:
                _write_losses(self.path, self.rows)
            else:
                self.path.unlink(missing_ok=True)

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        metrics = trainer.callback_metrics
        row = {"step": float(trainer.global_step)}
        for key in ("train/loss", "train/itc", "train/kd"):
            if key in metrics:
                row[key.split("/")[1]] = float(metrics[key])
        self.rows.append(row)
        if self.path is not None and trainer.is_global_zero:
            _append_loss_row(self.path, row)


class ResumeDataOrder(Callback):
    """Hands a ``ResumableDataLoader`` its checkpointed (epoch, batches) before its first batch is drawn.

    Lightning 2.6 saves stateful-loader states with the fit loop and loads them in
    ``FitLoop.setup_data``, but the LR scheduler's ``estimated_stepping_batches`` sets
    the loader up *before* the checkpoint is restored, so that load never happens
    (and the restored batch progress lags one batch behind a checkpoint saved in
    ``on_train_batch_end``). So the saved state is taken from the checkpoint here.
    """

    def __init__(self) -> None:
        self._state: list[dict[str, int]] = []

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._state = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader", [])

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableDataLoader) and len(self._state) == 1:
            loader.load_state_dict(self._state[0])
        self._state = []


class RNGState(Callback):
    """Saves the global RNG states in checkpoints and restores them right before the next step.

    Restoring at the first ``on_train_batch_start`` (not at load time) makes anything
    that draws random numbers between loading and training irrelevant; data
    augmentation does not use the global RNG (``SeededSamples``), so these states
    only drive the model (dropout, drop-path).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np

        # plain tensors / ints only, so the checkpoint also loads with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        }
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending is None:
            return
        import random

        import numpy as np

        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each loss over the first and the last 10% of steps (at least 5 steps)."""
    out: dict[str, float] = {}
    if not rows:
        return out
    n = max(5, len(rows) // 10)
    for key in ("loss", "itc", "kd"):
        values = [r[key] for r in rows if key in r]
        if values:
            out[f"train_{key}_first"] = sum(values[:n]) / len(values[:n])
            out[f"train_{key}_last"] = sum(values[-n:]) / len(values[-n:])
    out["steps"] = float(len(rows))
    return out


def train_recipe(config: VLRecipeConfig, scale: str, *, root: Path | None = None, force: bool = False) -> RunResult:
    """Train ``config`` unless a finished run with the same config exists; returns its result."""
    name = run_name(config, scale)
    if not force and (done := find_finished_run(name, config, root)) is not None:
        console.print(f"[green]reusing finished run[/] {run_dir(name, config_hash(config), root)}")
        return done
    retrieval = config.data.retrieval_eval if config.task == "vl" else []
    fingerprints = check_data(config.data.train + retrieval, scale)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    tokenizer = build_tokenizer(config, scale)
    d, t = config.data, config.train
    dataset, collate, pairs = build_training_data(config, tokenizer, scale)
    train_set = SeededSamples(dataset)
    # data order = f(seed, epoch), sharded over ranks, resumable mid-epoch (exact resume)
    loader = ResumableDataLoader(
        train_set,
        batch_size=d.batch_size,
        sampler=ResumableSampler(len(train_set), t.seed),
        drop_last=True,
        num_workers=d.num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(t.seed),
        persistent_workers=d.num_workers > 0,
    )
    module = build_module(config, tokenizer.vocab_size if tokenizer is not None else None)
    resume = run_dir(name, config_hash(config), root) / "checkpoints" / "last.ckpt"
    if config.teacher.prefit_steps and module.teacher is not None and not resume.is_file():
        # (a resumed run restores the pre-fitted teacher from its checkpoint)
        prefit_teacher(module.teacher, pairs, config.teacher.prefit_steps, config.model.img_size, seed=t.seed)
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(module.student)
    if t.compile:
        module.student.compile()  # in place: parameter names (and checkpoints) stay unchanged
    if config.model.size == "tiny":
        console.print(
            "[yellow]smoke scale:[/] encoders and teacher are tiny models of the real architectures"
            " (random-initialised unless the recipe names a checkpoint)"
        )

    recorder = RunRecorder(name, scale, config, root=root, datasets=fingerprints)
    out_dir = recorder.dir
    history = LossHistory(out_dir / LOSSES)
    ckpt_dir = out_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=t.checkpoint_every_n_steps, save_last=True, save_top_k=0
    )
    on_cpu = t.accelerator == "cpu" or not torch.cuda.is_available()
    trainer = L.Trainer(
        accelerator="cpu" if on_cpu else t.accelerator,
        devices=t.devices if not on_cpu else 1,
        precision="32-true" if on_cpu else t.precision,
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        log_every_n_steps=t.log_every_n_steps,
        default_root_dir=str(out_dir),
        logger=False,
        callbacks=[history, Throughput(), RNGState(), ResumeDataOrder(), checkpoint],
        use_distributed_sampler=False,  # ResumableSampler shards by rank itself
        enable_model_summary=False,
        deterministic=on_cpu,
        num_sanity_val_steps=0,
    )
    # the frozen teacher is in eval mode on purpose (REFERENCE.md §10 item 16)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    resume = ckpt_dir / "last.ckpt"
    with recorder:
        if resume.is_file():
            console.print(f"resuming from {resume}")
        trainer.fit(module, loader, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
        save_weights(out_dir / WEIGHTS, module.student.state_dict(), {"recipe": config.recipe, "scale": scale})
        if tokenizer is not None:
            tokenizer.save(out_dir / TOKENIZER)
        atomic_write_text(out_dir / CONFIG, json.dumps(to_dict(config), indent=2))
        _write_losses(out_dir / LOSSES, history.rows)
        recorder.result.metrics = _summary(history.rows)
        recorder.result.metrics["parameters_student"] = float(sum(p.numel() for p in module.student.parameters()))
        if config.model.size == "tiny":
            recorder.result.notes.append(smoke_note(config))
    return recorder.result


def precompute_recipe_targets(config: VLRecipeConfig, scale: str, out: Path) -> Path:
    """Write the recipe's teacher targets for every training image (``teacher.precomputed_targets``, precompute.py)."""
    check_data(config.data.train, scale)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    _, _, pairs = build_training_data(config, build_tokenizer(config, scale), scale)
    target_kind(config)  # fails early for recipes the option does not serve
    teacher = build_teacher(config)
    if config.teacher.prefit_steps:  # the same seeded pre-fit a training run does
        prefit_teacher(teacher, pairs, config.teacher.prefit_steps, config.model.img_size, seed=config.train.seed)
    return precompute_teacher_targets(config, teacher, pairs, out, num_workers=config.data.num_workers)


def smoke_note(config: VLRecipeConfig) -> str:
    """What a smoke run's numbers rest on (written into result.json)."""
    parts = ["smoke scale: tiny models of the real architectures"]
    pretrained = [e.name for e in (config.model.image, config.model.text) if e.checkpoint]
    if config.task != "vl" or config.teacher.checkpoint:
        pretrained += [f"teacher {config.teacher.name}"] if config.teacher.checkpoint else []
    parts.append(f"pretrained parts: {', '.join(pretrained)}" if pretrained else "tiny random-initialised encoders")
    if config.teacher.precomputed_targets:
        parts.append(f"teacher targets precomputed ({config.teacher.precomputed_targets})")
    elif config.teacher.prefit_steps and config.uses_teacher:
        parts.append(f"teacher pre-fitted for {config.teacher.prefit_steps} steps on the smoke images' labels")
    elif not config.teacher.checkpoint and config.uses_teacher:
        parts.append("random-initialised teacher")
    return "; ".join(parts)


def _append_loss_row(path: Path, row: dict[str, float]) -> None:
    """Append one row (header first if the file is new); the final ``_write_losses`` rewrites atomically."""
    new = not path.is_file() or path.stat().st_size == 0
    keys = sorted(row, key=lambda k: (k != "step", k))
    with path.open("a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _write_losses(path: Path, rows: list[dict[str, float]]) -> None:
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k))
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    writer = csv.DictWriter(_Sink(), fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, "".join(lines))


def load_trained(run: Path) -> tuple[VLRecipeConfig, Tokenizer, torch.nn.Module]:
    """Rebuild a trained student (weights loaded safely) and its tokenizer from a run folder."""
    from mmthesis.core.checkpoint import load_weights
    from mmthesis.core.errors import CheckpointError
    from mmthesis.data.tokenizers import Tokenizer as Tok
    from mmthesis.students.model import SSMKE

    result = read_result(run)
    if result is None or result.status != "finished":
        raise CheckpointError(f"{run} holds no finished training run", "train it with `mmthesis train run RECIPE`")
    config = from_dict(VLRecipeConfig, json.loads((run / CONFIG).read_text(encoding="utf-8")))
    if config.task != "vl":
        raise CheckpointError(
            f"{run} is a unimodal distillation ({config.task}), not a vision-language student",
            f"its {WEIGHTS} is the state dict of a cropped {config.teacher.name}: build it with mmthesis.teachers.crop",
        )
    tokenizer = Tok.load(run / TOKENIZER)
    state = load_weights(run / WEIGHTS)
    head = next((k for k in ("kd_head.1.weight", "shared.head.1.weight") if k in state), None)
    kd_dim = state[head].shape[0] if head else None
    model = SSMKE(config.model, tokenizer.vocab_size, kd_dim, load_pretrained=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{run / WEIGHTS} does not match the recipe's model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return config, tokenizer, model.eval()
