"""Training-step throughput of the final model (S-SMKE_CDL_MB): Lightning vs a plain PyTorch loop.

Why: the thesis reports ms/batch (Table 14); this checks that running the step through
Lightning (our trainer path: logging hooks, loops, callbacks) costs little against the same
module driven by a hand-written loop with the same optimizer, scheduler and batches.

    python benchmarks/train_step.py --scale smoke --batch-size 32 --steps 30
    python benchmarks/train_step.py --scale full --size base --device cuda --precision bf16-mixed --peak-tflops 989

Prints samples/s and peak memory of each; on GPU also model FLOPs utilisation
(FlopCounterMode over one step / step time / --peak-tflops). The last line is
``ratio: <lightning / plain loop>`` (samples/s; goal >= 0.9).
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mmthesis.data.batch import Batch
from mmthesis.students.lightning_module import VLDistillationModule
from mmthesis.students.recipes import load_recipe

VOCAB = 1000


def synthetic_batches(n: int, batch_size: int, img_size: int, text_len: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        mask = torch.zeros(batch_size, text_len, dtype=torch.bool)
        mask[:, text_len // 2 :] = torch.rand(batch_size, text_len - text_len // 2, generator=g) < 0.5
        out.append(
            Batch(
                id=[f"{i}_{j}" for j in range(batch_size)],
                image=torch.randn(batch_size, 3, img_size, img_size, generator=g),
                text_ids=torch.randint(5, VOCAB, (batch_size, text_len), generator=g),
                text_padding_mask=mask,
            )
        )
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (monotonic)


def _optimizers(module: VLDistillationModule, steps: int):
    """The module's own configure_optimizers, outside a Trainer (one device)."""
    module._trainer = SimpleNamespace(world_size=1, estimated_stepping_batches=steps)  # type: ignore[assignment]
    try:
        cfg = module.configure_optimizers()
    finally:
        module._trainer = None
    return cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]


def plain_loop(
    module: VLDistillationModule, batches: list[Batch], warmup: int, device: torch.device, precision: str
) -> float:
    """Seconds for the steps after ``warmup``: forward, backward, AdamW, LR schedule, bank enqueue."""
    module.to(device).train()
    opt, sched = _optimizers(module, len(batches))
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = module.losses(batch)
        out["loss"].backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if module.bank is not None and "target" in out:
            module.bank.enqueue(out["target"])
    _sync(device)
    return time.perf_counter() - start


class _Timer(Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if batch_idx == self.warmup:
            _sync(module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        _sync(module.device)
        self.end = time.perf_counter()


def lightning_loop(
    module: VLDistillationModule, batches: list[Batch], warmup: int, device: torch.device, precision: str
) -> float:
    timer = _Timer(warmup)
    trainer = L.Trainer(
        accelerator="cuda" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        max_steps=len(batches),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)  # in memory, already batched
    trainer.fit(module, loader)
    return timer.end - timer.start


def step_flops(module: VLDistillationModule, batch: Batch, device: torch.device) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    module.to(device).train()
    counter = FlopCounterMode(display=False)
    with counter:
        module.losses(batch.to(device))["loss"].backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="smoke", choices=["smoke", "small", "full"])
    p.add_argument("--size", default=None, help="model size override (e.g. tiny, base)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best is reported")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="accelerator peak TFLOP/s at this precision, for MFU"
    )
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # random weights of the real architectures: throughput does not depend on the checkpoints' values
    overrides = ["model.image.checkpoint=null", "model.text.checkpoint=null", "teacher.checkpoint=null"]
    overrides += [f"model.size={args.size}"] if args.size else []
    config = load_recipe("s-smke-cdl-mb", args.scale, overrides)
    torch.manual_seed(0)
    template = VLDistillationModule(config, vocab_size=VOCAB)
    batches = synthetic_batches(
        args.steps, args.batch_size, config.model.img_size, min(32, config.data.max_text_length)
    )
    timed = (args.steps - args.warmup) * args.batch_size
    print(
        f"s-smke-cdl-mb scale={args.scale} size={config.model.size} batch={args.batch_size} steps={args.steps} device={device} "
        f"precision={args.precision} threads={torch.get_num_threads()}"
    )

    best = {"lightning": 0.0, "plain": 0.0}
    peak = {"lightning": 0.0, "plain": 0.0}
    for _ in range(args.repeats):
        for name, run in (("plain", plain_loop), ("lightning", lightning_loop)):
            module = copy.deepcopy(template)
            _reset_peak(device)
            seconds = run(module, batches, args.warmup, device, args.precision)
            best[name] = max(best[name], timed / seconds)
            peak[name] = max(peak[name], _peak_mib(device))
            del module
    mem = "peak GPU memory allocated" if device.type == "cuda" else "process peak RSS (cumulative)"
    for name in ("plain", "lightning"):
        print(
            f"{name:9s}: {best[name]:8.1f} samples/s  {1000 * args.batch_size / best[name]:7.1f} ms/step  {mem} {peak[name]:.0f} MiB"
        )
    if device.type == "cuda":
        flops = step_flops(copy.deepcopy(template), batches[0], device)
        print(f"model FLOPs per step: {flops / 1e12:.3f} TFLOP")
        if args.peak_tflops:
            for name in ("plain", "lightning"):
                achieved = flops * best[name] / args.batch_size
                print(f"MFU {name}: {100 * achieved / (args.peak_tflops * 1e12):.1f}% of {args.peak_tflops} TFLOP/s")
    print(f"ratio: {best['lightning'] / best['plain']:.3f}")


if __name__ == "__main__":
    main()
