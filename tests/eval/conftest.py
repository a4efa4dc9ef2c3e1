"""A small prepared shapes dataset and a tiny *random* S-SMKE run folder (real architecture, no training)."""

from __future__ import annotations

import json

import pytest
import torch

from mmthesis.core.checkpoint import save_weights
from mmthesis.core.config import config_hash, to_dict
from mmthesis.core.io import atomic_write_text
from mmthesis.core.paths import data_root
from mmthesis.core.results import RunRecorder, run_dir
from mmthesis.data.datasets.shapes import ShapesConfig, prepare_shapes
from mmthesis.data.tokenizers import load_dataset_tokenizer
from mmthesis.students.artifact import CONFIG, TOKENIZER, WEIGHTS, run_name
from mmthesis.students.model import SSMKE
from mmthesis.students.recipes import load_recipe

SMALL_SHAPES = ShapesConfig(train=240, val=12, test=48, samples_per_shard=200)


def _save_random_run(overrides: list[str] | None = None):
    """A finished tiny *random* S-SMKE_CDL_MB run on shapes (weights, tokenizer, config); returns its folder."""
    config = load_recipe(
        "s-smke-cdl-mb", "smoke", ["data.train=[shapes]", "data.retrieval_eval=[shapes]", *(overrides or [])]
    )
    tokenizer = load_dataset_tokenizer("shapes")
    torch.manual_seed(0)
    model = SSMKE(config.model, tokenizer.vocab_size, None, load_pretrained=False)
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    with RunRecorder(run_name(config, "smoke"), "smoke", config):
        save_weights(folder / WEIGHTS, model.state_dict())
        tokenizer.save(folder / TOKENIZER)
        atomic_write_text(folder / CONFIG, json.dumps(to_dict(config)))
    return folder


@pytest.fixture(scope="session")
def save_random_run():
    """The run builder (a fixture, not an import: several test folders have a ``conftest``)."""
    return _save_random_run


@pytest.fixture(scope="module")
def eval_home(tmp_path_factory, save_random_run):
    """MMTHESIS_HOME with shapes prepared and a finished tiny random run; yields (home, run folder)."""
    home = tmp_path_factory.mktemp("eval_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    prepare_shapes(data_root(), SMALL_SHAPES)
    yield home, save_random_run()
    mp.undo()


@pytest.fixture
def in_eval_home(eval_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(eval_home[0]))
    return eval_home
