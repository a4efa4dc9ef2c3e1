"""A finished VAE run on disk: how it is written and loaded (no Lightning import).

The folder ``runs_root()/<recipe>-<scale>/<config-hash>/`` holds, as a student run does (mmthesis.students.artifact):
``result.json``, ``config.json`` (the ``VAERecipeConfig``), ``vae.safetensors`` (weights; metadata names recipe,
scale, aggregation and the pretrained spec), ``tokenizer.json``, ``losses.csv``, ``logs/metrics.csv`` and
``samples.json`` (cross-modal generations on test pairs, written after training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmthesis.core.checkpoint import load_weights, save_weights
from mmthesis.core.config import from_dict, to_dict
from mmthesis.core.errors import CheckpointError, ConfigError
from mmthesis.core.io import atomic_write_text
from mmthesis.core.results import finished_run_folder, read_result
from mmthesis.data.tokenizers import Tokenizer
from mmthesis.students.artifact import CONFIG, LOSSES, METRICS, RESULT, TOKENIZER, check_finished
from mmthesis.vae.config import VAERecipeConfig
from mmthesis.vae.model import MultimodalVAE

WEIGHTS = "vae.safetensors"
SAMPLES = "samples.json"
KIND = "multimodal-vae"
__all__ = ["CONFIG", "LOSSES", "METRICS", "RESULT", "SAMPLES", "TOKENIZER", "WEIGHTS", "TrainedVAE", "load_vae",
           "resolve_vae_run", "write_vae_artifact"]
_TRAIN_HINT = "train it with `mmthesis vae train RECIPE`"


@dataclass
class TrainedVAE:
    folder: Path
    config: VAERecipeConfig
    model: MultimodalVAE  # eval mode


def run_name(config: VAERecipeConfig, scale: str) -> str:
    return f"{config.recipe}-{scale}"


def write_vae_artifact(folder: Path, config: VAERecipeConfig, scale: str, model: MultimodalVAE) -> None:
    """Weights, tokenizer and config, each written atomically (result.json is the recorder's)."""
    meta = {"kind": KIND, "recipe": config.recipe, "scale": scale, "aggregation": config.model.aggregation,
            "pretrained": config.model.pretrained or ""}
    save_weights(folder / WEIGHTS, model.state_dict(), meta)
    model.tokenizer.save(folder / TOKENIZER)
    atomic_write_text(folder / CONFIG, json.dumps(to_dict(config), indent=2))


def read_vae_config(run: Path) -> VAERecipeConfig:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: the run folder is incomplete", _TRAIN_HINT)
    try:
        return from_dict(VAERecipeConfig, json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a VAE recipe config ({str(e).splitlines()[0][:160]})", _TRAIN_HINT) from e


def is_vae_run(run: Path) -> bool:
    return (Path(run) / WEIGHTS).is_file()


def resolve_vae_run(spec: str) -> Path:
    """``vae:NAME[/HASH]``, ``run:NAME`` or a folder -> the finished run folder (one-line error if ambiguous)."""
    body = spec.split(":", 1)[1] if spec.startswith(("vae:", "run:")) else spec
    path = Path(body).expanduser()
    if path.is_dir():
        return path
    return finished_run_folder(body, prefix="vae:", train_command="mmthesis vae train")


def load_pretrained(config: VAERecipeConfig, scale: str) -> Any:
    """The frozen model an ``encoder=pretrained`` VAE reads features from (an eval ``LoadedModel``), else None."""
    if config.model.encoder != "pretrained":
        return None
    from mmthesis.eval.adapters import load_model

    loaded = load_model(str(config.model.pretrained), scale)
    loaded.require("image")
    loaded.require("text")
    loaded.model.eval().requires_grad_(False)
    return loaded


def load_vae(run: Path | str) -> TrainedVAE:
    """Rebuild a finished VAE run (weights read from safetensors, strictly) in eval mode."""
    folder = check_finished(resolve_vae_run(str(run)))
    if not is_vae_run(folder):
        raise CheckpointError(f"{folder} is not a VAE run (no {WEIGHTS})", _TRAIN_HINT)
    config = read_vae_config(folder)
    if not (folder / TOKENIZER).is_file():
        raise CheckpointError(f"{folder / TOKENIZER} does not exist: the run folder is incomplete", _TRAIN_HINT)
    tokenizer = Tokenizer.load(folder / TOKENIZER)
    result = read_result(folder)
    scale = result.scale if result is not None else "full"
    model = MultimodalVAE(config.model, tokenizer, load_pretrained(config, scale))
    state = load_weights(folder / WEIGHTS)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(f"{folder / WEIGHTS} does not match the recipe's model ({first})", _TRAIN_HINT) from e
    return TrainedVAE(folder=folder, config=config, model=model.eval())
