"""Quoted tables (kind ``quoted``): Tables 1, 2, 15, 38, 40 render their spec's cells, say they are quoted, and
check what can be checked (Table 40's arithmetic, Table 15's implementing recipes and code) at render time."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mmthesis.core.config import read_yaml
from mmthesis.core.errors import ConfigError
from mmthesis.core.paths import repo_root
from mmthesis.eval.reproduce.engine import reproduce
from mmthesis.eval.reproduce.kinds.quoted import MARKER
from mmthesis.eval.reproduce.render import _tex

SPECS = repo_root() / "reproductions"
QUOTED = ["table-1", "table-2", "table-15", "table-38", "table-40"]


@pytest.mark.parametrize("name", QUOTED)
def test_quoted_table_renders_the_spec_cells_marker_and_source(name, tmp_path):
    raw = read_yaml(SPECS / f"{name}.yaml")
    built = reproduce(name, "smoke", tmp_path)
    cells = [row["cells"] for row in raw["rows"]]
    assert built.status == "quoted"
    assert built.table.header == raw["header"]
    assert built.table.rows == cells
    md = (tmp_path / f"{name}.md").read_text()
    tex = (tmp_path / f"{name}.tex").read_text()
    data = json.loads((tmp_path / f"{name}.json").read_text())
    for row in cells:
        assert "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" in md
        assert " & ".join(_tex(c) for c in row) + r" \\" in tex
    source = " ".join(raw["source"].split())
    assert MARKER in md and source in md
    assert MARKER in tex and _tex(source) in tex
    assert data["status"] == "quoted" and data["values"]["marker"] == MARKER
    assert data["values"]["source"] == source
    assert [r["cells"] for r in data["values"]["rows"]] == cells


def test_every_scale_builds_the_same_quoted_table(tmp_path):
    small = reproduce("table-38", "small", tmp_path / "small").table
    full = reproduce("table-38", "full", tmp_path / "full").table
    assert small == full


def _number(cell: str) -> float:
    return float(re.search(r"\d[\d,]*(?:\.\d+)?", cell).group().replace(",", ""))


def test_table_40_checks_are_computed_from_its_own_cells(tmp_path):
    raw = read_yaml(SPECS / "table-40.yaml")
    rows = {r["cells"][0]: r["cells"] for r in raw["rows"]}
    col = raw["header"].index
    built = reproduce("table-40", "smoke", tmp_path)
    checks = {c["what"]: c for c in built.values["checks"]}
    assert len(checks) == len(raw["checks"])
    # the runpod.io total, summed here independently of the kind
    parts = ["Pretraining", "Finetuning", "Data Transfer", "Data Storage"]
    total = sum(_number(rows[p][col("Total Cost ($)")]) for p in parts)
    printed = _number(rows["Total"][col("Total Cost ($)")])
    runpod = checks["runpod.io total"]
    assert runpod["computed"] == total and runpod["printed"] == printed
    assert runpod["adds_up"] == (abs(total - printed) <= 0.5 + 4 * 0.5)
    # hours x price: the verdict follows from the cells and the spec's price, within the printed rounding
    for check in raw["checks"]:
        if check.get("op") != "product":
            continue
        (term,) = check["terms"]
        row, column = term.split("|")
        hours = _number(rows[row][col(column)])
        row, column = check["equals"].split("|")
        cost = _number(rows[row][col(column)])
        computed = hours * check["factor"]
        got = checks[check["what"]]
        assert got["computed"] == pytest.approx(computed)
        assert got["adds_up"] == (abs(computed - cost) <= 0.5 + computed * 0.5 / hours)
        verdict = "adds up" if got["adds_up"] else "does not add up"
        assert verdict in got["note"] and got["note"] in built.table.notes


def _tiny_spec(folder: Path, body: str, monkeypatch) -> None:
    """A private reproductions/ folder holding one quoted spec (numbers made up for the test)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table-90.yaml").write_text(
        "table: 90\nlabel: tiny\ntitle: A tiny bill.\nsection: test\nkind: quoted\nscales: [full]\n"
        "source: made up for the test\n" + body
    )
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))


