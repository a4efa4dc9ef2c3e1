"""``--model vae:RUN``: a trained VAE behind the eval harness's model interface.

``RUN`` is a run folder or ``NAME[/HASH]`` under ``runs_root()`` (e.g. ``vae:vae-mopoe-smoke``). Importing
``mmthesis.vae`` registers the kind with ``mmthesis.eval.model_kinds`` (the CLI imports it).
"""

from __future__ import annotations

from mmthesis.core.io import sha256_file, sha256_json
from mmthesis.data.transforms import eval_transform
from mmthesis.eval.adapters import LoadedModel
from mmthesis.vae.artifact import WEIGHTS, load_vae

KIND = "vae"


def load_vae_model(spec: str, scale: str = "full") -> LoadedModel:
    """A finished VAE run as a ``LoadedModel``: ``model`` is the ``MultimodalVAE`` (encode_*, latent_*, decode_*)."""
    trained = load_vae(spec)
    config, model = trained.config, trained.model
    parts = {"kind": "mmthesis-vae", "weights": sha256_file(trained.folder / WEIGHTS)}
    if config.model.pretrained:
        parts["pretrained"] = model._pretrained[0].fingerprint
    return LoadedModel(
        spec=spec,
        fingerprint=sha256_json(parts)[:16],
        model=model,
        image_transform=eval_transform(config.model.img_size),
        tokenizer=model.tokenizer,
        max_text_length=config.data.max_text_length,
        info={"kind": "mmthesis-vae", "run": str(trained.folder), "recipe": config.recipe, "has_text": True,
              "aggregation": config.model.aggregation, "latent_dim": config.model.latent_dim},
    )
