"""Memory per stage of one training step of a momentum-encoder recipe (Figure 26).

The thesis moved the EMA update and the momentum encoder's forward pass in front of the student's forward pass
to save GPU memory: run after it, the momentum forward's activations are allocated while the student's
activations (held for the backward pass) are still alive, which raises the peak. ``stage_memory`` runs one real
step (real data, the recipe's model and optimiser) in either order (``loss.itc_momentum_first``) and records,
at the end of each stage, the peak memory of the step so far (cumulative, as the figure plots).

How memory is measured (``MemoryProfile.method``):

* CUDA: ``torch.cuda.max_memory_allocated`` (its peak counter reset before the step), read after each stage.
* CPU: torch's own CPU allocator events, recorded by ``torch.profiler`` with ``profile_memory=True`` (every
  allocation and free of tensor memory with its size): the running total of the bytes allocated during the step,
  its running maximum read at each stage's end, plus the bytes of the parameters, buffers, gradients and optimiser
  state alive when the step starts. Unlike CUDA's figure it has no caching-allocator rounding or fragmentation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

import torch

from mmthesis.core.errors import ConfigError
from mmthesis.students.config import VLRecipeConfig

CUDA_METHOD = "torch.cuda.max_memory_allocated"
CPU_METHOD = "torch.profiler CPU allocator events (profile_memory): peak bytes of live tensors"


@dataclass
class MemoryProfile:
    """``stages``: (stage, peak bytes allocated from the step's start up to that stage's end), in step order."""

    stages: list[tuple[str, int]] = field(default_factory=list)
    method: str = ""
    device: str = ""

    @property
    def peak(self) -> int:
        return max((b for _, b in self.stages), default=0)


def stage_memory(
    config: VLRecipeConfig, scale: str, *, momentum_first: bool, device: str | None = None
) -> MemoryProfile:
    """Run one training step of ``config`` (a momentum-encoder recipe) with the EMA update and momentum forward
    before (``momentum_first``, the thesis code) or after the student forward, and profile its memory per stage."""
    from mmthesis.students.lightning_module import VLDistillationModule, optimizer_and_schedule
    from mmthesis.students.train import build_module, build_tokenizer, build_training_data, training_precision

    if config.task != "vl" or not config.loss.itc_momentum:
        raise ConfigError(
            f"{config.recipe} has no momentum encoder (loss.itc_momentum=0)", "profile s-smke-itc-momentum"
        )
    config = replace(config, loss=replace(config.loss, itc_momentum_first=momentum_first))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.train.seed)
    tokenizer = build_tokenizer(config, scale)
    dataset, collate, _ = build_training_data(config, tokenizer, scale)
    batch = collate([dataset[i] for i in range(min(config.data.batch_size, len(dataset)))]).to(dev)
    module = build_module(config, tokenizer.vocab_size if tokenizer is not None else None)
    assert isinstance(module, VLDistillationModule)
    module.to(dev).train()
    optimizer, _ = optimizer_and_schedule(config, module.named_parameters(), 1, 1)
    precision = training_precision(config.train.precision, dev.type == "cpu")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    if dev.type == "cuda":
        return _cuda_profile(module, optimizer, batch, autocast, dev)
    return _cpu_profile(module, optimizer, batch, autocast)


def _step(module, optimizer, batch, autocast) -> None:  # noqa: ANN001
    with autocast:
        loss = module.losses(batch)["loss"]
    loss.backward()
    module._stage("backward")
    optimizer.step()
    module._stage("optimizer_step")
    optimizer.zero_grad(set_to_none=True)


def _cuda_profile(module, optimizer, batch, autocast, dev: torch.device) -> MemoryProfile:  # noqa: ANN001
    profile = MemoryProfile(method=CUDA_METHOD, device=torch.cuda.get_device_name(dev))
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)

    def record(stage: str) -> None:
        torch.cuda.synchronize(dev)
        profile.stages.append((stage, int(torch.cuda.max_memory_allocated(dev))))

    module.stage_hook = record
    try:
        _step(module, optimizer, batch, autocast)
    finally:
        module.stage_hook = None
    return profile


def _live_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the distinct storages of parameters, buffers, gradients and optimiser state alive now."""
    tensors = [*module.parameters(), *module.buffers()]
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _cpu_profile(module, optimizer, batch, autocast) -> MemoryProfile:  # noqa: ANN001
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile, record_function

    order: list[str] = []

    def mark(stage: str) -> None:
        order.append(stage)
        with record_function(f"mmthesis_stage:{len(order) - 1}"):
            pass

    base = _live_bytes(module, optimizer)
    module.stage_hook = mark
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            _step(module, optimizer, batch, autocast)
    finally:
        module.stage_hook = None
    allocations: list[tuple[int, int]] = []  # (time ns, +bytes allocated / -bytes freed)
    marks: dict[int, int] = {}  # stage index -> time ns

    def walk(node) -> None:  # noqa: ANN001
        if node.tag == _EventType.Allocation:
            allocations.append((node.start_time_ns, int(node.extra_fields.alloc_size)))
        elif node.name.startswith("mmthesis_stage:"):
            marks[int(node.name.split(":", 1)[1])] = node.start_time_ns
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    allocations.sort()
    result = MemoryProfile(method=CPU_METHOD, device="cpu")
    live = peak = 0
    i = 0
    for index, stage in enumerate(order):
        while i < len(allocations) and allocations[i][0] <= marks[index]:
            live += allocations[i][1]
            peak = max(peak, live)
            i += 1
        result.stages.append((stage, base + peak))
    return result
