"""mmthesis.vae: a multimodal VAE over images and captions (the thesis exposé's last research question).

``MultimodalVAE`` (shared latent; product, mixture, or mixture-of-products-of-experts joint posterior) with its
ELBO / IWAE / DReG estimators, trained by ``train_vae`` from YAML recipes (``mmthesis vae train``), and loaded by
the eval harness as ``--model vae:RUN`` (registered when this package is imported).
"""

from mmthesis.core._lazy import lazy_exports

_EXPORTS = {
    "MultimodalVAE": "mmthesis.vae.model",
    "VAERecipeConfig": "mmthesis.vae.config",
    "VAEModelConfig": "mmthesis.vae.config",
    "VAELossConfig": "mmthesis.vae.config",
    "Gaussian": "mmthesis.vae.estimators",
    "product_of_experts": "mmthesis.vae.estimators",
    "load_vae": "mmthesis.vae.artifact",
    "TrainedVAE": "mmthesis.vae.artifact",
    "load_vae_recipe": "mmthesis.vae.recipes",
    "vae_recipe_names": "mmthesis.vae.recipes",
    "train_vae": "mmthesis.vae.train",
    "load_vae_model": "mmthesis.vae.loading",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)


def _register() -> None:
    """Add ``vae:RUN`` to the eval harness's ``--model`` kinds and this package's reproduce kind and figures, by name
    (no torch or matplotlib import here)."""
    try:
        from mmthesis.eval.model_kinds import register_model_kind
    except ModuleNotFoundError as e:  # a bare install without the eval package
        if (e.name or "").startswith("mmthesis.eval"):
            return
        raise
    from mmthesis.eval.reproduce.specs import register_reproduce_module

    register_model_kind("vae", "mmthesis.vae.loading:load_vae_model")
    # the vae-arithmetic table kind and the figure-vae-* builders (imported when a spec needs them)
    register_reproduce_module("mmthesis.vae.reproduce")


_register()
