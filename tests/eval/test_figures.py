"""Figure machinery (reproductions/figure-N.yaml) and the figure builders, on small real or constructed inputs."""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pytest

from mmthesis.core.errors import ConfigError, UnknownNameError
from mmthesis.eval.reproduce.specs import specs_dir


@pytest.fixture
def specs(tmp_path, monkeypatch):
    """A private reproductions/ folder holding copies of the checkout's figure specs (and none of its tables)."""
    folder = tmp_path / "reproductions"
    folder.mkdir()
    for path in specs_dir().glob("figure-*.yaml"):
        shutil.copy(path, folder / path.name)
    monkeypatch.setenv("MMTHESIS_REPRODUCTIONS", str(folder))
    return folder


def _png_pixels(path):
    from matplotlib.image import imread

    return imread(path)


# -- style and determinism ----------------------------------------------------------------------------
def test_save_figure_is_byte_reproducible_and_has_no_stamps(tmp_path):
    from mmthesis.eval.reproduce.figures.style import figure_style, new_figure, save_figure

    def draw():
        with figure_style():
            fig, ax = new_figure(3, 2)
            ax.plot([0, 1, 2], [1.0, 0.5, 0.25], label="loss")
            ax.set_xlabel("step")
            ax.legend()
        return fig

    a = save_figure(draw(), tmp_path / "a")
    b = save_figure(draw(), tmp_path / "b")
    assert [p.name for p in a] == ["a.png", "a.pdf"]
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()
    pdf = a[1].read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"Matplotlib" not in pdf
    png = a[0].read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png and b"matplotlib" not in png.lower()


def test_style_uses_the_okabe_ito_palette():
    from mmthesis.eval.reproduce.figures.style import OKABE_ITO, figure_style, new_figure

    with figure_style():
        _, ax = new_figure(3, 2)
        first, second = ax.plot([0, 1]), ax.plot([1, 0])
    assert first[0].get_color() == OKABE_ITO[0] and second[0].get_color() == OKABE_ITO[1]


