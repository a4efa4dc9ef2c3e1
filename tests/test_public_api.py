"""Each package's ``__all__`` is what users import; importing a package stays light (names load lazily)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["core", "data", "teachers", "eval", "vae", "cli"]


@pytest.mark.parametrize("short", PACKAGES)
def test_every_public_name_resolves(short):
    package = importlib.import_module(f"mmthesis.{short}")
    assert isinstance(package.__all__, list) and len(set(package.__all__)) == len(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None, name
        assert name in dir(package)
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


@pytest.mark.parametrize("short", ["core", "data", "eval", "vae", "cli"])
def test_importing_a_package_does_not_import_torch(short):
    code = f"import sys, mmthesis.{short}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
