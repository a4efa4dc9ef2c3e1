"""Lightning training of the vision-language students: ITC + distillation of a frozen teacher.

One module covers every multimodal experiment of the thesis, selected by the config:

* KD (``loss.kd``): ``kl`` on a supervised teacher's class distributions (SHRe §3.3,
  SHRe_T §3.5, BEiTv2-FT §3.11), ``mse`` feature KD (S-SMKE §3.6), ``contrastive``
  distillation with or without a teacher memory bank (CDL / CDL_MB §3.10, teacher
  ablations §3.11), ``tcmli`` (§3.9), ``none`` (ITC only, §3.11);
* ITC: on the shared CLS (plus the fc1 CLS, §10 item 6, or SHRe's three MLP layers),
  over the global batch; optionally with FIFO banks of past student embeddings or a
  momentum encoder (§3.8).

The teacher is frozen, in eval mode and run under ``no_grad`` for the whole run
(§10 item 16). The unimodal distillations live in ``unimodal_module``; both share
``TrainingModule`` (optimiser, schedule, NaN stop).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.core.errors import CheckpointError, MMThesisError
from mmthesis.core.registry import lookup
from mmthesis.data.batch import Batch
from mmthesis.students.config import VLRecipeConfig
from mmthesis.students.distributed import gather_with_grad, global_clip_contrastive_loss, world_info
from mmthesis.students.losses import (
    MAX_LOGIT_SCALE,
    clip_contrastive_loss,
    clip_contrastive_loss_with_bank,
    contrastive_distillation_loss,
    kl_distillation_loss,
    mse_distillation_loss,
    tcmli_distillation_parts,
)
from mmthesis.students.memory_bank import TeacherMemoryBank
from mmthesis.students.model import SSMKE, StudentOutput
from mmthesis.students.paths import resolve_checkpoint, resolve_path
from mmthesis.students.precompute import TargetTable
from mmthesis.students.schedules import cosine_with_warmup
from mmthesis.students.validation import RetrievalAccumulator, image_keys, zero_shot_top1
from mmthesis.teachers import TeacherModule, TeacherOutput, get_spec, load_teacher

CNN_TEACHERS = ("resnet50_a1", "efficientnet_lite0")  # fixed input handling, no patch grid
NO_DECAY_NAME_PARTS = ("cls_token", "pos_embed", "extra_tokens", "position", "token_type", "log_scale", "gamma")
# the thesis code's parameter groups exempt every name containing "embeddings" (BERT's word embeddings among them)
NO_DECAY_EMBEDDINGS = "embeddings"


def decays(name: str, param: torch.Tensor, no_decay_embeddings: bool = True) -> bool:
    """Whether AdamW decays this trainable parameter (weight decay groups of the thesis code).

    Exempt: 1-D parameters, biases, positions, CLS / extra tokens, token types, logit scales, LayerScale
    gammas and, with ``optim.no_decay_embeddings`` (the code's rule ``'embeddings' in name``), every
    parameter named *embeddings* (BERT's word, position and token-type tables).
    """
    if param.ndim <= 1 or name.endswith(".bias") or any(part in name for part in NO_DECAY_NAME_PARTS):
        return False
    return not (no_decay_embeddings and NO_DECAY_EMBEDDINGS in name)


class NonFiniteLossError(MMThesisError):
    """The loss became NaN/Inf: the run stops and keeps its last good checkpoint."""


def build_teacher(config: VLRecipeConfig, **extra: object) -> TeacherModule:
    """The frozen teacher of a recipe (random weights without a checkpoint: smoke scale)."""
    m, t = config.model, config.teacher
    kw = {**extra, **t.overrides}
    if get_spec(t.name).modality == "image" and t.name not in CNN_TEACHERS:
        kw = {"img_size": m.img_size, "patch_size": m.patch_size, **kw}
    return load_teacher(t.name, path=resolve_checkpoint(t.name, t.checkpoint), size=m.size, **kw)


class TrainingModule(L.LightningModule):
    """What every recipe's module shares: AdamW + cosine with warmup, NaN stop, frozen teacher in eval mode."""

    teacher: TeacherModule | None
    config: VLRecipeConfig
    # called with a stage name as each stage of a step ends (memory_profile.stage_memory); None in training
    stage_hook: Callable[[str], None] | None = None

    def _stage(self, name: str) -> None:
        if self.stage_hook is not None:
            self.stage_hook(name)

    @property
    def validating(self) -> bool:
        """In the trainer's validation loop (where every rank sees the same val batches, ``train.py``)."""
        return self._trainer is not None and self._trainer.validating

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.global_step}",
                "lower optim.lr or check the data; the last good checkpoint is kept in the run folder",
            )

    def train(self, mode: bool = True) -> TrainingModule:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen teacher stays in eval mode (no dropout / drop-path)
        return self

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """``val/loss``: the training loss on a val batch (Lightning runs this in eval mode without grad)."""
        out = self.losses(batch)
        bs = len(batch)
        for key in ("loss", "itc", "kd", "kd_image", "kd_text"):
            if key in out:
                self.log(f"val/{key}", out[key], batch_size=bs)
        return out

    def configure_optimizers(self):  # type: ignore[override]
        """AdamW (weight decay as ``decays``) + cosine with linear warmup."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        world = self.trainer.world_size
        optimizer, scheduler = optimizer_and_schedule(self.config, self.named_parameters(), world, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_steps(config: VLRecipeConfig, total: int) -> int:
    return int(config.optim.warmup_fraction * total)


def optimizer_and_schedule(
    config: VLRecipeConfig, named_parameters: Iterable[tuple[str, nn.Parameter]], world_size: int, total: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser and LR schedule of every recipe (one home, so Tables 31/33/35/36 read what training builds).

    AdamW over trainable non-teacher parameters (weight decay as ``decays``) at base LR x ``world_size`` when
    ``optim.scale_lr_with_devices`` (§10 item 10); linear warmup then cosine decay over ``total`` steps.
    """
    o = config.optim
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad or name.startswith("teacher."):
            continue
        (decay if decays(name, p, o.no_decay_embeddings) else no_decay).append(p)
    world = world_size if o.scale_lr_with_devices else 1
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr * world,
        betas=o.betas,
        eps=o.eps,
    )
    warmup = warmup_steps(config, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_with_warmup(step, warmup, total))
    return optimizer, scheduler


