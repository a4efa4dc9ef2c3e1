"""A VAE run folder: written, loaded strictly, served to the eval harness as vae:RUN, used by `mmthesis vae`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mmthesis.cli.app import app
from mmthesis.core.config import config_hash
from mmthesis.core.errors import CheckpointError, UnknownNameError
from mmthesis.core.results import RunRecorder, run_dir
from mmthesis.vae.artifact import WEIGHTS, load_vae, run_name, write_vae_artifact
from mmthesis.vae.config import VAERecipeConfig
from mmthesis.vae.model import MultimodalVAE
from mmthesis.vae.recipes import load_vae_recipe, vae_recipe_names

runner = CliRunner()


def _save_run(tokenizer, tiny_config, aggregation: str = "mopoe", **model):
    config = VAERecipeConfig(recipe=f"vae-{aggregation}", thesis_name="x", model=tiny_config(aggregation, **model))
    torch.manual_seed(0)
    model = MultimodalVAE(config.model, tokenizer).eval()
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    with RunRecorder(run_name(config, "smoke"), "smoke", config):
        write_vae_artifact(folder, config, "smoke", model)
    return folder, model


def test_recipes_resolve_at_every_scale():
    assert vae_recipe_names() == ["vae-mmvaeplus", "vae-moe", "vae-moe-emoji", "vae-mopoe", "vae-poe"]
    cases = [("vae-poe", "poe", "shapes"), ("vae-moe", "moe", "shapes"), ("vae-mopoe", "mopoe", "shapes"),
             ("vae-mmvaeplus", "moe", "shapes"), ("vae-moe-emoji", "moe", "emoji")]
    for name, aggregation, smoke_data in cases:
        for scale in ("smoke", "small", "full"):
            config = load_vae_recipe(name, scale)
            assert config.model.aggregation == aggregation
            assert (config.model.private_dim > 0) == (name == "vae-mmvaeplus")
        assert load_vae_recipe(name, "smoke").data.train == [smoke_data]
    assert load_vae_recipe("vae-moe-emoji", "full").data.train == ["emoji"]
    assert load_vae_recipe("vae-moe", "smoke", ["loss.k=7"]).loss.k == 7


def test_private_dim_enters_the_config_hash_only_when_set():
    """Runs recorded before model.private_dim existed keep their hashes (it is left out while 0)."""
    from mmthesis.core.config import to_dict

    for name in ("vae-poe", "vae-moe", "vae-mopoe", "vae-moe-emoji"):
        config = load_vae_recipe(name, "smoke")
        assert "private_dim" not in to_dict(config, hashed_only=True)["model"]
        assert to_dict(config)["model"]["private_dim"] == 0  # still in config.json
    plus = load_vae_recipe("vae-mmvaeplus", "smoke")
    assert to_dict(plus, hashed_only=True)["model"]["private_dim"] == 8
    off = load_vae_recipe("vae-mmvaeplus", "smoke", ["model.private_dim=0"])
    assert config_hash(off) == config_hash(load_vae_recipe("vae-moe", "smoke", ["recipe=vae-mmvaeplus", "thesis_name=MMVAE+"]))
    with pytest.raises(UnknownNameError, match="vae-mopoe"):
        load_vae_recipe("vae-mopo", "smoke")


def test_run_round_trip_and_eval_model_kind(tokenizer, tiny_config):
    folder, model = _save_run(tokenizer, tiny_config)
    loaded = load_vae(folder).model
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(loaded.latent_image(images), model.latent_image(images))
    import mmthesis.vae  # noqa: F401  registers vae:RUN
    from mmthesis.eval.adapters import load_model

    for spec in (f"vae:{folder}", f"vae:{folder.parent.name}"):
        served = load_model(spec, "smoke")
        assert served.info["aggregation"] == "mopoe" and served.tokenizer.vocab_size == tokenizer.vocab_size
        assert torch.allclose(served.model.encode_image(images), model.encode_image(images))
        assert served.image_transform(Image.new("RGB", (20, 20))).shape == (3, 8, 8)
    assert served.fingerprint == load_model(f"vae:{folder}", "smoke").fingerprint


def test_mmvaeplus_run_round_trip(tokenizer, tiny_config):
    """Private latents and the learnt auxiliary priors are saved and reloaded; vae:RUN serves the shared latent."""
    folder, model = _save_run(tokenizer, tiny_config, "moe", private_dim=3)
    with torch.no_grad():
        model.aux_prior_logvar["text"].copy_(torch.tensor([0.5, -1.0, 2.0]))  # not the initial zeros
    write_vae_artifact(folder, load_vae(folder).config, "smoke", model)
    loaded = load_vae(folder)
    assert loaded.config.model.private_dim == 3
    assert torch.equal(loaded.model.aux_prior_logvar["text"], model.aux_prior_logvar["text"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.model.state_dict().items())
    images = torch.randn(2, 3, 8, 8)
    z = loaded.model.latent_image(images)
    assert z.shape == (2, 4) and torch.equal(z, model.latent_image(images))
    assert torch.equal(loaded.model.decode_image(z), model.decode_image(z))
    assert loaded.model.decode_text(z, max_len=5) == model.decode_text(z, max_len=5)
    import mmthesis.vae  # noqa: F401  registers vae:RUN
    from mmthesis.eval.adapters import load_model

    served = load_model(f"vae:{folder}", "smoke")
    assert served.info["latent_dim"] == 4 and served.model.encode_image(images).shape == (2, 4)


def test_broken_runs_are_one_line_errors(tokenizer, tiny_config, tmp_path):
    folder, _ = _save_run(tokenizer, tiny_config, "poe")
    state = MultimodalVAE(tiny_config("poe", latent_dim=5), tokenizer).state_dict()
    from mmthesis.core.checkpoint import save_weights

    save_weights(folder / WEIGHTS, state)
    with pytest.raises(CheckpointError, match="does not match the recipe's model"):
        load_vae(folder)
    with pytest.raises(CheckpointError, match="no finished run named 'nothing-smoke'"):
        load_vae("vae:nothing-smoke")


def test_cli_generate_writes_pngs_and_captions(tokenizer, tiny_config, tmp_path):
    folder, model = _save_run(tokenizer, tiny_config)
    out = tmp_path / "gen"
    result = runner.invoke(app, ["vae", "generate", "--model", str(folder), "--text", "a red circle", "--out", str(out)])
    assert result.exit_code == 0, result.output
    png = next(out.glob("*.png"))
    with Image.open(png) as im:
        assert im.size == (8, 8)
    ids, mask = tokenizer.encode_batch(["a red circle"])
    expected = (model.decode_image(model.latent_text(ids, mask))[0].permute(1, 2, 0).numpy() * 255).round()
    with Image.open(png) as im:
        written = torch.from_numpy(np.asarray(im.convert("RGB"))).float()
    assert torch.allclose(written, torch.from_numpy(expected).float(), atol=1.0)
    image_file = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (220, 40, 40)).save(image_file)
    result = runner.invoke(app, ["vae", "generate", "--model", str(folder), "--image", str(image_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    line = (out / "captions.txt").read_text().strip()
    assert line.startswith(str(image_file)) and "\t" in line
    bad = runner.invoke(app, ["vae", "generate", "--model", str(folder), "--image", str(tmp_path / "none.png")])
    assert bad.exit_code != 0 and "does not exist" in bad.output
    none = runner.invoke(app, ["vae", "generate", "--model", str(folder)])
    assert none.exit_code != 0 and "nothing to generate" in none.output


@pytest.mark.slow
@pytest.mark.smoke
def test_smoke_train_load_generate(tmp_path):
    """`mmthesis vae train` on a small shapes set: result.json with test metrics, a loadable run, then generate."""
    from mmthesis.core.paths import data_root
    from mmthesis.data.datasets.shapes import ShapesConfig, prepare_shapes

    prepare_shapes(data_root(), ShapesConfig(train=120, val=8, test=24, samples_per_shard=200))
    args = ["vae", "train", "vae-moe", "--scale", "smoke", "train.max_steps=4", "data.batch_size=8",
            "data.num_workers=0", "train.checkpoint_every_n_steps=2", "train.log_every_n_steps=2",
            "data.test_samples=16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = next(p for p in (data_root().parent / "runs" / "vae-moe-smoke").iterdir())
    record = json.loads((folder / "result.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["steps"] == 4
    assert record["metrics"]["test_pairs"] == 16 and "test_elbo" in record["metrics"]
    assert (folder / "logs" / "metrics.csv").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert len(json.loads((folder / "samples.json").read_text())) > 0
    again = runner.invoke(app, args)  # the same config: reused, not retrained
    assert again.exit_code == 0 and "reusing finished run" in again.output
    out = tmp_path / "gen"
    gen = runner.invoke(app, ["vae", "generate", "--model", "vae-moe-smoke", "--text", "a red circle", "--out", str(out)])
    assert gen.exit_code == 0, gen.output
    assert len(list(out.glob("*.png"))) == 1
