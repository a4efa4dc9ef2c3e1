"""Global-batch contrastive loss under DDP, and a resumable, rank-sharded data order (REFERENCE.md §3.4).

The thesis's DDP runs all-gather image and text features *with gradient* (BEiT-3's
``GatherLayer``) so that every contrastive loss sees the global batch of B·P pairs.
Gradient bookkeeping, with P ranks each holding B local pairs and L_r the mean
loss of rank r's B local queries against all B·P gathered keys:

* the global loss (mean over all B·P queries) is L = (1/P) Σ_r L_r;
* ``gather_with_grad``'s backward sums, over ranks, the gradient each rank's loss
  sends to a gathered slice and hands rank q the slice it contributed, so
  rank q's parameter gradient is g_q = Σ_r ∂L_r/∂θ |through x_q (plus, for
  replicated parameters such as the logit scale, ∂L_q/∂θ directly);
* DDP averages: (1/P) Σ_q g_q = (1/P) Σ_r Σ_q ∂L_r/∂θ|through x_q = (1/P) Σ_r dL_r/dθ = dL/dθ.

So with the *local mean* per rank and a *summing* backward no extra scale is needed:
the DDP gradient equals the single-process gradient of the global-batch loss
(checked by tests/students/test_distributed.py with 2 gloo processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from mmthesis.students.losses import MAX_LOGIT_SCALE


def world_info() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward all-reduces (sums) the incoming gradients and returns this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, world = world_info()
        ctx.rank, ctx.local = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.local : (ctx.rank + 1) * ctx.local]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) over ranks, rank order, keeping the autograd graph.

    Identity when torch.distributed is not initialised or has one rank.
    """
    _, world = world_info()
    if world == 1:
        return x
    return _GatherWithGrad.apply(x)


def global_clip_contrastive_loss(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """CLIP ITC over the global batch: this rank's B queries against all B·P gathered keys.

    Targets are ``arange(B) + rank·B``; the per-rank value is the mean over local
    queries, so the mean over ranks is the global-batch loss and DDP's gradient
    average is its exact gradient (module docstring). On one process it equals
    ``losses.clip_contrastive_loss``.
    """
    rank, _ = world_info()
    scale = log_scale.clamp(0.0, MAX_LOGIT_SCALE).exp()
    img, txt = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    all_img, all_txt = gather_with_grad(img), gather_with_grad(txt)
    targets = torch.arange(img.shape[0], device=img.device) + rank * img.shape[0]
    i2t = scale * img @ all_txt.t()
    t2i = scale * txt @ all_img.t()
    return 0.5 * (F.cross_entropy(i2t, targets) + F.cross_entropy(t2i, targets))


# -- resumable data order ---------------------------------------------------------------------------


class SeededSamples(Dataset):
    """Wraps a map-style dataset so each sample's augmentation is seeded by (seed, epoch, index).

    The random crop/flip then depends on neither worker count, prefetching nor
    the global RNG, which is what lets a resumed run redraw exactly the same views.
    Keys are ``(index, sample_seed)`` pairs produced by ``ResumableSampler``.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only (what fork_rng restores): torch.manual_seed would also (lazily) reseed every
            # GPU and format a stack trace per call, a third of a smoke step's time at batch 64
            torch.default_generator.manual_seed(seed)
            return self.base[index]


class ResumableSampler(Sampler[tuple[int, int]]):
    """Shuffled order that is a pure function of (seed, epoch), sharded over ranks (replaces DistributedSampler).

    Each epoch draws ``randperm(n)`` from a generator seeded with ``seed + epoch``,
    truncates it to a multiple of the world size and gives rank r every P-th entry;
    ``skip`` drops the first entries of the next iteration (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self.skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        rank, world = world_info()
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        perm = perm[: (self.n // world) * world]
        return perm[rank::world].tolist()

    def __len__(self) -> int:
        return self.n // world_info()[1]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self.skip = self.skip, 0
        base = (self.seed * 1_000_003 + self.epoch) * self.n
        for i in self._indices()[skip:]:
            yield i, (base + i) % (2**63 - 1)


class ResumableDataLoader(DataLoader):
    """DataLoader with Lightning's ``state_dict``/``load_state_dict`` interface: (epoch, batches consumed).

    Lightning 2.6 saves the state of such "stateful" loaders in the fit loop's
    checkpoint and loads it before re-creating the iterator; a plain DataLoader
    would restart the interrupted epoch from its first batch. The count is taken
    where batches leave the loader, so worker prefetching does not skew it (and
    Lightning does not prefetch sized loaders). Needs ``drop_last=True`` and a
    ``ResumableSampler``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler) or not self.drop_last:
            raise ValueError("ResumableDataLoader needs sampler=ResumableSampler(...) and drop_last=True")
        self._consumed = 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        skip = 0
        if self._resume is not None and self._resume[0] == sampler.epoch and self._resume[1] < len(self):
            skip = self._resume[1]
        self._resume = None
        sampler.skip = skip * self.batch_size  # type: ignore[operator]
        self._consumed = skip
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._consumed}  # type: ignore[union-attr]

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])  # type: ignore[union-attr]
        self._resume = (state["epoch"], state["batches"])
