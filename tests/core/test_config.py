from dataclasses import dataclass, field
from typing import Literal

import pytest

from mmthesis.core.config import apply_overrides, config_hash, from_dict, load_config, to_dict
from mmthesis.core.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass
class Outer:
    name: str
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    path: str | None = None
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)


def test_loads_nested_with_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: x\ninner: {lr: 0.5}\n")
    c = load_config(Outer, f, ["steps=3", "inner.betas=[0.1, 0.2]", "mode=b", "tags=[p, q]"])
    assert c == Outer(name="x", steps=3, mode="b", inner=Inner(lr=0.5, betas=(0.1, 0.2)), tags=["p", "q"])


def test_int_is_accepted_for_float_but_not_bool_for_int():
    assert from_dict(Outer, {"name": "x", "inner": {"lr": 1}}).inner.lr == 1.0
    with pytest.raises(ConfigError, match="'steps' must be an integer"):
        from_dict(Outer, {"name": "x", "steps": True})


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as e:
        load_config(Outer, {"name": "x"}, ["inner.lrr=3"])
    msg = e.value.one_line()
    assert "unknown config key 'inner.lrr'" in msg
    assert "betas, lr" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "override, match",
    [("steps=abc", "'steps' must be an integer"), ("mode=c", "'mode' must be one of 'a' | 'b'"), ("inner.betas=[1]", "needs 2 values")],
)
def test_wrong_types_are_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(Outer, {"name": "x"}, [override])


def test_override_syntax_and_missing_required():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="missing required key"):
        from_dict(Outer, {})


def test_hash_is_stable_and_value_sensitive():
    a = from_dict(Outer, {"name": "x", "tags": ["t"]})
    b = from_dict(Outer, {"tags": ["t"], "name": "x"})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(from_dict(Outer, {"name": "x", "tags": ["u"]}))
    assert to_dict(a)["inner"]["betas"] == [0.9, 0.98]


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")
