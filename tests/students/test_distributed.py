"""DDP with all-gather (REFERENCE.md §3.4): 2 gloo ranks on half batches == one process on the global batch.

Each rank computes its loss on its half, backpropagates and the gradients are
all-reduce-averaged as DDP does; loss (mean over ranks) and gradients must match
the single-process computation to 1e-6. Checked for the bare loss with tiny
projections, for ``VLDistillationModule.losses`` (ITC of the tiny student) and for
contrastive distillation with ``loss.kd_keys=gathered`` (CDL: students against the
teacher targets of both ranks, the code's KDClipLoss); ``kd_keys=local`` (the CDL_MB
code's per-rank keys) differs from the global-batch loss.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmthesis.data.batch import Batch
from mmthesis.students.distributed import gather_with_grad, global_clip_contrastive_loss
from mmthesis.students.losses import clip_contrastive_loss

WORLD, B, IN, D = 2, 4, 6, 5  # B pairs per rank
VOCAB, LEN = 50, 7


def _projection_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x_img, x_txt = torch.randn(WORLD * B, IN, generator=g), torch.randn(WORLD * B, IN, generator=g)
    torch.manual_seed(1)
    model = torch.nn.ModuleDict({"img": torch.nn.Linear(IN, D), "txt": torch.nn.Linear(IN, D)})
    model.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    return model, x_img, x_txt


def _projection_loss(model, x_img, x_txt) -> torch.Tensor:
    return global_clip_contrastive_loss(model["img"](x_img), model["txt"](x_txt), model.log_scale)


def _module_problem(recipe: str = "s-smke-cdl-mb", overrides: tuple[str, ...] = ()):
    from mmthesis.students.lightning_module import VLDistillationModule
    from mmthesis.students.recipes import load_recipe

    overrides = overrides or ("loss.kd=none", "loss.memory_bank_size=0", "model.itc_on_fc1=true")
    config = load_recipe(recipe, "smoke", list(overrides))
    torch.manual_seed(2)
    module = VLDistillationModule(config, vocab_size=VOCAB).eval()  # eval: no dropout, same forward on all ranks
    g = torch.Generator().manual_seed(3)
    n = WORLD * B
    images = torch.randn(n, 3, config.model.img_size, config.model.img_size, generator=g)
    ids = torch.randint(5, VOCAB, (n, LEN), generator=g)
    mask = torch.zeros(n, LEN, dtype=torch.bool)
    mask[::2, -2:] = True  # some padding
    return module, images, ids, mask


def _module_loss(module, images, ids, mask) -> torch.Tensor:
    return module.losses(
        Batch(id=[str(i) for i in range(len(ids))], image=images, text_ids=ids, text_padding_mask=mask)
    )["loss"]


CDL = ("loss.memory_bank_size=0",)  # s-smke-cdl: contrastive KD of a tiny random BEiTv2's CLS, no bank


def _cdl_loss(module, images, ids, mask) -> torch.Tensor:
    return module.losses(
        Batch(id=[str(i) for i in range(len(ids))], image=images, text_ids=ids, text_padding_mask=mask)
    )["kd"]


def _run(model, loss_fn, inputs, rank: int | None) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and gradients; with ``rank`` on that rank's half, DDP-averaged over ranks."""
    if rank is not None:
        inputs = [x[rank * B : (rank + 1) * B] for x in inputs]
    model.zero_grad()
    loss = loss_fn(model, *inputs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    value = loss.detach().clone()
    if rank is not None:
        for g in [*grads.values(), value]:
            dist.all_reduce(g)
            g /= WORLD
    return value.item(), grads


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model, *x = _projection_problem()
        proj = _run(model, _projection_loss, x, rank)
        module, *y = _module_problem()
        mod = _run(module, _module_loss, y, rank)
        cdl = {}
        for keys in ("gathered", "local"):
            module, *y = _module_problem("s-smke-cdl", CDL + (f"loss.kd_keys={keys}",))
            cdl[keys] = _run(module, _cdl_loss, y, rank)
        gathered = gather_with_grad(torch.full((2, 3), float(rank)))
        if rank == 0:
            torch.save({"proj": proj, "module": mod, "cdl": cdl, "gathered": gathered}, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "rank0.pt"
    mp.spawn(_worker, args=(str(tmp / "init"), str(out)), nprocs=WORLD, join=True)
    return torch.load(out, weights_only=True)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_gather_concatenates_in_rank_order(two_rank_results):
    expected = torch.cat([torch.zeros(2, 3), torch.ones(2, 3)])
    assert torch.equal(two_rank_results["gathered"], expected)


def test_ddp_itc_equals_single_process_on_global_batch(two_rank_results):
    model, *x = _projection_problem()
    loss, grads = _run(model, _projection_loss, x, None)
    ddp_loss, ddp_grads = two_rank_results["proj"]
    assert abs(ddp_loss - loss) < 1e-6
    assert _max_diff(ddp_grads, grads) < 1e-6
    assert {"img.weight", "txt.weight", "log_scale"} <= grads.keys()


def test_ddp_module_losses_equal_single_process(two_rank_results):
    module, *y = _module_problem()
    loss, grads = _run(module, _module_loss, y, None)
    ddp_loss, ddp_grads = two_rank_results["module"]
    assert abs(ddp_loss - loss) < 1e-6
    assert _max_diff(ddp_grads, grads) < 1e-6
    assert "log_scale_fc1" in grads and any(k.startswith("student.") for k in grads)


def test_without_process_group_matches_plain_clip_loss():
    model, x_img, x_txt = _projection_problem()
    img, txt = model["img"](x_img), model["txt"](x_txt)
    assert gather_with_grad(img) is img
    got = global_clip_contrastive_loss(img, txt, model.log_scale)
    assert got.item() == pytest.approx(clip_contrastive_loss(img, txt, model.log_scale).item(), abs=1e-6)


def test_ddp_gathered_contrastive_kd_equals_single_process_and_local_does_not(two_rank_results):
    module, *y = _module_problem("s-smke-cdl", CDL)
    loss, grads = _run(module, _cdl_loss, y, None)  # one process: 2B students against 2B targets
    ddp_loss, ddp_grads = two_rank_results["cdl"]["gathered"]
    assert abs(ddp_loss - loss) < 1e-6
    assert _max_diff(ddp_grads, grads) < 1e-6
    assert any(k.startswith("student.kd_head") for k in grads)
    local_loss, _ = two_rank_results["cdl"]["local"]  # B students against the B local targets: fewer negatives
    assert local_loss < loss - 1e-4


def test_training_precision_falls_back_to_fp16_without_bf16(monkeypatch):
    import torch

    from mmthesis.students.train import training_precision

    assert training_precision("bf16-mixed", on_cpu=True) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert training_precision("bf16-mixed", on_cpu=False) == "16-mixed"
    assert training_precision("16-mixed", on_cpu=False) == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert training_precision("bf16-mixed", on_cpu=False) == "bf16-mixed"
