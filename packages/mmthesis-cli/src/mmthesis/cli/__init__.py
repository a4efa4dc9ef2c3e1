"""mmthesis.cli: the Typer application behind the `mmthesis` command."""

from mmthesis.core._lazy import lazy_exports

_EXPORTS = {
    "app": "mmthesis.cli.app",
    "main": "mmthesis.cli.app",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
