"""Typed dataclass configs loaded from YAML with ``key=value`` overrides.

Why our own: the needs are small (strict keys, type checks, dotted
overrides, a stable hash) and OmegaConf/Hydra would add a global
config system and a pickled-config format we must not depend on (fairseq's
checkpoints are exactly that problem). Every config is a plain dataclass;
unknown keys and wrong types are ``ConfigError`` naming the key and the
allowed keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from mmthesis.core.errors import ConfigError
from mmthesis.core.io import sha256_json

C = TypeVar("C")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against ``tp`` and convert lossless cases (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in get_args(tp)], n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"config key {key!r} must be one of {_type_name(tp)}, got {value!r}{hint}")
    if origin in (Union, types.UnionType):
        for arm in get_args(tp):
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key!r} must be null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key {key!r} needs {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {value!r}")


def _fields(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {prefix.rstrip('.') or 'root'} must be a mapping, got {data!r}")
    fields = _fields(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}",
            f"allowed keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(fields))}",
        )
    kwargs = {name: _coerce(value, fields[name], prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without default is missing
        missing = [n for n in fields if n not in kwargs]
        raise ConfigError(f"config is missing required key(s) {', '.join(prefix + m for m in missing)}") from e
    except ValueError as e:  # __post_init__ validation
        raise ConfigError(f"invalid config{' ' + prefix.rstrip('.') if prefix else ''}: {e}") from e


# dataclass field metadata: ``field(..., metadata=NOT_HASHED)`` marks a setting that does not change what a run
# computes (e.g. which loggers it writes to), so ``config_hash`` leaves it out and changing it reuses the run
NOT_HASHED = {"hash": False}
# ``field(default=..., metadata=HASHED_UNLESS_DEFAULT)`` marks a setting added after runs were recorded whose default
# keeps the old behaviour: left out of ``config_hash`` while at its default, so those runs keep their hashes
HASHED_UNLESS_DEFAULT = {"hash": "unless-default"}


def to_dict(config: Any, *, hashed_only: bool = False) -> dict[str, Any]:
    """Plain-data view of a config (tuples become lists), suitable for YAML/JSON.

    ``hashed_only`` drops the fields marked ``NOT_HASHED`` and those marked ``HASHED_UNLESS_DEFAULT`` that are at
    their default (what ``config_hash`` digests).
    """

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {
                f.name: plain(getattr(v, f.name))
                for f in dataclasses.fields(v)
                if not (hashed_only and _unhashed(f, getattr(v, f.name)))
            }
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(config)


def _unhashed(f: dataclasses.Field, value: Any) -> bool:
    rule = f.metadata.get("hash", True)
    return rule is False or (rule == "unless-default" and value == f.default)


def config_hash(config: Any) -> str:
    """Stable short hash of a config's values: equal configs give equal hashes (``NOT_HASHED`` fields left out)."""
    return sha256_json(to_dict(config, hashed_only=True))[:16]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], parsed value); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value", "write e.g. train.max_steps=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key", "write e.g. train.max_steps=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides onto a nested mapping (copy)."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return result


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (used for scale overrides)."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml_file(path: Path, included_by: Path | None = None) -> dict[str, Any]:
    """One YAML file's top-level mapping, ``include:`` not yet applied."""
    by = f"config file {str(included_by)!r} includes {str(path)!r}, which" if included_by else None
    if not path.is_file():
        raise ConfigError(f"{by} does not exist" if by else f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        if by:
            raise ConfigError(f"{by} does not hold a mapping at the top level")
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def _resolve_includes(path: Path, included_by: Path | None, stack: tuple[Path, ...]) -> dict[str, Any]:
    data = _read_yaml_file(path, included_by)
    includes = data.pop("include", None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise ConfigError(
            f"config file {str(path)!r}: include must be a file name or a list of file names, got {includes!r}"
        )
    here = (*stack, path.resolve())
    merged: dict[str, Any] = {}
    for name in includes:
        target = path.parent / name
        if target.resolve() in here:
            chain = " -> ".join(p.name for p in (*here, target))
            raise ConfigError(f"config file {str(path)!r} includes {str(target)!r}, which is a cycle ({chain})")
        merged = deep_merge(merged, _resolve_includes(target, path, here))
    return deep_merge(merged, data)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping, with ``include:`` applied.

    A file may have a top-level ``include: base.yaml`` (or a list of files),
    paths relative to the including file, as lm-eval's task YAML does: the
    included files are merged first, in order, then the including file's keys
    win, recursively (``deep_merge``). Includes may nest; a cycle, a missing
    file or an included file that is not a mapping is a one-line
    ``ConfigError`` naming both files. Every config loader reads through here.
    """
    return _resolve_includes(Path(path), None, ())


def yaml_names(folder: Path) -> list[str]:
    """The YAML files of a folder by stem; ``_*.yaml`` are shared bases for ``include:``, not entries."""
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def comment_header(path: Path) -> str:
    """A YAML file's leading comment block (what it is, the command, the readings it takes).

    An ``include:`` line (or blank lines) above the block is skipped; the included base's comments are not the file's.
    """
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not lines and (not line.strip() or line.startswith("include:")):
            continue
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


def load_config(cls: type[C], source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None) -> C:
    """Load ``cls`` from a YAML file or mapping, then apply ``key=value`` overrides."""
    data = read_yaml(source) if isinstance(source, (str, Path)) else dict(source or {})
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def replace(config: C, **changes: Any) -> C:
    return typing.cast(C, dataclasses.replace(config, **changes))  # type: ignore[type-var]
