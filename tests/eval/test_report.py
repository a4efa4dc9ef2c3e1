"""The reproduction report: published vs reproduced with differences, figures, provenance, failures; and the page
in a real headless Chromium (loads without console errors, every image resolves, a screenshot is taken)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from mmthesis.core.io import atomic_write_json
from mmthesis.core.results import RunResult
from mmthesis.eval.reproduce.report import load_entries, parse_number, with_differences, write_report


def test_parse_number_reads_thesis_cells_and_refuses_text():
    assert parse_number("37") == 37.0
    assert parse_number("43.1M (43,120,128) ≠") == pytest.approx(43.1e6)
    assert parse_number("1,865 images") == 1865.0
    assert parse_number("990K (total)") == 990e3
    for text in ("16×16", "-", "needs data", "1× RTX 4090", "BEiTv2"):
        assert parse_number(text) is None


def test_difference_rows_follow_each_reproduced_row():
    header = ["Teacher", "Values", "R@1", "Hardware"]
    rows = [
        ["DINO", "published", "37.5", "4090"],
        ["DINO", "reproduced (smoke)", "18.50", "CPU"],
        ["none", "published", "-", "x"],
        ["none", "reproduced (smoke)", "3.0", "CPU"],
    ]
    _, out = with_differences(header, rows)
    assert out[2] == ["DINO", "Δ reproduced − published", "-19.00", ""]
    assert len(out) == 5  # no Δ row where nothing is comparable


def test_difference_columns_after_each_reproduced_column():
    header = ["Component", "Published", "Reproduced: text", "Reproduced: code"]
    rows = [["Image", "42.3M", "43.1M (43,120,128) ≠", "57.3M"], ["Note", "16×16", "8×8", "8×8"]]
    new_header, out = with_differences(header, rows)
    assert new_header == ["Component", "Published", "Reproduced: text", "Δ", "Reproduced: code", "Δ"]
    assert out[0] == ["Image", "42.3M", "43.1M (43,120,128) ≠", "+800.0K", "57.3M", "+15.00M"]
    assert out[1][3] == out[1][5] == ""


def _thesis(tmp_path: Path) -> tuple[Path, Path]:
    home, thesis = tmp_path / "home", tmp_path / "thesis"
    record = home / "runs" / "s-smke-smoke" / "abc" / "result.json"
    result = RunResult("s-smke-smoke", "smoke", {}, "abc", status="finished", device_hours=0.25, wall_time_s=900.0)
    result.git = {"commit": "0123456789abcdef", "dirty": False}
    result.hardware = {"cpu_count": 2, "gpus": []}
    result.packages = {"torch": "2.14.1"}
    atomic_write_json(record, result.to_json())
    atomic_write_json(
        thesis / "tables" / "table-26.json",
        {
            "table": 26, "title": "Teachers", "kind": "results", "scale": "smoke", "status": "reproduced",
            "records": ["$MMTHESIS_HOME/runs/s-smke-smoke/abc/result.json"],
            "rendered": {
                "header": ["Teacher", "Values", "R@1"],
                "rows": [["DINO", "published", "37.5"], ["DINO", "reproduced (smoke)", "18.50"]],
                "notes": ["Scale: smoke."],
            },
        },
    )
    atomic_write_json(
        thesis / "tables" / "table-1.json",
        {"table": 1, "title": "Benchmarks", "kind": "quoted", "scale": "smoke", "status": "quoted", "records": [],
         "rendered": {"header": ["Model", *[f"MSCOCO I→T R@{k} wide" for k in range(1, 19)]],
                      "rows": [["CLIP", *["58.4"] * 18]], "notes": []}},
    )
    (thesis / "figures").mkdir(parents=True)
    Image.new("RGB", (64, 48), (0, 114, 178)).save(thesis / "figures" / "figure-19.png")
    atomic_write_json(
        thesis / "figures" / "figure-19.json",
        {"figure": 19, "title": "Train vs val loss", "scale": "smoke", "status": "reproduced",
         "caption": "distil-data2vec2 at smoke", "standins": ["emoji for ImageNet-1K"], "records": []},
    )
    atomic_write_json(
        thesis / "index.json",
        {"outcomes": [{"name": "table-39", "title": "Cost", "scale": "smoke", "status": "failed",
                       "error": "needs data: run `mmthesis data prepare coco`"}]},
    )
    return thesis, home


def test_report_has_differences_figures_provenance_and_failures(tmp_path):
    thesis, home = _thesis(tmp_path)
    report = write_report(thesis, home)
    assert [e.name for e in report.entries] == ["table-1", "table-26", "table-39", "figure-19"]
    page = report.html.read_text(encoding="utf-8")
    assert "<td>-19.00</td>" in page
    assert '<img src="figures/figure-19.png"' in page
    assert "stand-in: emoji for ImageNet-1K" in page
    assert "git: 0123456789" in page and "0.25 device-hours" in page and "CPU (2 cores)" in page
    assert "needs data: run `mmthesis data prepare coco`" in page
    assert "http://" not in page and "https://" not in page  # works offline: nothing fetched
    md = report.markdown.read_text(encoding="utf-8")
    assert "| DINO | Δ reproduced − published | -19.00 |" in md and "![figure-19](figures/figure-19.png)" in md


def test_table_json_without_rendered_table_says_how_to_rebuild(tmp_path):
    atomic_write_json(tmp_path / "tables" / "table-3.json", {"table": 3, "title": "Data", "status": "derived"})
    (entry,) = load_entries(tmp_path)
    page = write_report(tmp_path, tmp_path).html.read_text(encoding="utf-8")
    assert entry.header == [] and "mmthesis reproduce table-3" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-headless-shell") or shutil.which("chromium-browser")


def test_report_in_headless_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install adds it)")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
    thesis, home = _thesis(tmp_path)
    page_path = write_report(thesis, home).html
    problems: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=browser_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
            page_width = page.evaluate("document.documentElement.scrollWidth")  # wide tables scroll in their box
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert page_width <= 1100
    assert images == [["figures/figure-19.png", 64]]
    with Image.open(shot) as im:
        assert im.width == 1100 and im.height >= 400


def test_report_cli_says_when_nothing_was_reproduced(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmthesis.cli.app import app

    monkeypatch.setenv("MMTHESIS_HOME", str(tmp_path / "home"))
    out = CliRunner().invoke(app, ["reproduce", "report", "--out", str(tmp_path / "thesis")])
    assert out.exit_code != 0
    assert "nothing reproduced yet" in out.output and "Traceback" not in out.output


def test_reproduce_all_out_is_the_thesis_folder(tmp_path, monkeypatch):
    """`reproduce all --out X` keeps the thesis layout under X (X/tables, X/figures, X/index.md, X/report.html), so
    `reproduce report --out X` finds the tables too."""
    from typer.testing import CliRunner

    from mmthesis.cli.app import app

    seen = []
    monkeypatch.setattr("mmthesis.eval.reproduce.engine.reproduce_all", lambda scale, out, **kw: seen.append(out) or [])
    result = CliRunner().invoke(app, ["reproduce", "all", "--scale", "smoke", "--out", str(tmp_path / "x")])
    assert seen == [tmp_path / "x" / "tables"]
    assert f"wrote {tmp_path / 'x' / 'index.md'}" in " ".join(result.output.split())
