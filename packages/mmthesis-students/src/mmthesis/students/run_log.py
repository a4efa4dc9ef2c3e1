"""Where a training run's logs go: Lightning loggers in the run folder, library noise in ``train.log``.

* ``build_loggers``: Lightning's CSVLogger always (``logs/metrics.csv``, what ``artifact.read_logged_metrics`` and
  the figures read), TensorBoard's event files next to it when ``tensorboard`` is installed, W&B only when the
  recipe's ``train.loggers`` lists it (``WANDB_MODE=offline`` writes ``wandb/`` in the run folder, no network).
* ``library_output``: while a run trains, Python warnings from libraries (deprecations, Lightning's hints) and
  Lightning's info logging (its cloud-logging "Tip", GPU/TPU availability lines) go to the run's ``train.log``
  instead of the terminal, which keeps our progress bar and results; ``verbose`` shows them as well.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger

from mmthesis.core.errors import ConfigError
from mmthesis.students.config import VLRecipeConfig

TRAIN_LOG = "train.log"
LOG_DIR = "logs"  # CSV metrics and TensorBoard events: <run>/logs/ (artifact.METRICS)
# the loggers Lightning (and the libraries it drives) write their info/warning lines to
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def build_loggers(config: VLRecipeConfig, run: Path, run_id: str) -> list[Logger]:
    """The run's Lightning loggers, all writing inside ``run`` (see the module docstring).

    ``run_id`` names the W&B run, so a resumed run appends to the same one (``resume="allow"``).
    """
    wanted = config.train.loggers
    # flushed at every logged row: a killed run keeps every row up to its last checkpoint (KeepLoggedMetrics)
    loggers: list[Logger] = [CSVLogger(save_dir=str(run), name=LOG_DIR, version="", flush_logs_every_n_steps=1)]
    if "tensorboard" in wanted and tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run), name=LOG_DIR, version="", default_hp_metric=False))
    if "wandb" in wanted:
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("train.loggers lists wandb but the wandb package is not installed", "pip install wandb")
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                name=run_id,
                id=run_id.replace("/", "-"),
                project=os.environ.get("WANDB_PROJECT", "mmthesis"),
                save_dir=str(run),
                offline=os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled"),
                resume="allow",
            )
        )
    return loggers


class _LazyFileHandler(logging.FileHandler):
    """Opens (and creates the folder of) its file at the first record: a run refused by its checks leaves no folder."""

    def _open(self):  # noqa: ANN202 - logging's signature
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextmanager
def library_output(log_file: Path, verbose: bool = False) -> Iterator[None]:
    """Send library warnings and Lightning's logging to ``log_file`` (appended) while the block runs.

    ``verbose``: also to the terminal, as without this. Warnings are formatted as Python does
    (``file:line: Category: message``); the filters in force are left as they are.
    """
    handler = _LazyFileHandler(log_file, encoding="utf-8", delay=True)  # no run folder before there is a line
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved: list[tuple[logging.Logger, list[logging.Handler], bool, int]] = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate, logger.level))
        if not verbose:
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    for logger, *_ in saved:
        if not _hands_up(logger):  # each record reaches the file once
            logger.addHandler(handler)
    before = warnings.showwarning

    def to_file(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        text = warnings.formatwarning(message, category, filename, lineno, line)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as f:
            f.write(text)
        if verbose:
            before(message, category, filename, lineno, file, line)

    warnings.showwarning = to_file
    try:
        yield
    finally:
        warnings.showwarning = before
        for logger, handlers, propagate, level in saved:
            if handler in logger.handlers:
                logger.removeHandler(handler)
            for h in handlers:
                if h not in logger.handlers:
                    logger.addHandler(h)
            logger.propagate, logger.level = propagate, level
        handler.close()


def _hands_up(logger: logging.Logger) -> bool:
    """Whether ``logger``'s records propagate to another of ``LIBRARY_LOGGERS`` (which then writes them)."""
    node = logger
    while node.propagate and isinstance(node.parent, logging.Logger):
        node = node.parent
        if node.name in LIBRARY_LOGGERS:
            return True
    return False
