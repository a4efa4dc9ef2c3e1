"""Lightning callbacks of a training run: throughput, loss history (losses.csv), exact resume of data order and RNG."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from mmthesis.students.artifact import append_loss_row, write_losses
from mmthesis.students.distributed import ResumableDataLoader


class Throughput(Callback):
    """Shows samples/s in the progress bar (and records it) next to the losses."""

    def __init__(self) -> None:
        self._start: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._start is not None:
            rate = len(batch) * trainer.world_size / max(time.perf_counter() - self._start, 1e-9)
            module.log("train/samples_per_s", rate, prog_bar=True, batch_size=len(batch))


# per-step losses recorded in losses.csv (column = name after "train/"): the KD loss and its image and text halves
LOSS_KEYS = ("train/loss", "train/itc", "train/kd", "train/kd_image", "train/kd_text")


class LossHistory(Callback):
    """Records every optimisation step's losses (for result.json and losses.csv).

    The rows are part of the checkpoint (``state_dict``), so a resumed run keeps the
    curve up to its checkpoint; with ``path`` each row is also appended to the csv as
    it comes (progress survives a kill; rows past the checkpoint are dropped on resume).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.rows: list[dict[str, float]] = []
        self.path = path

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.path is not None and trainer.is_global_zero:
            # drop rows logged after the checkpoint we resumed from
            if self.rows:
                write_losses(self.path, self.rows)
            else:
                self.path.unlink(missing_ok=True)

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        metrics = trainer.callback_metrics
        row = {"step": float(trainer.global_step)}
        for key in LOSS_KEYS:
            if key in metrics:
                row[key.split("/")[1]] = float(metrics[key])
        self.rows.append(row)
        if self.path is not None and trainer.is_global_zero:
            append_loss_row(self.path, row)


class ResumeDataOrder(Callback):
    """Hands a ``ResumableDataLoader`` its checkpointed (epoch, batches) before its first batch is drawn.

    Lightning 2.6 saves stateful-loader states with the fit loop and loads them in
    ``FitLoop.setup_data``, but the LR scheduler's ``estimated_stepping_batches`` sets
    the loader up *before* the checkpoint is restored, so that load never happens
    (and the restored batch progress lags one batch behind a checkpoint saved in
    ``on_train_batch_end``). So the saved state is taken from the checkpoint here.
    """

    def __init__(self) -> None:
        self._state: list[dict[str, int]] = []

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._state = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader", [])

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableDataLoader) and len(self._state) == 1:
            loader.load_state_dict(self._state[0])
        self._state = []


class RNGState(Callback):
    """Saves the global RNG states in checkpoints and restores them right before the next step.

    Restoring at the first ``on_train_batch_start`` (not at load time) makes anything
    that draws random numbers between loading and training irrelevant; data
    augmentation does not use the global RNG (``SeededSamples``), so these states
    only drive the model (dropout, drop-path).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np

        # plain tensors / ints only, so the checkpoint also loads with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        }
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending is None:
            return
        import random

        import numpy as np

        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class KeepLoggedMetrics(Callback):
    """A resumed run's ``logs/metrics.csv`` keeps the rows logged up to its checkpoint, each once.

    Lightning's CSV logger deletes an existing metrics.csv when it starts, so a resumed run would lose the curve
    before the kill. This callback reads the file when it is built (before the logger starts) and, once the
    checkpoint is restored (``on_train_start``, global step G), writes back the complete rows logged up to it
    (``_kept``); rows after the checkpoint are dropped (they are logged again) and so is a row cut short by the kill.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict[str, str]] = []
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                # a row cut short by a kill has missing cells (None) or an unparsable step
                self.rows = [r for r in reader if None not in r.values() and None not in r and _is_number(r["step"])]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv_logger is None or not self.rows or trainer.global_step == 0:
            return
        step = trainer.global_step
        keep = [r for r in self.rows if _kept(r, step)]
        writer = csv_logger.experiment  # created now: the old file is gone, the new one not yet written
        with self.path.open("w", encoding="utf-8", newline="") as f:
            out = csv.DictWriter(f, fieldnames=self.fields)
            out.writeheader()
            out.writerows(keep)
        writer.metrics_keys = sorted(self.fields)  # later rows append under this header (or rewrite it, extended)
        self.rows = []


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def _kept(row: dict[str, str], global_step: int) -> bool:
    """Whether a logged row belongs to the state of a checkpoint at ``global_step`` (see ``KeepLoggedMetrics``).

    Lightning logs a training step's row with its 0-based index, and a validation run after G steps with step
    G - 1; both come after the checkpoint of step G is written, and both are part of it.
    """
    return int(float(row["step"])) < global_step
