import collections
import pickle

import pytest
import torch

from mmthesis.core.checkpoint import extract_state_dict, load_weights, save_weights
from mmthesis.core.errors import CheckpointError


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_safetensors_roundtrip_and_tied_weights(tmp_path):
    w = torch.randn(3, 4)
    sd = {"a.weight": w, "b.weight": w, "c": torch.arange(5)}  # tied tensors share storage
    path = save_weights(tmp_path / "m.safetensors", sd, {"recipe": "x"})
    out = load_weights(path)
    assert torch.equal(out["a.weight"], w) and torch.equal(out["b.weight"], w) and torch.equal(out["c"], sd["c"])


def test_plain_torch_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"model": collections.OrderedDict(x=torch.ones(2))}, path)
    assert torch.equal(extract_state_dict(load_weights(path))["x"], torch.ones(2))


def test_stray_pickled_object_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.ones(1)}, "cfg": Evil()}, path)
    with pytest.raises(CheckpointError) as e:
        load_weights(path)
    assert "--trust-checkpoint" in e.value.one_line() and "\n" not in e.value.one_line()
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"\x00garbage" * 10, "corrupt"), (None, "does not exist")])
def test_corrupt_or_missing_files(tmp_path, content, match):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_weights(path)


def test_truncated_safetensors(tmp_path):
    path = save_weights(tmp_path / "m.safetensors", {"x": torch.randn(100)})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_weights(path)


def test_pickle_protocol_objects_never_execute(tmp_path):
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_weights(path)
