"""Load foreign ``.pt`` checkpoints (fairseq, unilm, DINO) without running arbitrary pickles.

fairseq checkpoints pickle their OmegaConf config (``DictConfig``/``ListConfig``
and node objects), config enums and dataclass types next to the weights;
unilm checkpoints may hold an ``argparse.Namespace``. ``torch.load(...,
weights_only=True)`` refuses all of these. Instead of unpickling them for
real (which would import fairseq/omegaconf and execute whatever the file
names), this module gives ``torch.load`` a ``pickle`` module whose
``Unpickler.find_class`` resolves only:

* what torch's own weights-only loader allows (tensor/storage rebuild
  functions, ``OrderedDict``, dtypes, ``torch.Size`` ...);
* a few harmless builtins and numpy scalar/array rebuilders;
* *stand-in* classes for ``omegaconf.*``, ``fairseq.*``, ``examples.*``
  (data2vec's config enums/dataclasses) and ``argparse.Namespace``: inert
  objects that just record the constructor arguments and state they are
  given, turned into plain dicts/lists/values afterwards (``to_plain``).

Any other global (``os.system``, ``builtins.eval``, a project's own class...)
raises ``DisallowedGlobal``; the caller turns it into a one-line
``CheckpointError`` that names the object. Nothing from the file is ever
called except the allow-listed callables above.
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import os
import pickle
from collections import OrderedDict, defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

#: module prefixes whose classes are rebuilt as inert stand-ins
STANDIN_PREFIXES = ("omegaconf.", "fairseq.", "examples.", "hydra.")
STANDIN_NAMES = {"argparse.Namespace", "typing.Any", "enum.Enum", "pathlib.PosixPath", "pathlib.WindowsPath"}
SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool", "bytes", "bytearray",
                 "complex", "slice", "object", "type", "NoneType", "range"}


class DisallowedGlobal(pickle.UnpicklingError):
    """The pickle names a global that is not on the allow-list."""

    def __init__(self, qualname: str) -> None:
        self.qualname = qualname
        super().__init__(f"disallowed global {qualname}")


class StandIn:
    """An inert replacement for a pickled object of a foreign class."""

    _qualname = "StandIn"
    _args: tuple[Any, ...] = ()
    _kwargs: dict[str, Any] = {}
    _state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._state: Any = None

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"<stand-in {self._qualname}>"


_STANDINS: dict[str, type[StandIn]] = {}


def standin_class(qualname: str) -> type[StandIn]:
    if qualname not in _STANDINS:
        _STANDINS[qualname] = type(qualname.rsplit(".", 1)[-1], (StandIn,), {"_qualname": qualname})
    return _STANDINS[qualname]


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Stand-in for ``copyreg._reconstructor`` (protocol < 2 / ``__reduce_ex__`` objects)."""
    if isinstance(cls, type) and issubclass(cls, StandIn):
        obj = cls.__new__(cls)
        StandIn.__init__(obj)
        if state is not None:
            obj._args = (state,)
        return obj
    if cls in (dict, list, tuple, set, OrderedDict, object):
        return cls() if state is None else cls(state)
    raise DisallowedGlobal(f"copyreg._reconstructor({getattr(cls, '__qualname__', cls)!r})")


def _allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {}
    try:  # torch's own weights-only allow-list (private, stable since torch 2.0)
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except Exception:  # pragma: no cover - fallback for a torch that moved it
        allowed.update({"collections.OrderedDict": OrderedDict, "torch.Size": torch.Size,
                        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter})
    allowed["collections.defaultdict"] = defaultdict
    allowed["copyreg._reconstructor"] = _reconstructor
    import builtins

    for name in SAFE_BUILTINS:
        if hasattr(builtins, name):
            allowed[f"builtins.{name}"] = getattr(builtins, name)
    allowed["builtins.NoneType"] = type(None)
    try:
        import numpy as np

        try:
            from numpy._core import multiarray  # numpy 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core import multiarray  # type: ignore[no-redef]
        allowed["numpy.dtype"] = np.dtype
        allowed["numpy.ndarray"] = np.ndarray
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[f"{mod}._reconstruct"] = multiarray._reconstruct
            allowed[f"{mod}.scalar"] = multiarray.scalar
    except Exception:  # pragma: no cover - numpy missing or reorganised
        pass
    return allowed


_ALLOWED: dict[str, Any] | None = None


def resolve_global(module: str, name: str) -> Any:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed_globals()
    qualname = f"{module}.{name}"
    if qualname in _ALLOWED:
        return _ALLOWED[qualname]
    if module.startswith("numpy.dtypes") and name.endswith("DType"):
        import numpy as np

        return getattr(np.dtypes, name)
    if qualname in STANDIN_NAMES or module.startswith(STANDIN_PREFIXES) or module in {p[:-1] for p in STANDIN_PREFIXES}:
        return standin_class(qualname)
    raise DisallowedGlobal(qualname)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        # torch.save writes protocol 2, which stores Python 2 names (`__builtin__`,
        # `copy_reg`); the stock find_class maps them back, so must we
        # (Python 2 module names never exist on Python 3, so mapping them always is safe)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        return resolve_global(module, name)


def _load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


#: passed to ``torch.load(pickle_module=...)``; torch subclasses ``Unpickler``
#: and wraps only storage lookups, every other global goes through ours
restricted_pickle = SimpleNamespace(Unpickler=RestrictedUnpickler, load=_load, __name__="mmthesis_restricted_pickle")


def restricted_torch_load(path: str | os.PathLike[str], map_location: str = "cpu") -> Any:
    """``torch.load`` with the restricted unpickler; stand-ins converted to plain Python."""
    obj = torch.load(str(Path(path)), map_location=map_location, weights_only=False, pickle_module=restricted_pickle)
    return to_plain(obj)


def to_plain(obj: Any) -> Any:
    """Replace stand-ins by dicts / lists / values; keep tensors and containers."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, StandIn):
        return _standin_to_plain(obj)
    if isinstance(obj, type) and issubclass(obj, StandIn):
        return obj._qualname  # a class used as a value (OmegaConf ref types, dataclass types)
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) else {
            k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    return obj


def _standin_to_plain(obj: StandIn) -> Any:
    q = obj._qualname
    state = obj._state
    if q.endswith(("DictConfig", "ListConfig")) and isinstance(state, dict):
        return to_plain(state.get("_content"))
    if q.startswith("omegaconf.nodes.") and isinstance(state, dict):
        return to_plain(state.get("_val"))
    if q.startswith("omegaconf.base."):
        return None  # node/container metadata
    if isinstance(state, dict) and not obj._args:
        return {k: to_plain(v) for k, v in state.items()}  # argparse.Namespace, dataclass instances
    if state is None and len(obj._args) == 1:
        return to_plain(obj._args[0])  # enum members: Modality(value)
    if state is None and not obj._args:
        return q
    return {"__standin__": q, "args": to_plain(list(obj._args)), "state": to_plain(state)}


# keep copyreg imported for readers: _reconstructor replaces copyreg._reconstructor
_ = copyreg
