"""result.json: the record of one run, and the run cache that reuses finished runs.

A run lives in ``runs_root()/<name>/<config-hash>/``; ``result.json`` there
holds the resolved config and its hash, provenance, dataset fingerprints,
metrics, wall time, device-hours and a status. ``find_finished_run`` lets
``reproduce`` reuse a run whose config hash matches instead of training again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from mmthesis.core.config import config_hash, to_dict
from mmthesis.core.errors import CheckpointError, StorageError
from mmthesis.core.io import atomic_write_json, write_error
from mmthesis.core.paths import runs_root
from mmthesis.core.provenance import git_commit, hardware, package_versions

Status = Literal["running", "finished", "failed"]
RESULT_FILE = "result.json"
SCHEMA_VERSION = 1


@dataclasses.dataclass
class RunResult:
    name: str
    scale: str
    config: dict[str, Any]
    config_hash: str
    status: Status = "running"
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    datasets: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    git: dict[str, Any] = dataclasses.field(default_factory=git_commit)
    packages: dict[str, str | None] = dataclasses.field(default_factory=package_versions)
    hardware: dict[str, Any] = dataclasses.field(default_factory=hardware)
    started_at: str = dataclasses.field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    wall_time_s: float | None = None
    device_hours: float | None = None
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def run_dir(name: str, cfg_hash: str, root: Path | None = None) -> Path:
    return (root or runs_root()) / name / cfg_hash


def read_result(path: Path) -> RunResult | None:
    """The result.json in ``path`` (a run folder or the file), or None if absent/unreadable."""
    file = path / RESULT_FILE if path.is_dir() else path
    try:
        return RunResult.from_json(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def finished_run_folder(name: str, *, prefix: str, train_command: str) -> Path:
    """``NAME[/HASH]`` under the runs root -> the one finished run folder of that name.

    Several finished runs of one name (other configs) are an error naming one to pick, not a guess;
    ``prefix`` (``run:``, ``vae:``) and ``train_command`` word the fixes.
    """
    folder = runs_root() / name
    if (folder / RESULT_FILE).is_file():
        return folder
    finished = (
        sorted(p for p in folder.glob("*/") if (r := read_result(p)) is not None and r.status == "finished")
        if folder.is_dir()
        else []
    )
    if not finished:
        raise CheckpointError(
            f"no finished run named {name!r} under {runs_root()}",
            f"train it with `{train_command} {name.rsplit('-', 1)[0]}` or pass the run folder",
        )
    if len(finished) > 1:
        raise CheckpointError(
            f"{len(finished)} finished runs named {name!r}",
            f"pick one: {prefix}{name}/{finished[0].name} (or pass the folder)",
        )
    return finished[0]


def find_finished_run(name: str, config: Any, root: Path | None = None) -> RunResult | None:
    """A finished run of ``name`` with exactly this config, for reuse instead of rerunning."""
    result = read_result(run_dir(name, config_hash(config), root))
    return result if result is not None and result.status == "finished" else None


class RunRecorder:
    """Writes result.json at start (status running) and at the end (finished/failed), atomically.

    Use as a context manager: an exception marks the run failed with its message
    and is re-raised (also when the disk is full: the failed record is then best-effort, the
    original error is what the user sees). ``enabled=False`` (non-zero ranks of a multi-process
    run) keeps the result in memory only.
    """

    def __init__(
        self,
        name: str,
        scale: str,
        config: Any,
        root: Path | None = None,
        datasets: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.hash = config_hash(config)
        self.dir = run_dir(name, self.hash, root)
        self.result = RunResult(name=name, scale=scale, config=to_dict(config), config_hash=self.hash, datasets=dict(datasets or {}))
        self._start = 0.0

    @property
    def path(self) -> Path:
        return self.dir / RESULT_FILE

    def write(self) -> None:
        if not self.enabled:
            return
        try:
            atomic_write_json(self.path, self.result.to_json())
        except OSError as e:
            raise write_error(self.path, e) from e

    def __enter__(self) -> RunRecorder:
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._start = time.perf_counter()
        self.write()
        return self

    def _finish(self, status: Status, error: str | None = None) -> None:
        wall = time.perf_counter() - self._start
        n_devices = max(1, len(self.result.hardware.get("gpus") or []))
        self.result.wall_time_s = round(wall, 3)
        self.result.device_hours = round(wall * n_devices / 3600.0, 6)
        self.result.status = status
        self.result.error = error
        self.write()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self._finish("finished")
            return
        try:
            self._finish("failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
        except StorageError:
            pass  # e.g. still no space for result.json: the error being raised says why the run stopped
