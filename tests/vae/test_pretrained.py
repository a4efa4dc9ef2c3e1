"""``model.encoder=pretrained``: a VAE on the frozen features of a model the eval harness loads (here a tiny random
S-SMKE_CDL_MB run), trained a few steps by ``train_vae`` (what `mmthesis vae train` calls), saved and reloaded."""

from __future__ import annotations

import json

import pytest
import torch

from mmthesis.core.checkpoint import load_weights, save_weights
from mmthesis.core.config import config_hash, to_dict
from mmthesis.core.io import atomic_write_text
from mmthesis.core.paths import data_root
from mmthesis.core.results import RunRecorder, run_dir
from mmthesis.data.datasets.shapes import ShapesConfig, prepare_shapes
from mmthesis.data.tokenizers import load_dataset_tokenizer
from mmthesis.students import artifact as students_artifact
from mmthesis.students.model import SSMKE
from mmthesis.students.recipes import load_recipe
from mmthesis.vae import train as vae_train
from mmthesis.vae.artifact import WEIGHTS, load_vae
from mmthesis.vae.recipes import load_vae_recipe

PARTS = ("image_encoder.", "text_encoder.", "image_decoder.", "text_decoder.")


def _tiny_student_run():
    """A finished tiny *random* S-SMKE_CDL_MB run on shapes (as tests/eval/conftest.py writes one); its folder."""
    config = load_recipe("s-smke-cdl-mb", "smoke", ["data.train=[shapes]", "data.retrieval_eval=[shapes]"])
    tokenizer = load_dataset_tokenizer("shapes")
    torch.manual_seed(0)
    model = SSMKE(config.model, tokenizer.vocab_size, None, load_pretrained=False)
    name = students_artifact.run_name(config, "smoke")
    folder = run_dir(name, config_hash(config))
    with RunRecorder(name, "smoke", config):
        save_weights(folder / students_artifact.WEIGHTS, model.state_dict())
        tokenizer.save(folder / students_artifact.TOKENIZER)
        atomic_write_text(folder / students_artifact.CONFIG, json.dumps(to_dict(config)))
    return folder


@pytest.mark.smoke
def test_vae_on_a_frozen_pretrained_model_trains_saves_and_reloads(monkeypatch):
    prepare_shapes(data_root(), ShapesConfig(train=48, val=4, test=12, samples_per_shard=100))
    student = _tiny_student_run()
    frozen_weights = load_weights(student / students_artifact.WEIGHTS)
    seen = []

    def spy(config, scale):  # the frozen model train_vae loads, kept to inspect after training
        seen.append(real(config, scale))
        return seen[-1]

    real = vae_train.load_pretrained
    monkeypatch.setattr(vae_train, "load_pretrained", spy)
    overrides = ["model.encoder=pretrained", f"model.pretrained=run:{student}", "model.head_hidden=16",
                 "train.max_steps=3", "data.batch_size=8", "data.num_workers=0", "data.test_samples=8",
                 "train.checkpoint_every_n_steps=3", "train.log_every_n_steps=1"]
    config = load_vae_recipe("vae-moe", "smoke", overrides)
    result = vae_train.train_vae(config, "smoke")
    assert result.status == "finished" and result.metrics["steps"] == 3
    assert all(v == v for k, v in result.metrics.items() if k.startswith("test_"))  # no NaN

    # the frozen model: not trained (every tensor as saved), no gradients asked for
    (loaded,) = seen
    after = loaded.model.state_dict()  # the SSMKE student itself
    assert set(after) == set(frozen_weights)
    assert all(torch.equal(after[k], frozen_weights[k]) for k in frozen_weights)
    assert not any(p.requires_grad for p in loaded.model.parameters())

    # the VAE's weights (and Lightning's checkpoint) hold only the VAE: posterior heads and decoders
    folder = run_dir(f"{config.recipe}-smoke", config_hash(config))
    saved = load_weights(folder / WEIGHTS)
    assert saved and all(k.startswith(PARTS) for k in saved)
    assert sum(t.numel() for t in saved.values()) == result.metrics["parameters"]
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(k.startswith(tuple("vae." + p for p in PARTS)) for k in ckpt["state_dict"])

    # load_vae rebuilds it on the reloaded frozen model, with that model's tokenizer, and decodes
    trained = load_vae(folder)
    vae = trained.model
    assert trained.config.model.pretrained == f"run:{student}"
    assert vae._pretrained[0].fingerprint == loaded.fingerprint
    assert vae.tokenizer.vocab_size == loaded.tokenizer.vocab_size
    assert all(torch.equal(v, saved[k]) for k, v in vae.state_dict().items())
    images = torch.randn(2, 3, 32, 32)
    z = vae.latent_image(images)
    assert z.shape == (2, config.model.latent_dim)
    assert vae.decode_image(z).shape == (2, 3, 32, 32)
    captions = vae.decode_text(vae.latent_text(*vae.encode_captions(["a red circle", "a blue square"])), max_len=6)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    # and scores its test split exactly as after training (same seed, same numbers)
    test = vae_train._pairs(config, ["shapes"], "test", vae.tokenizer, "smoke")[0]
    metrics, _ = vae_train.evaluate_vae(vae, test, config.data.test_samples, seed=config.train.seed)
    for key, value in metrics.items():
        assert value == pytest.approx(result.metrics[key], rel=1e-5, abs=1e-6), key
