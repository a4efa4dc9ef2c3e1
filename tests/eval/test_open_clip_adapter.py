import json

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from mmthesis.eval.adapters import load_model  # noqa: E402

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


def test_adapter_embeddings_equal_open_clip_normalised_outputs(tmp_path):
    (tmp_path / "mmthesis-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "mmthesis-tiny-clip.json")
    loaded = load_model("open_clip:mmthesis-tiny-clip")
    ref = loaded.model.clip
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids, mask = loaded.tokenizer.encode_batch(["a red circle", "two blue squares", "x"])
    assert ids.shape == (3, 16) and torch.equal(mask, ids == 0)
    with torch.no_grad():
        want_img = torch.nn.functional.normalize(ref.encode_image(images), dim=-1)
        want_txt = torch.nn.functional.normalize(ref.encode_text(ids), dim=-1)
    assert torch.allclose(loaded.model.encode_image(images), want_img, atol=1e-6)
    assert torch.allclose(loaded.model.encode_text(ids, mask), want_txt, atol=1e-6)
    assert load_model("open_clip:mmthesis-tiny-clip").fingerprint == loaded.fingerprint  # seeded random weights
