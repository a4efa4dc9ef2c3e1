"""The task registry: evaluation tasks are versioned YAML data, not code (as in lm-eval).

Each file ``task_specs/<name>.yaml`` names a dataset, split, protocol, the
headline metrics and the protocol's parameters. Why data: a task's definition
(which split, which prompts, which hyperparameters) is part of a result's
provenance, so it is stored verbatim in result.json and its ``version`` is
bumped whenever a change would alter the numbers; cached results of an older
version are then never reused.

A ``scales`` block holds what changes at a smaller scale (dataset, split,
parameters such as steps); the protocol itself never changes with the scale
(DESIGN.md). Unknown keys anywhere are errors, as for every mmthesis config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mmthesis.core.config import deep_merge, from_dict, read_yaml
from mmthesis.core.errors import ConfigError, UnknownNameError
from mmthesis.core.registry import unknown_name
from mmthesis.core.scales import SCALES, check_scale

PROTOCOLS = (
    "retrieval", "median-rank", "zero-shot", "linear-probe", "finetune", "glue", "analysis", "robustness",
    "latent-arithmetic", "coherence",
)  # fmt: skip
SCALE_KEYS = ("dataset", "split", "train_split", "params")


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task as written in its YAML file (``scales`` not yet applied)."""

    name: str
    version: int
    description: str
    protocol: str
    dataset: str
    split: str
    metrics: list[str]
    train_split: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    scales: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise unknown_name("eval protocol", self.protocol, PROTOCOLS)
        if self.version < 1:
            raise ValueError(f"version must be >= 1, got {self.version}")
        if not self.metrics:
            raise ValueError("metrics must list at least one headline metric")
        for scale, block in self.scales.items():
            if scale not in SCALES:
                raise ValueError(f"scales.{scale} is not a scale; use {', '.join(SCALES)}")
            unknown = sorted(set(block) - set(SCALE_KEYS))
            if unknown:
                raise ValueError(
                    f"scales.{scale}.{unknown[0]} is not allowed; a scale may change {', '.join(SCALE_KEYS)}"
                )

    def at_scale(self, scale: str) -> ResolvedTask:
        """The task with the ``scales[scale]`` block merged in (parameters merged key by key)."""
        check_scale(scale)
        block = self.scales.get(scale, {})
        return ResolvedTask(
            name=self.name,
            version=self.version,
            protocol=self.protocol,
            scale=scale,
            dataset=block.get("dataset", self.dataset),
            split=block.get("split", self.split),
            train_split=block.get("train_split", self.train_split),
            metrics=list(self.metrics),
            params=deep_merge(self.params, block.get("params", {})),
        )


@dataclass(frozen=True)
class ResolvedTask:
    """A task at one scale: what a protocol runs and what result.json records."""

    name: str
    version: int
    protocol: str
    scale: str
    dataset: str
    split: str
    train_split: str | None
    metrics: list[str]
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def task_dir() -> Path:
    return Path(str(resources.files("mmthesis.eval").joinpath("task_specs")))


def load_task_file(path: Path) -> TaskSpec:
    """Parse and validate one task file (``include:`` applied); the file name must be ``<name>.yaml``."""
    data = read_yaml(path)
    try:
        spec = from_dict(TaskSpec, data)
    except (ConfigError, UnknownNameError) as e:
        raise type(e)(f"task file {path.name}: {e.message}", e.fix) from e
    if spec.name != path.stem:
        raise ConfigError(
            f"task file {path.name} names the task {spec.name!r}",
            f"rename the file to {spec.name}.yaml or fix its name",
        )
    return spec


@lru_cache(maxsize=4)
def _load_all(folder: str) -> dict[str, TaskSpec]:
    # ``_*.yaml`` files are shared bases (``include: _glue.yaml``), not tasks
    paths = sorted(p for p in Path(folder).glob("*.yaml") if not p.name.startswith("_"))
    return {p.stem: load_task_file(p) for p in paths}


def all_tasks(folder: Path | None = None) -> dict[str, TaskSpec]:
    """Every task file of ``folder`` (default: the bundled ``task_specs``), by name."""
    return dict(_load_all(str(folder or task_dir())))


def get_task(name: str, folder: Path | None = None) -> TaskSpec:
    tasks = all_tasks(folder)
    if name not in tasks:
        raise unknown_name("eval task", name, tasks, "mmthesis eval list")
    return tasks[name]