BILL = """header: [Item, Amount, Cost]
rows:
  - cells: [GPU, "10h", "7.0"]
  - cells: [Disk, "1TB", "3.0"]
  - cells: [Total, "-", "11.0"]
checks:
  - {what: sum, terms: ["GPU|Cost", "Disk|Cost"], equals: "Total|Cost"}
  - {what: gpu price, op: product, terms: ["GPU|Amount"], factor: 0.5, factor_label: $/h, equals: "GPU|Cost"}
  - {what: disk price, op: product, terms: ["Disk|Amount"], factor: 3.0, factor_label: $/TB, equals: "Disk|Cost"}
"""


def test_checks_report_what_does_not_add_up(tmp_path, monkeypatch):
    _tiny_spec(tmp_path / "specs", BILL, monkeypatch)
    checks = {c["what"]: c for c in reproduce("table-90", "smoke", tmp_path / "out").values["checks"]}
    # 7.0 + 3.0 = 10, printed 11.0 (tolerance: half a unit of the last digit of each printed cell = 0.15)
    assert checks["sum"]["computed"] == 10.0 and not checks["sum"]["adds_up"]
    assert "off by 1" in checks["sum"]["note"]
    # 10h x 0.5 $/h = 5, printed 7.0: the implied price is 0.7 $/h, 1.4x the stated one
    assert not checks["gpu price"]["adds_up"]
    assert "implied 0.7 $/h, 1.40×" in checks["gpu price"]["note"]
    # 1TB x 3 $/TB = 3, printed 3.0
    assert checks["disk price"]["adds_up"] and "adds up" in checks["disk price"]["note"]


def test_a_row_with_the_wrong_number_of_cells_fails_in_one_line(tmp_path, monkeypatch):
    _tiny_spec(tmp_path / "specs", BILL.replace('[Disk, "1TB", "3.0"]', '[Disk, "3.0"]'), monkeypatch)
    with pytest.raises(ConfigError) as err:
        reproduce("table-90", "full", tmp_path / "out")
    message = err.value.one_line()
    assert "\n" not in message
    assert "table-90.yaml row 2 (Disk) has 2 cells, the header has 3" in message
    assert not (tmp_path / "out").exists()


def test_a_check_on_a_cell_that_is_not_a_number_fails(tmp_path, monkeypatch):
    body = BILL.replace('equals: "Total|Cost"}', 'equals: "Total|Amount"}')
    _tiny_spec(tmp_path / "specs", body, monkeypatch)
    with pytest.raises(ConfigError, match=r"table-90.yaml: check cell 'Total\|Amount' is '-', not a number"):
        reproduce("table-90", "full", tmp_path / "out")


def test_table_15_names_what_the_recipes_resolve_to(tmp_path):
    from mmthesis.students.config import get_key
    from mmthesis.students.recipes import load_recipe

    built = reproduce("table-15", "smoke", tmp_path)
    by_recipe = {i["recipe"]: i for i in built.values["implemented_by"]}
    assert set(by_recipe) == {"shre", "shre-t"}
    for recipe, impl in by_recipe.items():
        config = load_recipe(recipe, "full")
        assert impl["keys"] and all(get_key(config, k) == v for k, v in impl["keys"].items())
    assert by_recipe["shre"]["keys"]["model.shared"] == "mlp"
    assert by_recipe["shre-t"]["keys"]["model.shared"] == "transformer"


def test_table_15_fails_when_the_recipe_no_longer_matches(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    text = (SPECS / "table-15.yaml").read_text().replace("{model.shared: mlp,", "{model.shared: transformer,")
    (folder / "table-15.yaml").write_text(text)
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))
    with pytest.raises(ConfigError, match="recipe shre resolves model.shared=mlp, the spec says transformer"):
        reproduce("table-15", "smoke", tmp_path / "out")
    shutil.rmtree(folder)
    folder.mkdir()
    text = (SPECS / "table-15.yaml").read_text().replace("model.SharedMLP ", "model.SharedMLPX ")
    (folder / "table-15.yaml").write_text(text)
    with pytest.raises(ConfigError, match="names mmthesis.students.model.SharedMLPX, which does not exist"):
        reproduce("table-15", "smoke", tmp_path / "out")
