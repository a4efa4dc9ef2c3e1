"""Run a recipe: check data up front, train with Lightning, write weights and result.json.

A recipe with ``init.from_recipe`` (retrieval finetuning, §3.13) starts from the trained student of a
finished run of its parent recipe, training the parent first when there is none.

The run folder is ``runs_root()/<recipe>-<scale>/<config-hash>/``; a finished
run with the same config is reused, an interrupted one resumes from its last
Lightning checkpoint. The finished run's folder (weights as safetensors, tokenizer,
resolved config, losses) is written and read by ``mmthesis.students.artifact``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

from mmthesis.core.config import config_hash
from mmthesis.core.console import console
from mmthesis.core.errors import ConfigError, DataMissingError, MMThesisError
from mmthesis.core.registry import unknown_name
from mmthesis.core.results import RunRecorder, RunResult, find_finished_run, run_dir
from mmthesis.data.image_text import ImageTextPairs
from mmthesis.data.manifest import dataset_dir, iter_split, read_manifest
from mmthesis.data.registry import check_data, prepared
from mmthesis.data.shard_index import SplitIndex
from mmthesis.data.tokenizers import Tokenizer, bert_wordpiece, train_wordpiece
from mmthesis.data.transforms import eval_transform, train_transform
from mmthesis.data.zeroshot import PHOTO_TEMPLATE, format_prompts, zero_shot_classes
from mmthesis.students.artifact import (
    LOSSES,
    METRICS,
    TrainedRun,
    load_trained,
    read_itc_log_scales,
    read_logged_metrics,
    run_name,
    write_artifact,
)
from mmthesis.students.callbacks import KeepLoggedMetrics, LossHistory, ResumeDataOrder, RNGState, Throughput
from mmthesis.students.checkpointing import enable_gradient_checkpointing
from mmthesis.students.config import TrainConfig, VLRecipeConfig
from mmthesis.students.distributed import ResumableDataLoader, ResumableSampler, SeededSamples
from mmthesis.students.lightning_module import TrainingModule, VLDistillationModule, build_teacher
from mmthesis.students.paths import resolve_path
from mmthesis.students.precompute import precompute_teacher_targets, target_kind
from mmthesis.students.recipes import parent_config
from mmthesis.students.run_log import TRAIN_LOG, build_loggers, library_output
from mmthesis.students.run_safety import (
    AtomicCheckpointIO,
    check_launch,
    launched_rank_zero,
    resume_checkpoint,
    run_lock,
)
from mmthesis.students.smoke_teacher import prefit_teacher
from mmthesis.students.unimodal_data import ImageSplit, TextBlocks, text_block_cache_prefix, text_blocks_packed
from mmthesis.students.unimodal_module import UnimodalDistillationModule
from mmthesis.students.validation import ZeroShotValidation, evenly_spaced
from mmthesis.students.views import TwoViews, teacher_transform

# the run folder's layout lives in mmthesis.students.artifact only; this module trains
__all__ = [
    "build_module",
    "build_tokenizer",
    "build_training_data",
    "build_validation_data",
    "build_zero_shot_validation",
    "precompute_recipe_targets",
    "smoke_note",
    "train_recipe",
    "trained_parent",
    "training_examples",
]


def _train_wordpiece_tokenizer(config: VLRecipeConfig, scale: str) -> Tokenizer:
    """``train-wordpiece``: a WordPiece vocabulary learnt from the training captions (smoke)."""
    d = config.data
    captions = [
        c for name in d.train for s in iter_split(prepared(name, scale), "train") for c in s["json"]["captions"]
    ]
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
    transform = train_transform(m.img_size, scale=tuple(d.crop_scale), hflip=d.hflip)
    pairs = [ImageTextPairs(n, "train", tokenizer, transform, max_length=d.max_text_length) for n in names]
    parts = pairs
    if config.teacher.independent_augmentation and config.loss.kd != "none":
        view = teacher_transform(m.img_size, tuple(d.crop_scale), config.teacher.color_jitter, d.hflip)
        parts = [TwoViews(p, view) for p in pairs]
    return torch.utils.data.ConcatDataset(parts), parts[0].collate, pairs  # all parts share the tokenizer


def validation_split(name: str) -> str:
    """The held-out split of a prepared dataset: ``val``, or ``valid`` for OpenWebText's chunk (fairseq's name)."""
    return "valid" if (dataset_dir(name) / "valid.idx").is_file() else "val"


def build_validation_data(config: VLRecipeConfig, tokenizer: Tokenizer | None, scale: str) -> tuple[Dataset, Any]:
    """(dataset, collate_fn) of the val split of the recipe's first training dataset, without augmentation.

    COCO's val at full (Karpathy split), the ImageNet val set, OpenWebText's valid chunk; the stand-ins' val splits
    at smoke. The teacher sees the student's view (no independent teacher augmentation in validation).
    """
    d, m = config.data, config.model
    name = prepared(d.train[0], scale)
    split = validation_split(name)
    if config.task == "image_kd":
        return ImageSplit(name, split, eval_transform(m.img_size)), ImageSplit.collate
    if config.task == "text_kd":
        blocks = TextBlocks(name, split, tokenizer, d.text_block_size)
        return blocks, blocks.collate
    pairs = ImageTextPairs(name, split, tokenizer, eval_transform(m.img_size), max_length=d.max_text_length)
    return pairs, pairs.collate


def build_zero_shot_validation(config: VLRecipeConfig, tokenizer: Tokenizer, scale: str) -> ZeroShotValidation:
    """``train.zero_shot_val``: the val split (else test) of that prepared labelled dataset under the eval
    transform, at most ``train.zero_shot_val_images`` images spread evenly over it, and every class's prompts
    (``mmthesis.data.zeroshot.zero_shot_classes``: ImageNet-1K's 1000 names x 80 templates) tokenized once."""
    d, t = config.data, config.train
    folder = prepared(t.zero_shot_val, scale)
    split = "val" if "val" in read_manifest(folder).splits else "test"
    images = ImageSplit(folder, split, eval_transform(config.model.img_size))
    names, templates = zero_shot_classes(t.zero_shot_val, folder)
    prompts = [p for name in names for p in format_prompts(name, templates)]
    return ZeroShotValidation(
        torch.utils.data.Subset(images, evenly_spaced(len(images), t.zero_shot_val_images)),
        ImageSplit.collate,
        tokenizer.pad(tokenizer.encode_ids(prompts, d.max_text_length)),
        len(templates),
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        seed=t.seed,
    )


def training_examples(config: VLRecipeConfig, scale: str) -> int:
    """``len`` of ``build_training_data``'s dataset, read from the shard indexes without building it.

    Images (image KD) or image-caption pairs (vision-language) from each dataset's ``SplitIndex``; text KD's
    packed blocks from their cache, which is built here below full scale and otherwise by the first full run
    (packing OpenWebText takes hours). Unprepared data raises ``DataMissingError`` with the prepare command.
    """
    check_data(config.data.train, scale)
    total = 0
    for name in config.data.train:
        folder = prepared(name, scale)
        if config.task == "text_kd":
            tokenizer = build_tokenizer(config, scale)
            assert tokenizer is not None
            prefix = text_block_cache_prefix(folder, "train", tokenizer, config.data.text_block_size)
            if not text_blocks_packed(prefix) and scale == "full":
                raise DataMissingError(
                    f"the {config.data.text_block_size}-token blocks of {folder} are not packed yet",
                    f"they are packed by the first run: `mmthesis train run {config.recipe} --scale full`",
                )
            total += len(TextBlocks(folder, "train", tokenizer, config.data.text_block_size))
            continue
        index = SplitIndex(folder, "train")
        total += len(index) if config.task == "image_kd" else int(index.captions[index.captions > 0].sum())
    return total


def build_module(config: VLRecipeConfig, vocab_size: int | None) -> TrainingModule:
    if config.task == "vl":
        return VLDistillationModule(config, vocab_size=vocab_size or 0)
    return UnimodalDistillationModule(config, vocab_size=vocab_size)


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each loss over the first and the last 10% of steps (at least 5 steps)."""
    out: dict[str, float] = {}
    if not rows:
        return out
    n = max(5, len(rows) // 10)
    for key in ("loss", "itc", "kd", "kd_image", "kd_text"):
        values = [r[key] for r in rows if key in r]
        if values:
            out[f"train_{key}_first"] = sum(values[:n]) / len(values[:n])
            out[f"train_{key}_last"] = sum(values[-n:]) / len(values[-n:])
    out["steps"] = float(len(rows))
    return out


def _validation_summary(run: Path) -> dict[str, float]:
    """The last value of each ``val/*`` series of the run's metrics.csv (``val_<name>_last``)."""
    try:
        series = read_logged_metrics(run)
    except MMThesisError:
        return {}
    return {f"val_{k.split('/', 1)[1]}_last": v[-1][1] for k, v in series.items() if k.startswith("val/") and v}


def _keep_best(module: TrainingModule, best: ModelCheckpoint, result: RunResult) -> dict[str, float]:
    """Load the best validation's weights into ``module`` (``train.keep_best``); note in result.json which weights
    the run keeps. Without any validation scored (too few steps) the last weights stay, and the note says so."""
    path = Path(best.best_model_path) if best.best_model_path else None
    if path is None or not path.is_file() or best.best_model_score is None:
        result.notes.append(f"weights: the last step's (no validation scored {best.monitor})")
        return {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    score = float(best.best_model_score)
    result.notes.append(
        f"weights: the best validation by {best.monitor} ({best.mode}), {score:.4f} at step {state['global_step']}"
        f" ({path.name}), not the last step's"
    )
    return {"kept_step": float(state["global_step"]), "kept_score": score}


def train_recipe(
    config: VLRecipeConfig, scale: str, *, root: Path | None = None, force: bool = False, verbose: bool = False
) -> RunResult:
    """Train ``config`` unless a finished run with the same config exists; returns its result.

    Library warnings and Lightning's info lines go to the run's ``train.log`` (``verbose``: to the terminal too).
    One process at a time per run folder: a second identical run waits for the first, then reuses it
    (``run_safety.run_lock``).
    """
    with run_lock(run_dir(run_name(config, scale), config_hash(config), root)):
        return _train_unless_finished(config, scale, root=root, force=force, verbose=verbose)


def _train_unless_finished(
    config: VLRecipeConfig, scale: str, *, root: Path | None, force: bool, verbose: bool
) -> RunResult:
    name = run_name(config, scale)
    if not force and (done := find_finished_run(name, config, root)) is not None:
        console.print(f"[green]reusing finished run[/] {run_dir(name, config_hash(config), root)}")
        return done
    with library_output(run_dir(name, config_hash(config), root) / TRAIN_LOG, verbose):
        return _train(config, scale, name, root)


def _train(config: VLRecipeConfig, scale: str, name: str, root: Path | None) -> RunResult:
    retrieval = config.data.retrieval_eval if config.task == "vl" else []
    zero_shot = [config.train.zero_shot_val] if config.train.zero_shot_val else []
    fingerprints = check_data(config.data.train + retrieval + zero_shot, scale)  # before a parent run is trained
    parent = trained_parent(config, scale, root)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    # a run started from a trained student keeps its vocabulary
    tokenizer = parent.tokenizer if parent is not None else build_tokenizer(config, scale)
    d, t = config.data, config.train
    dataset, collate, pairs = build_training_data(config, tokenizer, scale)
    train_set = SeededSamples(dataset)
    devices = training_devices(t)
    check_launch(devices, t.num_nodes)
    check_steps(len(train_set), d.batch_size, devices * t.num_nodes)
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
    if parent is not None:
        module.start_from(parent.model.state_dict(), read_itc_log_scales(parent.folder))
    resume = resume_checkpoint(run_dir(name, config_hash(config), root) / "checkpoints")  # a broken one moved aside
    on_cpu = t.accelerator == "cpu" or not torch.cuda.is_available()
    if config.teacher.prefit_steps and module.teacher is not None and resume is None:
        # (a resumed run restores the pre-fitted teacher from its checkpoint)
        with cpu_threads(d.num_workers if on_cpu else None):
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

    val_loader, zero_shot_val = None, None
    if t.val_every_n_steps:
        val_set, val_collate = build_validation_data(config, tokenizer, scale)
        if isinstance(module, VLDistillationModule) and tokenizer is not None:
            names = getattr(val_set, "label_names", [])
            if t.zero_shot_val:  # val/zero_shot_top1, _top5 on that dataset (the callback; not the val pairs)
                zero_shot_val = build_zero_shot_validation(config, tokenizer, scale)
            elif names:  # val/zero_shot_top1 on the val split's classes
                module.zero_shot_prompts = tokenizer.pad(
                    tokenizer.encode_ids([format_prompts(n, [PHOTO_TEMPLATE])[0] for n in names], d.max_text_length)
                )
        logged = ["val/zero_shot_top1"] if getattr(module, "zero_shot_prompts", None) is not None else []
        logged = ["val/zero_shot_top1", "val/zero_shot_top5"] if zero_shot_val is not None else logged
        monitored = t.keep_best.rpartition(":")[0]
        if monitored.startswith("val/zero_shot") and monitored not in logged:
            raise ConfigError(
                f"train.keep_best={t.keep_best} monitors a zero-shot accuracy this run does not log"
                f" (it logs {', '.join(logged) or 'none'}; train.zero_shot_val is empty)",
                "set train.zero_shot_val=imagenet (a prepared labelled dataset), or train.keep_best=val/loss:min",
            )
        # in order; its own generator, so validating draws nothing from the global RNG the training uses
        val_loader = torch.utils.data.DataLoader(
            val_set,
            batch_size=d.batch_size,
            shuffle=False,
            num_workers=d.num_workers,
            collate_fn=val_collate,
            generator=torch.Generator().manual_seed(t.seed),
            persistent_workers=d.num_workers > 0,
        )

    recorder = RunRecorder(name, scale, config, root=root, datasets=fingerprints, enabled=launched_rank_zero())
    out_dir = recorder.dir
    history = LossHistory(out_dir / LOSSES)
    ckpt_dir = out_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=t.checkpoint_every_n_steps, save_last=True, save_top_k=0,
        enable_version_counter=False,  # one last.ckpt, replaced atomically; never a stray last-v1.ckpt
    )
    callbacks = [KeepLoggedMetrics(out_dir / METRICS), history, Throughput(), RNGState(), ResumeDataOrder(), checkpoint]
    if zero_shot_val is not None:
        callbacks.insert(0, zero_shot_val)  # before the checkpoints, which read what it logs
    best = None
    if t.keep_best:
        metric, _, mode = t.keep_best.rpartition(":")
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=metric, mode=mode, save_top_k=1)
        callbacks.append(best)
    trainer = L.Trainer(
        accelerator="cpu" if on_cpu else t.accelerator,
        devices=devices,
        num_nodes=t.num_nodes,  # the ranks come from torchrun / SLURM variables (Lightning's cluster environments)
        strategy="ddp" if devices * t.num_nodes > 1 else "auto",  # gloo on CPU, nccl on GPU
        plugins=[AtomicCheckpointIO()],
        precision=training_precision(t.precision, on_cpu),
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        log_every_n_steps=t.log_every_n_steps,
        default_root_dir=str(out_dir),
        logger=build_loggers(config, out_dir, f"{name}/{recorder.hash}"),
        callbacks=callbacks,
        use_distributed_sampler=False,  # ResumableSampler shards by rank itself
        enable_model_summary=False,
        deterministic=on_cpu,
        num_sanity_val_steps=0,
        # validation every val_every_n_steps optimisation steps, counted over epochs
        val_check_interval=t.val_every_n_steps if val_loader is not None else None,
        check_val_every_n_epoch=None if val_loader is not None else 1,
        limit_val_batches=(t.val_batches or 1.0) if val_loader is not None else 0,
    )
    # the frozen teacher is in eval mode on purpose (REFERENCE.md §10 item 16)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    with recorder, cpu_threads(d.num_workers if on_cpu else None):
        if resume is not None:
            console.print(f"resuming from {resume}")
        trainer.fit(module, loader, val_loader, ckpt_path=str(resume) if resume is not None else None, weights_only=True)
        if trainer.global_step == 0:
            raise MMThesisError(
                "the run did no optimisation step", "check data.batch_size against the training data's size"
            )
        if not trainer.is_global_zero:
            return recorder.result  # rank 0 writes the run folder
        kept = _keep_best(module, best, recorder.result) if best is not None else None
        scales = module.itc_log_scales() if isinstance(module, VLDistillationModule) else None
        write_artifact(out_dir, config, scale, module.student, tokenizer, history.rows, itc_log_scales=scales)
        recorder.result.metrics = _summary(history.rows) | _validation_summary(out_dir) | (kept or {})
        recorder.result.metrics["parameters_student"] = float(sum(p.numel() for p in module.student.parameters()))
        if config.model.size == "tiny":
            recorder.result.notes.append(smoke_note(config))
        if parent is not None:
            recorder.result.notes.append(f"started from the finished run {parent.folder} ({config.init.from_recipe})")
    return recorder.result


def trained_parent(config: VLRecipeConfig, scale: str, root: Path | None = None) -> TrainedRun | None:
    """The finished run ``config`` starts from (``init.from_recipe``), trained first if none of its config exists.

    The parent's config hash is part of ``config`` (``init.parent_hash``, filled in by ``load_recipe``); a stale
    one (the parent recipe changed since) is an error rather than a silent start from other weights.
    """
    if not config.init.from_recipe:
        return None
    parent = parent_config(config, scale)
    digest = config_hash(parent)
    if config.init.parent_hash != digest:
        raise ConfigError(
            f"init.parent_hash {config.init.parent_hash or '(empty)'} is not the hash of the parent"
            f" {parent.recipe}'s config at scale {scale} ({digest})",
            "load the config with load_recipe, which fills it in",
        )
    train_recipe(parent, scale, root=root)  # reuses a finished run of this config
    return load_trained(run_dir(run_name(parent, scale), digest, root))


def training_devices(t: TrainConfig) -> int:
    """Processes per node: ``train.devices`` on GPUs or with ``train.accelerator=cpu`` (DDP over gloo); one
    when a GPU recipe (accelerator auto) falls back to a machine without GPUs."""
    on_cpu = t.accelerator == "cpu" or not torch.cuda.is_available()
    return t.devices if t.accelerator == "cpu" or not on_cpu else 1


def check_steps(examples: int, batch_size: int, world: int) -> None:
    """Refuse a run that would take no step: each of ``world`` processes gets ``examples // world`` samples in
    full batches only (``drop_last``), so a batch larger than that trains nothing."""
    per_process = examples // world
    if per_process < batch_size:
        processes = f"each of the {world} processes gets {per_process} of them" if world > 1 else "one process"
        raise ConfigError(
            f"data.batch_size={batch_size} is larger than the {examples} training examples ({processes}):"
            " with drop_last no training step would be taken",
            f"set data.batch_size to at most {per_process}" if per_process else "use more training data",
        )


@contextmanager
def cpu_threads(num_workers: int | None) -> Iterator[None]:
    """On CPU, the trainer computes with the threads its loader workers leave free (at least one), then restores.

    Why: torch's default of one thread per core plus busy loader workers oversubscribes the cores, and spinning
    OpenMP threads then cost more than they compute (the smoke teacher pre-fit on the shared 2-core test machine, one
    loader worker: 65 s with 2 threads, 6 s with 1).
    ``None`` (not on CPU) leaves the setting alone.
    """
    before = torch.get_num_threads()
    if num_workers:
        torch.set_num_threads(max(1, before - num_workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def training_precision(requested: str, on_cpu: bool) -> str:
    """The Lightning precision a run uses: fp32 on CPU; ``bf16-mixed`` falls back to fp16 AMP (``16-mixed``, what
    the thesis ran) on GPUs without bf16, with a note; anything else as requested."""
    if on_cpu:
        return "32-true"
    if requested == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        console.print("[yellow]this GPU has no bf16:[/] training with fp16 AMP (16-mixed), as the thesis did")
        return "16-mixed"
    return requested


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
    if config.init.from_recipe:
        parts.append(f"the student starts from the finished {config.init.from_recipe} run of this scale")
    else:
        parts.append(f"pretrained parts: {', '.join(pretrained)}" if pretrained else "tiny random-initialised encoders")
    if config.teacher.precomputed_targets:
        parts.append(f"teacher targets precomputed ({config.teacher.precomputed_targets})")
    elif config.teacher.prefit_steps and config.uses_teacher:
        parts.append(f"teacher pre-fitted for {config.teacher.prefit_steps} steps on the smoke images' labels")
    elif not config.teacher.checkpoint and config.uses_teacher:
        parts.append("random-initialised teacher")
    return "; ".join(parts)