def _log_scale(temperature: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(math.log(1.0 / temperature)))


class VLDistillationModule(TrainingModule):
    def __init__(self, config: VLRecipeConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        m, loss = config.model, config.loss
        # precomputed targets replace the teacher forward (precompute.py); otherwise the frozen teacher runs
        self.target_table = (
            TargetTable(resolve_path(config.teacher.precomputed_targets), config)
            if config.teacher.precomputed_targets
            else None
        )
        self.teacher = build_teacher(config) if loss.kd != "none" and self.target_table is None else None
        kd_dim = None
        if self.target_table is not None:
            kd_dim = self.target_table.dim
        elif self.teacher is not None:
            if loss.kd == "kl":
                kd_dim = int(self.teacher.config.get("num_classes", 0))
                if not kd_dim:
                    raise MMThesisError(
                        f"loss.kd=kl needs a supervised teacher with class logits, not {config.teacher.name}",
                        "use teacher.name=resnet50_a1, efficientnet_lite0 or beitv2_base_ft1k",
                    )
            else:
                kd_dim = self.teacher.embed_dim
        # a run started from a trained student gets its weights in ``start_from``: no encoder checkpoints to read
        self.student = SSMKE(m, vocab_size, kd_dim, load_pretrained=not config.init.from_recipe)
        # one learnable temperature per ITC term (init 0.07, log space, clamped to [0, ln 100])
        self.log_scale = _log_scale(m.itc_init_temperature)
        with_fc1 = m.itc_on_fc1 or m.shared == "mlp"
        self.log_scale_fc1 = _log_scale(m.itc_init_temperature) if with_fc1 else None
        self.log_scale_mid = _log_scale(m.itc_init_temperature) if m.shared == "mlp" else None
        kd_log_scale = torch.tensor(math.log(loss.kd_logit_scale))
        if loss.kd_learnable_scale:
            self.kd_log_scale = nn.Parameter(kd_log_scale)
        else:
            self.register_buffer("kd_log_scale", kd_log_scale)
        generator = torch.Generator().manual_seed(config.train.seed)
        use_bank = loss.kd == "contrastive" and loss.memory_bank_size > 0
        self.bank = TeacherMemoryBank(loss.memory_bank_size, kd_dim, generator) if use_bank else None
        self.tcmli_proj = nn.Linear(kd_dim, loss.tcmli_dim) if loss.kd == "tcmli" else None
        # §3.8: banks of past student (or momentum-encoder) CLS embeddings as extra ITC negatives
        self.itc_banks = None
        self.momentum_student = None
        if loss.itc_memory_bank_size:
            dim = self.student.embed_dim if m.shared == "transformer" else kd_dim
            self.itc_banks = nn.ModuleList(
                [TeacherMemoryBank(loss.itc_memory_bank_size, dim, generator) for _ in range(2)]
            )
            if loss.itc_momentum:
                self.momentum_student = copy.deepcopy(self.student).requires_grad_(False)

    @torch.no_grad()
    def start_from(self, state: Mapping[str, torch.Tensor], itc_log_scales: Mapping[str, float]) -> None:
        """Take over a trained student (``init.from_recipe``): its weights and its learnt ITC log scales.

        As the retrieval finetuning code (§3.13), which goes on with the pretrained model's logit scale of the
        final CLS: each ITC scale this module has starts at the parent's value of the same name, clamped to
        [0, ln 100] as the code's in-place clamp left it. The parent's KD head is not needed without KD.
        """
        own = self.student.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(k for k in set(state) - set(own) if not k.startswith("kd_head."))
        if missing or unexpected:
            raise CheckpointError(
                f"the parent run's student does not match this recipe's (missing {missing[:3]}, unexpected"
                f" {unexpected[:3]})",
                "start from a run of the same model (init.from_recipe, init.overrides)",
            )
        try:
            self.student.load_state_dict({k: state[k] for k in own}, strict=True)
        except RuntimeError as e:  # same names, other shapes
            first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e)[:160])
            raise CheckpointError(f"the parent run's student does not match this recipe's ({first})") from e
        for name in ("log_scale", "log_scale_fc1", "log_scale_mid"):
            param = getattr(self, name)
            if param is None:
                continue
            if name not in itc_log_scales:
                raise CheckpointError(f"the parent run records no ITC logit scale {name!r}", "retrain the parent")
            param.fill_(min(max(itc_log_scales[name], 0.0), MAX_LOGIT_SCALE))
        if self.momentum_student is not None:
            self.momentum_student.load_state_dict(self.student.state_dict())

    def itc_log_scales(self) -> dict[str, float]:
        """The learnt ITC log scales by name (recorded with the run's weights, ``artifact.write_artifact``)."""
        names = ("log_scale", "log_scale_fc1", "log_scale_mid")
        return {n: float(getattr(self, n).detach()) for n in names if getattr(self, n) is not None}

    # -- targets and losses -----------------------------------------------------------------------
    @torch.no_grad()
    def teacher_output(self, images: torch.Tensor) -> torch.Tensor:
        return distillation_target(self.teacher(images), self.config.loss.kd, self.config.teacher.final_norm)

    def targets_for(self, batch: Batch) -> torch.Tensor:
        """The teacher's targets for this batch: precomputed per image, or a teacher forward on its view."""
        if self.target_table is not None:
            return self.target_table.lookup(batch.image_id, batch.image.device)
        teacher_images = getattr(batch, "teacher_image", None)
        return self.teacher_output(batch.image if teacher_images is None else teacher_images)

    def _itc(
        self, img: StudentOutput, txt: StudentOutput, keys: tuple[StudentOutput, StudentOutput] | None
    ) -> torch.Tensor:
        # validation: every rank scores the same unsharded val batches, so the batch is not gathered over ranks
        itc = clip_contrastive_loss if self.validating else global_clip_contrastive_loss
        if self.itc_banks is not None:
            img_bank, txt_bank = (b.bank for b in self.itc_banks)
            k_img, k_txt = (keys[0].cls, keys[1].cls) if keys is not None else (None, None)
            main = clip_contrastive_loss_with_bank(img.cls, txt.cls, self.log_scale, k_img, k_txt, img_bank, txt_bank)
        else:
            main = itc(img.cls, txt.cls, self.log_scale)
        if self.log_scale_mid is not None:  # SHRe: ITC on h', h'', h''' equally weighted (§3.3)
            fc1 = itc(img.fc1_cls, txt.fc1_cls, self.log_scale_fc1)
            mid = itc(img.mid, txt.mid, self.log_scale_mid)
            return (fc1 + mid + main) / 3
        if self.log_scale_fc1 is not None:  # §10 item 6, the code's reading
            return 0.5 * (main + itc(img.fc1_cls, txt.fc1_cls, self.log_scale_fc1))
        return main

    def _kd(
        self, img: StudentOutput, txt: StudentOutput, target: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The image and the text half of the KD loss (``KD_LOSSES``); the KD loss is their mean."""
        return lookup(KD_LOSSES, "loss.kd", self.config.loss.kd)(self, img, txt, target, padding_mask)

    @torch.no_grad()
    def momentum_keys(self, batch: Batch) -> tuple[StudentOutput, StudentOutput]:
        """EMA update of the momentum encoder, then its (no-grad) embeddings of the batch: the ITC keys (§3.8).

        Updating at the start of the step (as the thesis code) rather than after the optimiser step gives the
        same weights, and a checkpoint written at the end of a step then holds the updated encoder.
        """
        assert self.momentum_student is not None
        if self.training:  # validation reads the encoder as it is
            momentum_update(self.momentum_student, self.student, self.config.loss.itc_momentum)
            self._stage("ema_update")
        self.momentum_student.train(self.student.training)
        keys = (
            self.momentum_student.forward_image(batch.image),
            self.momentum_student.forward_text(batch.text_ids, batch.text_padding_mask),
        )
        self._stage("momentum_forward")
        return keys

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-rank losses. ITC is over the global batch (features all-gathered with gradient, §3.4), so
        DDP's gradient average is the exact global-batch gradient (see ``students.distributed``); with
        ITC banks each rank scores its local batch against the banks.

        Contrastive KD (``loss.kd_keys``): "gathered" scores each rank's local student vectors against the
        teacher targets of all ranks (CDL: the thesis formula and the code's KDClipLoss); "local" against
        its own targets + the bank, as the code's CDL_MB run (§10 item 8). The bank is filled with the
        all-gathered targets in ``training_step``. On one process both readings coincide.
        """
        keys, loss_kind = None, self.config.loss.kd
        momentum_first = self.config.loss.itc_momentum_first
        if self.momentum_student is not None and momentum_first:
            keys = self.momentum_keys(batch)  # momentum keys first, as the thesis did to save memory (Figure 26)
        img = self.student.forward_image(batch.image)
        txt = self.student.forward_text(batch.text_ids, batch.text_padding_mask)
        self._stage("student_forward")
        if self.momentum_student is not None and not momentum_first:
            keys = self.momentum_keys(batch)
        out = {"itc": self._itc(img, txt, keys)}
        if self.itc_banks is not None:
            src = keys if keys is not None else (img, txt)
            out["itc_keys"] = torch.stack([src[0].cls.detach(), src[1].cls.detach()])
        if not self.training:  # validation: the retrieval embeddings (what encode_image / encode_text return)
            out["image_embedding"] = F.normalize(self.student.representation(img).float(), dim=-1)
            out["text_embedding"] = F.normalize(self.student.representation(txt).float(), dim=-1)
        # precomputed targets exist for the training images only: validation then has no KD term (val/itc only)
        if loss_kind != "none" and (self.training or self.target_table is None):
            target = self.targets_for(batch).float()
            self._stage("teacher_forward")
            out["kd_image"], out["kd_text"] = self._kd(img, txt, target, batch.text_padding_mask)
            out["kd"] = 0.5 * (out["kd_image"] + out["kd_text"])
            out["target"] = target
        if "kd" in out or loss_kind == "none":
            out["loss"] = out["itc"] + out.get("kd", torch.zeros((), device=out["itc"].device))
        self._stage("loss")
        return out

    def on_validation_epoch_start(self) -> None:
        self._retrieval = RetrievalAccumulator()

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """The val losses, and the pair embeddings for ``val/retrieval_*_r1`` at the end of the validation."""
        out = super().validation_step(batch, batch_idx)
        self._retrieval.add(out["image_embedding"], out["text_embedding"], image_keys(batch.image_id), batch.label)
        return out

    def on_validation_epoch_end(self) -> None:
        """R@1 (percent) over the val pairs seen (the same on every rank: the val loader is not sharded)."""
        scores = self._retrieval.compute()
        if scores is None:
            return
        i2t, t2i, images, labels = scores
        self.log("val/retrieval_i2t_r1", i2t)
        self.log("val/retrieval_t2i_r1", t2i)
        self.log("val/retrieval_r1", 0.5 * (i2t + t2i))
        if labels is not None and self.zero_shot_prompts is not None:
            ids, mask = (t.to(self.device) for t in self.zero_shot_prompts)
            classes = F.normalize(self.student.representation(self.student.forward_text(ids, mask)).float(), dim=-1)
            self.log("val/zero_shot_top1", zero_shot_top1(images, classes.cpu(), labels))

    # (text ids, padding mask) of one prompt per class of the val split, set by train.py when it has class names
    zero_shot_prompts: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- Lightning hooks --------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        loss = out["loss"]
        self.check_finite(loss)
        if self.bank is not None and "target" in out:
            # the frozen teacher's targets stay valid negatives: enqueue them after use (FIFO)
            self.bank.enqueue(self.all_gather(out["target"]).reshape(-1, out["target"].shape[-1]))
        if self.itc_banks is not None:
            keys = self.all_gather(out["itc_keys"])  # (P, 2, B, D) or (2, B, D)
            keys = keys.reshape(-1, *out["itc_keys"].shape).transpose(0, 1)
            for bank, k in zip(self.itc_banks, keys, strict=True):
                bank.enqueue(k.reshape(-1, k.shape[-1]))
        bs = len(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/itc", out["itc"], prog_bar=True, batch_size=bs)
        if "kd" in out:
            self.log("train/kd", out["kd"], prog_bar=True, batch_size=bs)
            self.log("train/kd_image", out["kd_image"], batch_size=bs)
            self.log("train/kd_text", out["kd_text"], batch_size=bs)
        self.log("train/logit_scale", self.log_scale.detach().clamp(0, math.log(100)).exp(), batch_size=bs)
        return loss


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, m: float) -> None:
    """EMA of the student's weights (MoCo/ALBEF): theta_k <- m theta_k + (1 - m) theta_q (§3.8, m = 0.995)."""
    for pk, pq in zip(target.parameters(), source.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


# -- distillation losses by ``loss.kd`` (image and text halves averaged, §3.3-§3.10) --------------------------
# each returns (image half, text half); the KD loss is their mean (logged as train/kd_image, train/kd_text, train/kd)
KDHalves = tuple[torch.Tensor, torch.Tensor]
KDLoss = Callable[["VLDistillationModule", StudentOutput, StudentOutput, torch.Tensor, torch.Tensor], KDHalves]


def kl_kd(module: VLDistillationModule, img: StudentOutput, txt: StudentOutput, target, padding_mask) -> KDHalves:
    """KL to a supervised teacher's class distribution (SHRe §3.3, BEiTv2-FT §3.11)."""
    return kl_distillation_loss(img.kd.float(), target), kl_distillation_loss(txt.kd.float(), target)


def mse_kd(module: VLDistillationModule, img: StudentOutput, txt: StudentOutput, target, padding_mask) -> KDHalves:
    """Feature regression of the teacher's CLS (S-SMKE §3.6)."""
    return mse_distillation_loss(img.kd.float(), target), mse_distillation_loss(txt.kd.float(), target)


def tcmli_kd(module: VLDistillationModule, img: StudentOutput, txt: StudentOutput, target, padding_mask) -> KDHalves:
    """Target cross-modal late interaction on the teacher's patch tokens (§3.9): (L^i2i, L^t2i)."""
    # the regression head maps the student's tokens into the teacher's space (identity-sized at base)
    head = module.student.kd_head
    img_patches = head(img.tokens[:, 1:])
    if img_patches.shape[1] != target.shape[1]:
        raise MMThesisError(
            f"T-CMLI needs the student's patch grid ({img_patches.shape[1]}) to equal the teacher's ({target.shape[1]})",
            "use the same img_size and patch_size for student and teacher",
        )
    valid = ~padding_mask
    sep = valid.sum(1) - 1  # [CLS] t_1 .. t_n [SEP] [PAD]...
    valid = valid.clone()
    valid[:, 0] = False
    valid[torch.arange(valid.shape[0], device=valid.device), sep] = False
    txt_proj = module.tcmli_proj(head(txt.tokens))
    return tcmli_distillation_parts(img_patches, target, txt_proj, module.tcmli_proj(target), valid)


def contrastive_kd(
    module: VLDistillationModule, img: StudentOutput, txt: StudentOutput, target, padding_mask
) -> KDHalves:
    """Contrastive distillation against the teacher's CLS, with or without the teacher bank (CDL / CDL_MB §3.10)."""
    scale = module.kd_log_scale.exp()
    bank = module.bank.bank if module.bank is not None else None
    offset = 0
    if module.config.loss.kd_keys == "gathered" and not module.validating:  # (validation: unsharded, not gathered)
        # every rank's targets as keys (the thesis formula, the code's KDClipLoss); this rank's at rank * B
        rank, _ = world_info()
        offset = rank * target.shape[0]
        target = gather_with_grad(target.detach())
    return (
        contrastive_distillation_loss(img.kd.float(), target, scale, bank, offset),
        contrastive_distillation_loss(txt.kd.float(), target, scale, bank, offset),
    )


# ``loss.kd`` -> its loss ("none" = ITC only: no teacher, no KD term); ``KDKind`` in config.py lists the same names
KD_LOSSES: dict[str, KDLoss] = {"kl": kl_kd, "mse": mse_kd, "tcmli": tcmli_kd, "contrastive": contrastive_kd}
# ``loss.kd`` -> what the student distils from the teacher's output
KD_TARGETS: dict[str, Callable[[TeacherOutput, bool], torch.Tensor]] = {
    "kl": lambda out, final_norm: out.logits,  # class logits
    "tcmli": lambda out, final_norm: out.last_hidden_state[:, 1:],  # patch tokens
    "mse": lambda out, final_norm: teacher_cls(out, final_norm),
    "contrastive": lambda out, final_norm: teacher_cls(out, final_norm),
}


def teacher_cls(out: TeacherOutput, final_norm: bool) -> torch.Tensor:
    """The teacher's CLS after its final norm (``final_norm``) or before it, as the CDL_MB run used BEiTv2's
    pre-norm last-layer CLS (§10 item 8)."""
    return out.cls if final_norm else out.hidden_states[-1][:, 0]


def distillation_target(out: TeacherOutput, kd: str, final_norm: bool) -> torch.Tensor:
    """What the student distils under ``loss.kd`` (``KD_TARGETS``)."""
    return lookup(KD_TARGETS, "loss.kd", kd)(out, final_norm)