# -- synthetic figures 4 and 5 --------------------------------------------------------------------------
def test_figure_4_one_hot_vs_smooth(specs, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce

    out = reproduce("figure-4", "smoke", tmp_path / "figs")
    assert out.status == "illustration"
    one_hot, smooth = np.array(out.values["one_hot"]), np.array(out.values["smooth"])
    assert one_hot.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert smooth.sum() == pytest.approx(1.0, abs=1e-5) and smooth.argmax() == 3 and (smooth > 0).all()
    # the spec's seed reproduces the plotted values: softmax of N(0, 1) logits + margin on the true class
    logits = np.random.default_rng(0).standard_normal(10)
    logits[3] += 2.0
    assert smooth == pytest.approx(np.exp(logits) / np.exp(logits).sum(), abs=1e-6)
    sidecar = json.loads((tmp_path / "figs" / "figure-4.json").read_text())
    assert sidecar["figure"] == 4 and sidecar["category"] == "synthetic" and sidecar["spec"].endswith("figure-4.yaml")
    assert sidecar["values"]["one_hot"] == one_hot.tolist()
    assert _png_pixels(tmp_path / "figs" / "figure-4.png").shape[2] in (3, 4)


def test_figure_5_temperature_flattens_the_distribution(specs, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce

    out = reproduce("figure-5", "smoke", tmp_path)
    teacher, soft = np.array(out.values["teacher"]), np.array(out.values["smoothed"])
    t = out.values["temperature"]
    logits = np.array(out.values["logits"])
    assert soft == pytest.approx(np.exp(logits / t) / np.exp(logits / t).sum(), abs=1e-5)
    assert teacher.argmax() == soft.argmax() and soft.max() < teacher.max() and soft.min() > teacher.min()
    # same spec, same bytes (a second build in the same process, after other figures were drawn)
    first = {s: (tmp_path / f"figure-5.{s}").read_bytes() for s in ("png", "pdf")}
    reproduce("figure-4", "smoke", tmp_path / "other")
    reproduce("figure-5", "smoke", tmp_path)
    assert first == {s: (tmp_path / f"figure-5.{s}").read_bytes() for s in ("png", "pdf")}


# -- specs, listing, index ------------------------------------------------------------------------------
def test_figure_specs_load_with_typed_parameters():
    from mmthesis.eval.reproduce.specs import figure_names, load_spec

    names = figure_names()
    assert "figure-4" in names and "figure-5" in names
    assert names == sorted(names, key=lambda n: int(n.split("-")[1]))
    spec = load_spec("figure-5")
    assert spec.name == "figure-5" and spec.number == 5 and spec.category == "synthetic"
    assert spec.params.temperature > 1


def test_bad_figure_specs_fail_in_one_line(specs):
    from mmthesis.eval.reproduce.engine import reproduce
    from mmthesis.eval.reproduce.specs import load_spec

    base = (specs / "figure-5.yaml").read_text()
    (specs / "figure-901.yaml").write_text(base + "colour: red\n")
    with pytest.raises(ConfigError, match=r"spec figure-901.yaml: unknown config key 'colour'.*allowed keys: classes"):
        load_spec("figure-901")
    (specs / "figure-902.yaml").write_text(base.replace("figure: temperature-smoothing", "figure: temperature-smothing"))
    with pytest.raises(UnknownNameError, match="unknown figure builder 'temperature-smothing', did you mean temperature-smoothing"):
        load_spec("figure-902")
    (specs / "figure-903.yaml").write_text(base.replace("category: synthetic", "category: diagram"))
    with pytest.raises(ConfigError, match="spec figure-903.yaml: config key 'category' must be one of 'data' . 'model' . 'synthetic' . 'chart', got 'diagram'"):
        load_spec("figure-903")
    (specs / "figure-904.yaml").write_text(base.replace("temperature: 4.0", "temperature: 0"))
    with pytest.raises(ConfigError, match="temperature must be positive, got 0"):
        load_spec("figure-904")
    (specs / "figure-905.yaml").write_text(base.replace("scales: [smoke, small, full]", "scales: [full]"))
    with pytest.raises(ConfigError, match="figure-905 cannot be reproduced at scale 'smoke'"):
        reproduce("figure-905", "smoke")
    with pytest.raises(UnknownNameError, match="unknown reproduction spec 'figure-999'"):
        load_spec("figure-999")


def test_reproduce_all_builds_figures_after_tables_and_indexes_them(specs, tmp_path):
    from mmthesis.eval.reproduce.engine import plan, reproduce_all

    (specs / "table-901.yaml").write_text(textwrap.dedent(QUOTED_TABLE))
    outcomes = reproduce_all("smoke", tmp_path / "thesis" / "tables", names=["figure-5", "table-901", "figure-4"])
    assert [o.name for o in outcomes] == ["table-901", "figure-5", "figure-4"]
    assert {o.name: o.category for o in outcomes}["figure-4"] == "synthetic"
    assert all(o.status != "failed" for o in outcomes), [o.error for o in outcomes]
    figures = tmp_path / "thesis" / "figures"
    assert sorted(p.name for p in figures.iterdir()) == [f"figure-{n}.{s}" for n in (4, 5) for s in ("json", "pdf", "png")]
    index = (tmp_path / "thesis" / "index.md").read_text()
    assert "[table-901](tables/table-901.md)" in index
    assert "## Figures" in index and "| [figure-4](figures/figure-4.png) |" in index and "illustration" in index
    steps = plan("figure-4", "smoke")
    assert [s.action for s in steps] == ["build"] and not steps[0].cached


def test_cli_lists_figures_beside_tables(specs, tmp_path):
    from typer.testing import CliRunner

    from mmthesis.cli.app import app

    (specs / "table-901.yaml").write_text(textwrap.dedent(QUOTED_TABLE))
    result = CliRunner().invoke(app, ["reproduce", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "table-901" in result.output and "figure-4" in result.output and "figure: synthetic" in result.output
    assert "1 tables, " in result.output
    result = CliRunner().invoke(app, ["reproduce", "figure-4", "--out", str(tmp_path / "f")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f" / "figure-4.pdf").is_file() and "figure-4 (illustration)" in result.output


QUOTED_TABLE = """\
    table: 901
    label: quoted_example
    title: "A quoted table"
    section: "test"
    kind: quoted
    scales: [smoke]
    header: [Model, Score]
    rows:
      - cells: [A, "1.0"]
    source: "a test"
"""
