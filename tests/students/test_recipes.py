"""Every recipe in the registry trains 3 optimisation steps at smoke scale through the real `train_recipe` path,
and its first losses equal the pinned ones (as torchtune pins its recipes' losses).

On CPU with a fixed seed a smoke run is deterministic, so any change to a model, a loss, the data path or a
default that alters training shows up here as a changed loss. After an INTENDED change, re-pin and commit the file:

    MMTHESIS_REPIN_LOSSES=1 python -m pytest tests/students/test_recipes.py -k trains_three_steps

(which rewrites ``pinned_smoke_losses.json`` with the new values; review its diff: only the recipes you meant to
change should move).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from mmthesis.core.config import config_hash
from mmthesis.core.results import run_dir
from mmthesis.students.artifact import LOSSES, WEIGHTS, run_name
from mmthesis.students.recipes import load_recipe, recipe_header, recipe_names
from mmthesis.students.train import train_recipe

PINNED = Path(__file__).with_name("pinned_smoke_losses.json")
STEPS = 3
# tiny and quick: 3 steps, small batches, shapes only (offline), no teacher pre-fit
FAST = [f"train.max_steps={STEPS}", "train.checkpoint_every_n_steps=1", "teacher.prefit_steps=0"]
FAST_BY_TASK = {
    "vl": ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "data.batch_size=8"],
    "image_kd": ["data.train=[shapes]", "data.batch_size=8"],
    "text_kd": ["data.batch_size=4", "data.text_block_size=32"],
}


def test_registry_has_every_trained_experiment():
    names = set(recipe_names())
    expected = {
        "distil-data2vec2", "f-distilbert", "shre", "shre-ddp", "shre-t", "s-smke", "s-smke-tte-first", "s-smke-tte",
        "s-smke-itc-mb", "s-smke-itc-momentum", "s-smke-t-cmli", "s-smke-cdl", "s-smke-cdl-mb",
        "s-smke-cdl-mb-data2vec2", "s-smke-cdl-mb-dino", "s-smke-cdl-mb-beitv2-ft", "s-smke-no-kd",
        "s-smke-cdl-mb-ft-coco", "s-smke-cdl-mb-ft-flickr30k",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("recipe", recipe_names())
def test_recipe_header_gives_command_and_section(recipe):
    header = recipe_header(recipe)
    assert f"mmthesis train run {recipe} --scale smoke|small|full" in header
    assert "REFERENCE.md §3." in header
    for scale in ("smoke", "small", "full"):
        assert load_recipe(recipe, scale).recipe == recipe


def _pinned() -> dict[str, dict[str, list[float]]]:
    return json.loads(PINNED.read_text(encoding="utf-8")) if PINNED.is_file() else {}


@pytest.mark.smoke
@pytest.mark.parametrize("recipe", recipe_names())
def test_recipe_trains_three_steps_at_smoke_with_pinned_losses(recipe, smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    plain = load_recipe(recipe, "smoke")
    overrides = FAST + FAST_BY_TASK[plain.task]
    if plain.init.from_recipe:  # the parent run it starts from is trained (or reused) just as fast
        parent_task = load_recipe(plain.init.from_recipe, "smoke").task
        overrides += [f"init.overrides.{o}" for o in FAST + FAST_BY_TASK[parent_task]]
    task = plain.task
    config = load_recipe(recipe, "smoke", overrides)
    result = train_recipe(config, "smoke")
    assert result.status == "finished"
    assert result.metrics["steps"] == float(STEPS)
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    rows = list(csv.DictReader((folder / LOSSES).open()))
    assert len(rows) == STEPS and all(math.isfinite(float(r["loss"])) for r in rows)
    if config.uses_teacher:
        assert all(float(r["kd"]) > 0 for r in rows)
    if task == "vl":
        assert all(float(r["itc"]) > 0 for r in rows)
    assert (folder / WEIGHTS).is_file() and (folder / "checkpoints" / "last.ckpt").is_file()

    observed = {key: [float(r[key]) for r in rows] for key in ("loss", "itc", "kd") if key in rows[0]}
    if os.environ.get("MMTHESIS_REPIN_LOSSES") == "1":
        pinned = _pinned()
        pinned[recipe] = observed
        PINNED.write_text(json.dumps(dict(sorted(pinned.items())), indent=1) + "\n", encoding="utf-8")
        return
    expected = _pinned().get(recipe)
    assert expected is not None, f"no pinned losses for {recipe}: re-pin (see this file's docstring)"
    assert set(observed) == set(expected), (observed, expected)
    for key, values in expected.items():
        assert observed[key] == pytest.approx(values, rel=1e-4, abs=1e-6), (
            f"{recipe} {key} losses changed: {observed[key]} vs pinned {values}. If the change is intended, "
            "re-pin (see this file's docstring)."
        )


def test_recipe_files_include_shared_bases_which_are_not_recipes(tmp_path, monkeypatch):
    from mmthesis.core.errors import UnknownNameError
    from mmthesis.students import recipes

    (tmp_path / "_base.yaml").write_text(
        "thesis_name: T\nfull: {train: {max_steps: 9, lr: 0.1}}\nsmoke: {train: {max_steps: 1}}\n"
    )
    (tmp_path / "r.yaml").write_text(
        "# the r recipe\n# mmthesis train run r\ninclude: _base.yaml\nrecipe: r\nfull: {train: {lr: 0.2}}\n"
    )
    monkeypatch.setattr(recipes, "recipe_dir", lambda: tmp_path)
    assert recipes.recipe_names() == ["r"]
    assert recipes.recipe_header("r") == "the r recipe\nmmthesis train run r"
    assert recipes.recipe_dict("r", "full")["train"] == {"max_steps": 9, "lr": 0.2}
    assert recipes.recipe_dict("r", "smoke")["train"] == {"max_steps": 1, "lr": 0.2}
    (tmp_path / "s.yaml").write_text("include: _base.yaml\n# the s recipe\nrecipe: s\n")
    assert recipes.recipe_header("s") == "the s recipe"
    with pytest.raises(UnknownNameError):
        recipes.recipe_file("_base")
