"""The VAE's reproduce kind (vae-arithmetic) and figure-vae-* builders, registered into eval from the vae package."""

from __future__ import annotations

import json

import pytest
import torch

from mmthesis.core.config import config_hash
from mmthesis.core.errors import ConfigError
from mmthesis.core.paths import data_root
from mmthesis.core.results import RunRecorder, run_dir
from mmthesis.data.datasets.shapes import ShapesConfig, prepare_shapes
from mmthesis.data.tokenizers import load_dataset_tokenizer
from mmthesis.vae.artifact import run_name, write_vae_artifact
from mmthesis.vae.config import VAEModelConfig, VAERecipeConfig
from mmthesis.vae.model import MultimodalVAE

FIGURES = {
    "figure-vae-traversal": "figure: vae-traversal\ncaption: a red circle\ndims: 3\nsteps: 4\nspan: 2.0\n",
    "figure-vae-arithmetic": "figure: vae-arithmetic-examples\nkinds: [image-swap-colour, text-swap-colour]\nper_kind: 1\n",
    "figure-vae-generation": "figure: vae-generation\ncaptions: [a red circle, a blue square]\nsamples: 2\n",
}
HEADER = "label: x\ntitle: t\nsection: s\nkind: figure\ncategory: model\nscales: [smoke]\n"


@pytest.fixture
def specs(tmp_path, monkeypatch):
    folder = tmp_path / "reproductions"
    folder.mkdir()
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))
    import mmthesis.vae  # noqa: F401  registers mmthesis.vae.reproduce with the reproduce engine

    return folder


@pytest.fixture
def tiny_shapes_vae():
    """Small prepared shapes and a finished tiny (untrained) MoPoE run with the shapes tokenizer; its folder."""
    prepare_shapes(data_root(), ShapesConfig(train=40, val=4, test=16, samples_per_shard=100))
    model_config = VAEModelConfig(aggregation="mopoe", latent_dim=4, img_size=8, image_channels=4, text_dim=8)
    config = VAERecipeConfig(recipe="vae-mopoe", thesis_name="x", model=model_config)
    torch.manual_seed(0)
    model = MultimodalVAE(config.model, load_dataset_tokenizer("shapes")).eval()
    folder = run_dir(run_name(config, "smoke"), config_hash(config))
    with RunRecorder(run_name(config, "smoke"), "smoke", config):
        write_vae_artifact(folder, config, "smoke", model)
    return folder, model


def test_figures_render_from_a_tiny_vae(specs, tiny_shapes_vae, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce_figure
    from mmthesis.eval.reproduce.specs import all_names, extra_names

    folder, model = tiny_shapes_vae
    for name, body in FIGURES.items():
        (specs / f"{name}.yaml").write_text(HEADER + body + f"run: {folder}\n")
    (specs / "figure-3.yaml").write_text(HEADER + FIGURES["figure-vae-generation"] + f"run: {folder}\n")
    assert extra_names() == sorted(FIGURES) and all_names() == ["figure-3"]  # named specs stay out of `all`
    out = tmp_path / "figures"
    built = {name: reproduce_figure(name, "smoke", out) for name in FIGURES}
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").is_file()
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["figure"] == 0 and sidecar["records"] == [f"$MMTHESIS_HOME/runs/{folder.parent.name}/{folder.name}/result.json"]
    # traversal: 3 rows of 4 images around the caption's latent, which the sidecar records
    centre = model.latent_text(*model.encode_captions(["a red circle"]))[0]
    assert built["figure-vae-traversal"].values["caption_latent"] == pytest.approx(centre.tolist(), abs=1e-4)
    assert built["figure-vae-traversal"].values["offsets"] == pytest.approx([-2.0, -2 / 3, 2 / 3, 2.0])
    # arithmetic: the eval's own queries (one per kind), each decoded to a caption
    rows = built["figure-vae-arithmetic"].values["queries"]
    assert [r["kind"] for r in rows] == ["image-swap-colour", "text-swap-colour"]
    assert rows[0]["terms"][0]["kind"] == "image" and rows[1]["terms"][0]["kind"] == "text"
    assert all(isinstance(r["decoded_text"], str) for r in rows)
    # generation: column 0 is the posterior mean's image
    first = model.decode_image(model.latent_text(*model.encode_captions(["a red circle"])))
    assert built["figure-vae-generation"].values["pixel_mean"][0][0] == pytest.approx(float(first.mean()), abs=1e-3)


def test_vae_arithmetic_kind_renders_rows_chance_and_failures(specs):
    from mmthesis.eval.reproduce.specs import load_spec
    from mmthesis.vae.reproduce import render

    (specs / "vae-arithmetic.yaml").write_text(
        "table: 0\nlabel: l\ntitle: T\nsection: s\nkind: vae-arithmetic\nscales: [smoke]\n"
        "rows: [{label: A, vae: vae-mopoe}, {label: B, recipe: s-smke-cdl-mb}]\n"
        "columns: [{header: i2t, task: coherence-shapes, metric: i2t/all, chance: i2t/chance/all},\n"
        "  {header: arith, task: latent-arithmetic-shapes, metric: mean/arithmetic/all},\n"
        "  {header: dec, task: latent-arithmetic-shapes, metric: decoded-text/mean/arithmetic/all, generative_only: true}]\n"
    )
    spec = load_spec("vae-arithmetic")
    assert spec.name == "vae-arithmetic"
    metrics = {
        "A": {"coherence-shapes": {"i2t/all": 61.25, "i2t/chance/all": 4.0}, "latent-arithmetic-shapes": {"mean/arithmetic/all": 10.0}},
        "B": {"coherence-shapes": {"error": "not a generator"}, "latent-arithmetic-shapes": {"mean/arithmetic/all": 30.0}},
    }
    built = render(spec, "smoke", metrics, [])
    assert built.table.header == ["Model", "i2t", "arith", "dec"]
    # B embeds only: its decoded cell is n/a (no note); a missing metric or a failed evaluation is "–" with its reason
    assert built.table.rows == [["A", "61.2", "10.0", "–"], ["B", "–", "30.0", "n/a"], ["Chance", "4.0", "–", "–"]]
    assert built.values["A"] == {"i2t": 61.25, "arith": 10.0} and built.status == "partial"
    assert built.table.notes == [
        "– A: latent-arithmetic-shapes reports no decoded-text/mean/arithmetic/all", "– B: not a generator"
    ]
    from mmthesis.vae.reproduce import _tasks

    assert _tasks(spec, spec.rows[1]) == ["coherence-shapes", "latent-arithmetic-shapes"]  # i2t has no flag here
    with pytest.raises(ConfigError, match="exactly one of vae: or recipe:"):
        from mmthesis.vae.reproduce import ModelRow

        ModelRow("C", vae="vae-poe", recipe="s-smke-cdl-mb")
