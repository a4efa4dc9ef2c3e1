"""mmthesis.core: config, registry, results, safe checkpoint I/O, paths and console.

Everything else in mmthesis depends on this package and on nothing above it.
"""

from mmthesis.core.errors import (
    CheckpointError,
    ConfigError,
    DataMissingError,
    MMThesisError,
    UnknownNameError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataMissingError",
    "MMThesisError",
    "UnknownNameError",
]
