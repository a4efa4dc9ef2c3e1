from dataclasses import dataclass, field
from typing import Literal

import pytest

from mmthesis.core.config import (
    HASHED_UNLESS_DEFAULT,
    apply_overrides,
    config_hash,
    from_dict,
    load_config,
    read_yaml,
    to_dict,
)
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


@dataclass
class Later(Outer):
    """``Outer`` after a field was added whose default keeps the old behaviour."""

    extra: int = field(default=0, metadata=HASHED_UNLESS_DEFAULT)


def test_a_field_hashed_unless_default_keeps_old_hashes_at_its_default():
    old = from_dict(Outer, {"name": "x", "tags": ["t"]})
    assert config_hash(from_dict(Later, {"name": "x", "tags": ["t"]})) == config_hash(old)
    changed = from_dict(Later, {"name": "x", "tags": ["t"], "extra": 3})
    assert config_hash(changed) != config_hash(old) and to_dict(changed, hashed_only=True)["extra"] == 3
    assert to_dict(from_dict(Later, {"name": "x"}))["extra"] == 0  # still written to config.json / result.json


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")


def _write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_merges_base_first_and_the_including_file_wins_recursively(tmp_path):
    _write(tmp_path, "_base.yaml", "name: base\nsteps: 5\ninner: {lr: 0.1, betas: [0.1, 0.2]}\ntags: [a]\n")
    f = _write(tmp_path, "c.yaml", "include: _base.yaml\nname: x\ninner: {lr: 0.5}\n")
    assert read_yaml(f) == {"name": "x", "steps": 5, "inner": {"lr": 0.5, "betas": [0.1, 0.2]}, "tags": ["a"]}
    assert load_config(Outer, f, ["steps=7"]) == Outer(
        name="x", steps=7, inner=Inner(lr=0.5, betas=(0.1, 0.2)), tags=["a"]
    )


def test_include_list_merges_in_order_and_nests(tmp_path):
    _write(tmp_path, "_root.yaml", "name: root\nsteps: 1\nmode: a\n")
    _write(tmp_path, "_one.yaml", "include: _root.yaml\nsteps: 2\npath: one\n")
    _write(tmp_path, "_two.yaml", "path: two\n")
    f = _write(tmp_path, "c.yaml", "include: [_one.yaml, _two.yaml]\nmode: b\n")
    assert read_yaml(f) == {"name": "root", "steps": 2, "mode": "b", "path": "two"}


def test_include_paths_are_relative_to_the_including_file(tmp_path):
    _write(tmp_path, "bases/_inner.yaml", "inner: {lr: 0.3}\n")
    _write(tmp_path, "bases/_base.yaml", "include: _inner.yaml\nname: nested\n")
    f = _write(tmp_path, "tasks/c.yaml", "include: ../bases/_base.yaml\nsteps: 4\n")
    assert read_yaml(f) == {"name": "nested", "inner": {"lr": 0.3}, "steps": 4}


def test_include_cycle_is_a_one_line_error_naming_both_files(tmp_path):
    _write(tmp_path, "a.yaml", "include: b.yaml\nname: a\n")
    _write(tmp_path, "b.yaml", "include: a.yaml\nsteps: 1\n")
    with pytest.raises(ConfigError, match="cycle") as e:
        read_yaml(tmp_path / "a.yaml")
    msg = e.value.one_line()
    assert "b.yaml" in msg and "a.yaml" in msg and "\n" not in msg
    _write(tmp_path, "self.yaml", "include: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        read_yaml(tmp_path / "self.yaml")


def test_include_of_missing_or_non_mapping_file_names_both_files(tmp_path):
    f = _write(tmp_path, "c.yaml", "include: _nope.yaml\nname: x\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*includes.*_nope\.yaml.*does not exist"):
        read_yaml(f)
    _write(tmp_path, "_list.yaml", "- 1\n- 2\n")
    g = _write(tmp_path, "d.yaml", "include: _list.yaml\n")
    with pytest.raises(ConfigError, match=r"d\.yaml.*includes.*_list\.yaml.*not hold a mapping"):
        read_yaml(g)
    h = _write(tmp_path, "e.yaml", "include: {a: 1}\n")
    with pytest.raises(ConfigError, match="include must be a file name"):
        read_yaml(h)


def test_one_scale_type_for_every_package():
    from mmthesis.core.scales import SCALES, check_scale

    assert SCALES == ("smoke", "small", "full") and check_scale("small") == "small"
    with pytest.raises(ConfigError, match="unknown scale 'tiny'.*use one of: smoke, small, full"):
        check_scale("tiny")
