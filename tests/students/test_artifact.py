"""The run-artifact API: every run kind trained 2 steps at smoke scale reloads exactly, bad folders fail in one line."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest
import torch

from mmthesis.core.config import config_hash
from mmthesis.core.errors import CheckpointError
from mmthesis.core.results import run_dir
from mmthesis.students import artifact
from mmthesis.students.artifact import CONFIG, LOSSES, TOKENIZER, WEIGHTS, load_trained, read_losses, run_name
from mmthesis.students.recipes import load_recipe

FAST = ["train.max_steps=2", "train.checkpoint_every_n_steps=2", "teacher.prefit_steps=0"]
RUNS = {
    "vl": ("s-smke-cdl-mb", ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "data.batch_size=8"]),
    "image_kd": ("distil-data2vec2", ["data.train=[shapes]", "data.batch_size=8"]),
    "text_kd": ("f-distilbert", ["data.batch_size=4", "data.text_block_size=32"]),
}


def train_kind(task: str, monkeypatch) -> tuple:
    """Train the task's recipe 2 steps; returns (run folder, copy of the trained student in eval mode)."""
    from mmthesis.students import train

    recipe, extra = RUNS[task]
    config = load_recipe(recipe, "smoke", FAST + extra)
    seen = {}
    real = train.write_artifact

    def spy(folder, config, scale, student, *args, **kwargs):
        seen["student"] = copy.deepcopy(student).eval()
        return real(folder, config, scale, student, *args, **kwargs)

    monkeypatch.setattr(train, "write_artifact", spy)
    assert train.train_recipe(config, "smoke", force=True).status == "finished"
    return run_dir(run_name(config, "smoke"), config_hash(config)), seen["student"]


@pytest.fixture(scope="module")
def trained_runs(smoke_home):
    """{task: (run folder, trained student)}; trained once for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(smoke_home))
    runs = {task: train_kind(task, mp) for task in RUNS}
    mp.undo()
    return runs


def _outputs(model, task, batch):
    if task == "vl":
        return model.encode_image(batch.image), model.encode_text(batch.text_ids, batch.text_padding_mask)
    if task == "image_kd":
        return (model(batch.image).last_hidden_state,)
    return (model(batch.text_ids, batch.text_padding_mask).last_hidden_state,)


@pytest.mark.smoke
@pytest.mark.parametrize("task", list(RUNS))
def test_every_run_kind_reloads_its_trained_student(task, trained_runs, random_batch):
    folder, student = trained_runs[task]
    loaded = load_trained(folder)
    assert loaded.task == task and loaded.folder == folder and not loaded.model.training
    assert type(loaded.model) is type(student)
    assert (loaded.tokenizer is None) == (task == "image_kd") and (folder / TOKENIZER).is_file() == (task != "image_kd")
    expected, got = student.state_dict(), loaded.model.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    vocab = loaded.tokenizer.vocab_size if loaded.tokenizer is not None else 50
    batch = random_batch(loaded.config, vocab=min(vocab, 1000))
    with torch.no_grad():
        for a, b in zip(_outputs(loaded.model, task, batch), _outputs(student, task, batch), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    rows = read_losses(folder)
    assert [r["step"] for r in rows] == [1.0, 2.0] and all(math.isfinite(r["loss"]) for r in rows)


@pytest.mark.smoke
def test_unimodal_students_rebuild_without_their_teacher(trained_runs, monkeypatch):
    """The weights' metadata records the cropped architecture: the teacher checkpoint is not read again."""
    import mmthesis.teachers

    def no_teacher(*a, **k):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(mmthesis.teachers, "load_teacher", no_teacher)
    for task in ("image_kd", "text_kd"):
        meta = artifact.read_weights_metadata(trained_runs[task][0])
        assert meta["task"] == task and json.loads(meta["architecture"])["teacher"]
        assert load_trained(trained_runs[task][0]).model.num_blocks == load_recipe(RUNS[task][0], "smoke").model.__dict__[
            "image" if task == "image_kd" else "text"
        ].blocks


@pytest.mark.smoke
def test_runs_without_recorded_architecture_rebuild_from_the_recipe(trained_runs, tmp_path):
    """Runs written before the architecture metadata: the recipe's teacher is built and cropped as in training."""
    from mmthesis.core.checkpoint import save_weights

    for task in ("image_kd", "text_kd"):
        folder = _copy_run(trained_runs[task][0], tmp_path / task)
        state = artifact.read_weights(folder)
        save_weights(folder / WEIGHTS, state, {"recipe": "x", "scale": "smoke"})
        got = load_trained(folder).model.state_dict()
        assert all(torch.equal(got[k], state[k]) for k in state)


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


@pytest.mark.smoke
def test_bad_run_folders_fail_in_one_line(trained_runs, tmp_path):
    folder = trained_runs["image_kd"][0]
    with pytest.raises(CheckpointError, match="does not exist"):
        load_trained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"not a training run folder \(no readable result.json\)"):
        load_trained(tmp_path)

    def broken(name, damage):
        bad = _copy_run(folder, tmp_path / name)
        damage(bad)
        with pytest.raises(CheckpointError) as info:
            load_trained(bad)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "student.safetensors does not exist" in broken("no-weights", lambda f: (f / WEIGHTS).unlink())
    assert "not a readable safetensors" in broken("corrupt", lambda f: (f / WEIGHTS).write_bytes(b"\x10" * 8 + b"{junk"))
    assert "config.json does not exist" in broken("no-config", lambda f: (f / CONFIG).unlink())
    assert "not a valid recipe config" in broken("bad-config", lambda f: (f / CONFIG).write_text("{"))

    def unfinished(f):
        data = json.loads((f / "result.json").read_text())
        (f / "result.json").write_text(json.dumps({**data, "status": "running"}))

    assert "no finished training run (status running)" in broken("running", unfinished)

    def other_shapes(f):
        from mmthesis.core.checkpoint import save_weights

        state = artifact.read_weights(f)
        key = next(k for k, v in state.items() if v.ndim == 2)
        state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
        save_weights(f / WEIGHTS, state, artifact.read_weights_metadata(f))

    assert "does not match the recipe's model" in broken("mismatch", other_shapes)

    def missing_key(f):
        from mmthesis.core.checkpoint import save_weights

        state = artifact.read_weights(f)
        state.pop(next(iter(state)))
        save_weights(f / WEIGHTS, state, artifact.read_weights_metadata(f))

    assert "missing" in broken("missing-key", missing_key)
    assert (folder / LOSSES).is_file()


def test_artifact_and_eval_harness_import_without_lightning():
    code = (
        "import sys, mmthesis.students, mmthesis.students.artifact, mmthesis.eval.harness, mmthesis.eval.adapters, "
        "mmthesis.eval.protocols, mmthesis.eval.finetune, mmthesis.eval.glue_finetune; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'lightning_fabric')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lightning_names_load_lazily():
    import mmthesis.students as students

    assert "train_recipe" in students.__all__ and callable(students.train_recipe)
    with pytest.raises(AttributeError):
        students.no_such_name  # noqa: B018
