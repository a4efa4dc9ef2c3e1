"""Train a VAE recipe with Lightning, on the students' run infrastructure.

Same run folder and config-hash cache as the student recipes (a finished run with the same config is reused, an
interrupted one resumes from ``checkpoints/last.ckpt`` loaded ``weights_only``), same exact-resume data order
(``ResumableDataLoader`` / ``ResumableSampler`` / ``SeededSamples``, RNG state callback), ``losses.csv`` and
Lightning's CSV log at ``logs/metrics.csv``. After training, the test split of ``data.test`` is scored
(``MultimodalVAE.evaluate``) into result.json and a few cross-modal generations go to ``samples.json``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from mmthesis.core.config import config_hash
from mmthesis.core.console import console
from mmthesis.core.io import atomic_write_text
from mmthesis.core.registry import unknown_name
from mmthesis.core.results import RunRecorder, RunResult, find_finished_run, run_dir
from mmthesis.data.image_text import ImageTextPairs
from mmthesis.data.manifest import iter_split
from mmthesis.data.registry import check_data, prepared
from mmthesis.data.tokenizers import Tokenizer, bert_wordpiece, load_dataset_tokenizer, train_wordpiece
from mmthesis.data.transforms import eval_transform
from mmthesis.students.artifact import LOSSES
from mmthesis.students.callbacks import LossHistory, ResumeDataOrder, RNGState
from mmthesis.students.distributed import ResumableDataLoader, ResumableSampler, SeededSamples
from mmthesis.students.paths import resolve_path
from mmthesis.students.train import cpu_threads, training_precision
from mmthesis.vae.artifact import SAMPLES, load_pretrained, run_name, write_vae_artifact
from mmthesis.vae.config import VAERecipeConfig
from mmthesis.vae.model import MultimodalVAE

__all__ = ["VAEModule", "build_vae_tokenizer", "evaluate_vae", "train_vae"]


class VAEModule(L.LightningModule):
    """The optimisation of a ``MultimodalVAE``: AdamW, optional linear warm-up, the recipe's objective."""

    def __init__(self, config: VAERecipeConfig, model: MultimodalVAE) -> None:
        super().__init__()
        self.config = config
        self.vae = model

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        out = self.vae.loss(batch.image, batch.text_ids, batch.text_padding_mask, self.config.loss)
        n = len(batch)
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=n)
        self.log("train/bound", out["bound"], batch_size=n)
        return out["loss"]

    def configure_optimizers(self) -> Any:
        o = self.config.optim
        params = [p for p in self.vae.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        if o.warmup_steps <= 0:
            return opt
        warm = o.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_vae_tokenizer(config: VAERecipeConfig, scale: str, pretrained: Any = None) -> Tokenizer:
    """The run's tokenizer: the pretrained model's own if it has one (its text encoder reads those ids), else
    ``data.tokenizer`` (``dataset``, ``train-wordpiece`` or a BERT vocab.txt)."""
    if pretrained is not None and pretrained.tokenizer is not None:
        return pretrained.tokenizer
    d = config.data
    if d.tokenizer == "dataset":
        return load_dataset_tokenizer(prepared(d.train[0], scale))
    if d.tokenizer == "train-wordpiece":
        captions = [c for n in d.train for s in iter_split(prepared(n, scale), "train") for c in s["json"]["captions"]]
        return train_wordpiece(captions, d.tokenizer_vocab_size)
    if not any(c in d.tokenizer for c in "/\\:."):
        raise unknown_name("tokenizer", d.tokenizer, ["dataset", "train-wordpiece"], also="or a vocab.txt path")
    return bert_wordpiece(str(resolve_path(d.tokenizer)))


def _pairs(config: VAERecipeConfig, names: list[str], split: str, tokenizer: Tokenizer, scale: str) -> list[ImageTextPairs]:
    # no augmentation: a flip would swap the captions' left/right, and the VAE reconstructs what it reads
    transform = eval_transform(config.model.img_size)
    return [
        ImageTextPairs(prepared(n, scale), split, tokenizer, transform, max_length=config.data.max_text_length)
        for n in names
    ]


def train_vae(config: VAERecipeConfig, scale: str, *, root: Path | None = None, force: bool = False) -> RunResult:
    """Train ``config`` unless a finished run with the same config exists; returns its result."""
    name = run_name(config, scale)
    if not force and (done := find_finished_run(name, config, root)) is not None:
        console.print(f"[green]reusing finished run[/] {run_dir(name, config_hash(config), root)}")
        return done
    d, t = config.data, config.train
    test_name = d.test or d.train[0]
    fingerprints = check_data([*d.train, test_name], scale)
    L.seed_everything(t.seed, workers=True, verbose=False)
    pretrained = load_pretrained(config, scale)
    tokenizer = build_vae_tokenizer(config, scale, pretrained)
    parts = _pairs(config, d.train, "train", tokenizer, scale)
    dataset = SeededSamples(torch.utils.data.ConcatDataset(parts))
    loader = ResumableDataLoader(
        dataset,
        batch_size=d.batch_size,
        sampler=ResumableSampler(len(dataset), t.seed),
        drop_last=True,
        num_workers=d.num_workers,
        collate_fn=parts[0].collate,
        generator=torch.Generator().manual_seed(t.seed),
        persistent_workers=d.num_workers > 0,
    )
    model = MultimodalVAE(config.model, tokenizer, pretrained)
    module = VAEModule(config, model)
    recorder = RunRecorder(name, scale, config, root=root, datasets=fingerprints)
    out_dir = recorder.dir
    history = LossHistory(out_dir / LOSSES)
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", every_n_train_steps=t.checkpoint_every_n_steps, save_last=True, save_top_k=0
    )
    on_cpu = t.accelerator == "cpu" or not torch.cuda.is_available()
    trainer = L.Trainer(
        accelerator="cpu" if on_cpu else t.accelerator,
        devices=1 if on_cpu else t.devices,
        precision=training_precision(t.precision, on_cpu),
        max_epochs=t.epochs,
        max_steps=t.max_steps,
        log_every_n_steps=t.log_every_n_steps,
        default_root_dir=str(out_dir),
        logger=CSVLogger(save_dir=str(out_dir), name="logs", version=""),
        callbacks=[history, RNGState(), ResumeDataOrder(), checkpoint],
        use_distributed_sampler=False,
        enable_model_summary=False,
        deterministic=on_cpu,
        num_sanity_val_steps=0,
    )
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    resume = out_dir / "checkpoints" / "last.ckpt"
    with recorder, cpu_threads(d.num_workers if on_cpu else None):
        if resume.is_file():
            console.print(f"resuming from {resume}")
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(module, loader, ckpt_path=str(resume) if resume.is_file() else None, weights_only=True)
        train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        model.eval()
        write_vae_artifact(out_dir, config, scale, model)
        test = _pairs(config, [test_name], "test", tokenizer, scale)[0]
        metrics, samples = evaluate_vae(model, test, d.test_samples, seed=t.seed)
        atomic_write_text(out_dir / SAMPLES, json.dumps(samples, indent=2))
        recorder.result.metrics = {
            **metrics,
            "train_time_s": round(train_s, 2),
            "train_cpu_s": round(train_cpu_s, 2),  # this process's CPU time (wall time varies with other load)
            "steps": float(trainer.global_step),
            "train_loss_last": _last_mean(history.rows),
            "parameters": float(sum(p.numel() for p in model.parameters())),
        }
        recorder.result.notes.append(
            f"{config.model.aggregation} joint posterior"
            + (f" with {config.model.private_dim}-d private latents (MMVAE+)" if config.model.private_dim else "")
            + f", {config.loss.estimator} objective"
            f"{f' (K={config.loss.k})' if config.loss.estimator != 'elbo' else ''}, {config.model.encoder} encoders"
            + (f" on {config.model.pretrained}" if config.model.pretrained else "")
        )
    return recorder.result


