"""mmthesis.vae: the multimodal VAE and latent-space arithmetic planned in the thesis exposé.

Nothing is implemented here yet: the exposé's plan (REFERENCE.md §8) has no
issue open. The package exists so the layout and dependency order of
DESIGN.md hold and so `mmthesis doctor` can report its version.
"""

__all__: list[str] = []  # nothing public yet (see above)
