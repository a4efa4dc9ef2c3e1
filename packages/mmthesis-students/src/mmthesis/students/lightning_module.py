"""Lightning training of the S-SMKE family: ITC + (contrastive) distillation of a frozen teacher.

One module covers S-SMKE (MSE KD, §3.6), S-SMKE_CDL (contrastive KD, §3.10)
and S-SMKE_CDL_MB (contrastive KD with a teacher memory bank, the final
model), selected by ``LossConfig``. The teacher is frozen, in eval mode and
run under ``no_grad`` for the whole run (§10 item 16).
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from mmthesis.core.errors import MMThesisError
from mmthesis.data.batch import Batch
from mmthesis.students.config import INIT_LOG_SCALE, VLRecipeConfig
from mmthesis.students.distributed import global_clip_contrastive_loss
from mmthesis.students.losses import contrastive_distillation_loss, mse_distillation_loss
from mmthesis.students.memory_bank import TeacherMemoryBank
from mmthesis.students.model import SSMKE
from mmthesis.teachers import load_teacher

NO_DECAY_NAME_PARTS = ("cls_token", "pos_embed", "extra_tokens", "position", "token_type", "log_scale", "gamma")


class NonFiniteLossError(MMThesisError):
    """The loss became NaN/Inf: the run stops and keeps its last good checkpoint."""


class VLDistillationModule(L.LightningModule):
    def __init__(self, config: VLRecipeConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        m, t = config.model, config.teacher
        self.teacher = None
        kd_dim = None
        if config.loss.kd != "none":
            self.teacher = load_teacher(
                t.name, path=t.checkpoint, size=m.size, img_size=m.img_size, patch_size=m.patch_size
            )
            kd_dim = self.teacher.embed_dim
        self.student = SSMKE(m, vocab_size, kd_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / m.itc_init_temperature)))
        self.log_scale_fc1 = (
            nn.Parameter(torch.tensor(math.log(1.0 / m.itc_init_temperature))) if m.itc_on_fc1 else None
        )
        kd_log_scale = torch.tensor(math.log(config.loss.kd_logit_scale))
        if config.loss.kd_learnable_scale:
            self.kd_log_scale = nn.Parameter(kd_log_scale)
        else:
            self.register_buffer("kd_log_scale", kd_log_scale)
        generator = torch.Generator().manual_seed(config.train.seed)
        self.bank = TeacherMemoryBank(config.loss.memory_bank_size, kd_dim or 1, generator) if kd_dim else None
        assert abs(INIT_LOG_SCALE - math.log(1 / 0.07)) < 1e-12

    # -- targets and losses -----------------------------------------------------------------------
    @torch.no_grad()
    def teacher_targets(self, images: torch.Tensor) -> torch.Tensor:
        out = self.teacher(images)
        # the CDL_MB run used BEiTv2's pre-norm last-layer CLS (§10 item 8)
        return out.cls if self.config.teacher.final_norm else out.hidden_states[-1][:, 0]

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-rank losses. ITC is over the global batch (features all-gathered with gradient, §3.4), so
        DDP's gradient average is the exact global-batch gradient (see ``students.distributed``).

        Contrastive KD keeps the thesis code's reading (§10 item 8, the default): each rank scores its
        *local* student vectors against its local teacher targets + the bank; the bank is then filled
        with the all-gathered targets in ``training_step``. On one process both readings coincide.
        """
        img = self.student.forward_image(batch.image)
        txt = self.student.forward_text(batch.text_ids, batch.text_padding_mask)
        itc = global_clip_contrastive_loss(img.cls, txt.cls, self.log_scale)
        if self.log_scale_fc1 is not None:
            itc = 0.5 * (itc + global_clip_contrastive_loss(img.fc1_cls, txt.fc1_cls, self.log_scale_fc1))
        out = {"itc": itc}
        kd_kind = self.config.loss.kd
        if kd_kind != "none":
            target = self.teacher_targets(batch.image).float()
            if kd_kind == "mse":
                kd = 0.5 * (
                    mse_distillation_loss(img.kd.float(), target) + mse_distillation_loss(txt.kd.float(), target)
                )
            else:
                scale = self.kd_log_scale.exp()
                bank = self.bank.bank if self.bank is not None and self.bank.size else None
                kd = 0.5 * (
                    contrastive_distillation_loss(txt.kd.float(), target, scale, bank)
                    + contrastive_distillation_loss(img.kd.float(), target, scale, bank)
                )
            out["kd"] = kd
            out["target"] = target
        out["loss"] = out["itc"] + out.get("kd", torch.zeros((), device=itc.device))
        return out

    # -- Lightning hooks --------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.global_step}",
                "lower optim.lr or check the data; the last good checkpoint is kept in the run folder",
            )
        if self.bank is not None and "target" in out:
            # the frozen teacher's targets stay valid negatives: enqueue them after use (FIFO)
            self.bank.enqueue(self.all_gather(out["target"]).reshape(-1, out["target"].shape[-1]))
        bs = len(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/itc", out["itc"], prog_bar=True, batch_size=bs)
        if "kd" in out:
            self.log("train/kd", out["kd"], prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", self.log_scale.detach().clamp(0, math.log(100)).exp(), batch_size=bs)
        return loss

    def train(self, mode: bool = True) -> VLDistillationModule:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen teacher stays in eval mode (no dropout / drop-path)
        return self

    def configure_optimizers(self):  # type: ignore[override]
        o = self.config.optim
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad or name.startswith("teacher."):
                continue
            if p.ndim <= 1 or name.endswith(".bias") or any(part in name for part in NO_DECAY_NAME_PARTS):
                no_decay.append(p)
            else:
                decay.append(p)
        world = self.trainer.world_size if o.scale_lr_with_devices else 1
        lr = o.lr * world
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr,
            betas=o.betas,
            eps=o.eps,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(o.warmup_fraction * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_with_warmup(step, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup from 0 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