def _last_mean(rows: list[dict[str, float]]) -> float:
    values = [r["loss"] for r in rows if "loss" in r][-max(5, len(rows) // 10):]
    return sum(values) / len(values) if values else math.nan


@torch.no_grad()
def evaluate_vae(
    model: MultimodalVAE, pairs: ImageTextPairs, limit: int = 0, seed: int = 0, batch_size: int = 128, show: int = 8
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Mean test scores (nats per image-caption pair, see ``MultimodalVAE.evaluate``) over the first ``limit``
    pairs (0 = all) in a seeded order, and greedy captions of the first ``show`` test images with their references.

    ``caption_exact_match``: the share of scored images whose greedy caption (from the image alone) equals one of
    the image's reference captions (lower-cased WordPiece round trip), a strict cross-modal coherence check.
    """
    model.eval()
    device = next(model.parameters()).device
    n = len(pairs) if limit <= 0 else min(limit, len(pairs))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    sums: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            batch = pairs.collate([pairs[i] for i in order[start : start + batch_size]]).to(device)
            scores = model.evaluate(batch.image, batch.text_ids, batch.text_padding_mask)
            for k, v in scores.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
    metrics = {f"test_{k}": v / n for k, v in sums.items()}
    metrics["test_pairs"] = float(n)
    # cross-modal generation: a caption from each image, exact-match against its references
    rows = sorted({int(pairs.pair_image[i]) for i in order})
    tok = model.tokenizer
    matches, samples = 0, []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        read = [pairs.read_image(r) for r in chunk]
        images = torch.stack([pairs.transform(img) for _, img, _ in read]).to(device)
        generated = model.decode_text(model.latent_image(images), max_len=pairs.max_length)
        for (image_id, _, refs), text in zip(read, generated, strict=True):
            norm_refs = {tok.decode(tok.encode_ids([r], pairs.max_length)[0]) for r in refs}
            matches += text in norm_refs
            if len(samples) < show:
                samples.append({"image_id": image_id, "generated": text, "references": refs})
    metrics["test_caption_exact_match"] = matches / max(1, len(rows))
    metrics["test_images"] = float(len(rows))
    return metrics, samples
