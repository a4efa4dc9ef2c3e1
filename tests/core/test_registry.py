import pytest

from mmthesis.core.errors import UnknownNameError
from mmthesis.core.registry import Registry, lookup, unknown_name


def test_unknown_name_lists_known_names_and_suggests_the_closest():
    error = unknown_name("recipe", "s-smke-cdl-mv", ["shre", "s-smke-cdl-mb", "s-smke"], "mmthesis train list")
    assert isinstance(error, UnknownNameError)
    line = error.one_line()
    assert line.startswith("unknown recipe 's-smke-cdl-mv', did you mean s-smke-cdl-mb")
    assert "use one of: s-smke, s-smke-cdl-mb, shre (see `mmthesis train list`)" in line and "\n" not in line
    assert "did you mean" not in unknown_name("recipe", "zzz", ["shre"]).one_line()
    assert "use one of: none" in unknown_name("recipe", "x", []).one_line()


def test_registry_and_lookup_raise_it():
    reg: Registry[int] = Registry("teacher", "mmthesis teachers list")
    reg.register("beitv2", 1)
    with pytest.raises(UnknownNameError, match=r"unknown teacher 'beitv3', did you mean beitv2\?.*teachers list"):
        reg.get("beitv3")
    assert lookup({"smoke": 1}, "templates", "smoke") == 1
    with pytest.raises(UnknownNameError, match="did you mean smoke"):
        lookup({"smoke": 1}, "templates", "smok")
    with pytest.raises(UnknownNameError, match="unknown templates"):
        lookup({"smoke": 1}, "templates", ["not", "hashable"])  # type: ignore[arg-type]
