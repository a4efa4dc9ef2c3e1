"""One converter per foreign checkpoint format; each a pure function ``convert(state_dict) -> Converted``."""

from mmthesis.teachers.converters.common import CheckReport, Converted, check, load_into, map_keys

__all__ = ["CheckReport", "Converted", "check", "load_into", "map_keys"]
