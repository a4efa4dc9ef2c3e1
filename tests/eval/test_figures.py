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


# -- figures from training logs (19, 27, 30, 31) ------------------------------------------------------
def _finished_run(recipe: str, rows: list[dict[str, float | int | str]], overrides: list[str] | None = None):
    """A finished run folder of ``recipe`` at smoke (result.json as training writes it) whose logs/metrics.csv has
    ``rows`` in Lightning's CSVLogger layout: epoch, step, then every metric, empty where not logged that row."""
    import csv

    from mmthesis.core.config import config_hash
    from mmthesis.core.results import RunRecorder, run_dir
    from mmthesis.students.artifact import METRICS, run_name
    from mmthesis.students.recipes import load_recipe

    config = load_recipe(recipe, "smoke", overrides or [])
    name = run_name(config, "smoke")
    with RunRecorder(name, "smoke", config) as rec:
        rec.result.metrics["steps"] = max(int(r["step"]) for r in rows)
    folder = run_dir(name, config_hash(config))
    keys = ["epoch", "step", *sorted({k for r in rows for k in r} - {"epoch", "step"})]
    (folder / METRICS).parent.mkdir(parents=True, exist_ok=True)
    with (folder / METRICS).open("w", newline="") as f:
        writer = csv.DictWriter(f, keys, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_figure_19_plots_train_and_val_loss_from_the_run_logs(specs, tmp_path):
    from mmthesis.eval.reproduce.engine import plan, reproduce

    rows = [{"epoch": 0, "step": s, "train/loss": 1.0 / (s + 1)} for s in (9, 19, 29, 39)]
    rows.insert(2, {"epoch": 0, "step": 19, "val/loss": 0.07})
    rows.append({"epoch": 1, "step": 39, "val/loss": 0.05})
    folder = _finished_run("distil-data2vec2", rows)
    steps = plan("figure-19", "smoke")
    assert [(s.action, s.cached) for s in steps] == [("train", True), ("build", False)]
    out = reproduce("figure-19", "smoke", tmp_path)
    panel = out.values["MSE loss"]
    assert panel["train"]["step"] == [9, 19, 29, 39] and panel["train"]["value"] == pytest.approx([0.1, 0.05, 1 / 30, 0.025])
    assert panel["validation"] == {"run": "distil-data2vec2", "series": "val/loss", "step": [19, 39], "value": [0.07, 0.05]}
    assert out.records == [str(folder / "result.json")]
    assert "Scale smoke" in out.caption and "distil-data2vec2 (39 steps)" in out.caption
    assert out.standins == ["distil-data2vec2: smoke-scale training data imagenet stand in for the thesis's data."]
    sidecar = json.loads((tmp_path / "figure-19.json").read_text())
    assert sidecar["records"] == ["$MMTHESIS_HOME" + str(folder / "result.json")[len(str(_home())) :]]
    # the plotted lines are the logged points
    ax = out.figure.axes[0]
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[9, 19, 29, 39], [19, 39]]
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "MSE loss"


def _home():
    from mmthesis.core.paths import mmthesis_home

    return mmthesis_home()


def test_training_curves_name_the_missing_series(specs, tmp_path):
    from mmthesis.core.errors import DataMissingError
    from mmthesis.eval.reproduce.engine import reproduce

    _finished_run("distil-data2vec2", [{"epoch": 0, "step": 9, "train/loss": 0.5}])
    with pytest.raises(DataMissingError, match=r"logged no 'val/loss' \(it logged: train/loss\).*--scale smoke --force"):
        reproduce("figure-19", "smoke", tmp_path)
    assert not (tmp_path / "figure-19.png").exists()


def test_figure_31_two_panels_of_image_and_text_kd_loss(specs, tmp_path):
    from mmthesis.eval.reproduce.engine import reproduce

    kd = [{"epoch": 0, "step": s, "train/kd_image": 0.1 * s, "train/kd_text": 0.3 * s} for s in (10, 20)]
    _finished_run("shre-t", kd)
    _finished_run("s-smke-cdl", [{**r, "train/kd_text": 0.2 * r["step"]} for r in kd])
    out = reproduce("figure-31", "smoke", tmp_path)
    assert [ax.get_title() for ax in out.figure.axes] == ["SHRe_T (KL)", "S-SMKE (contrastive KD)"]
    assert out.values["S-SMKE (contrastive KD)"]["text"]["value"] == pytest.approx([2.0, 4.0])
    assert out.values["SHRe_T (KL)"]["text"]["value"] == pytest.approx([3.0, 6.0])
    assert len(out.records) == 2
    first = (tmp_path / "figure-31.png").read_bytes()
    reproduce("figure-31", "smoke", tmp_path)
    assert (tmp_path / "figure-31.png").read_bytes() == first


# -- figure 26: memory per stage ----------------------------------------------------------------------
@pytest.fixture
def fake_stage_memory(monkeypatch):
    """``stage_memory`` replaced by a recorder returning known byte counts (the real one measures a training step)."""
    import sys
    import types
    from dataclasses import dataclass

    @dataclass
    class MemoryProfile:
        stages: list
        method: str
        device: str

    calls = []

    def stage_memory(config, scale, *, momentum_first):
        calls.append((config.recipe, scale, momentum_first))
        mib = 1024**2
        if momentum_first:
            stages = [("batch", 10 * mib), ("EMA update", 12 * mib), ("momentum forward", 20 * mib), ("student forward", 90 * mib)]
        else:
            stages = [("batch", 10 * mib), ("student forward", 90 * mib), ("EMA update", 92 * mib), ("momentum forward", 101 * mib)]
        return MemoryProfile(stages, "tensor bytes per stage", "cpu")

    try:
        import mmthesis.students.memory_profile as module
    except ImportError:
        module = types.ModuleType("mmthesis.students.memory_profile")
        monkeypatch.setitem(sys.modules, "mmthesis.students.memory_profile", module)
    monkeypatch.setattr(module, "stage_memory", stage_memory, raising=False)
    return calls


def test_figure_26_memory_per_stage_in_both_orders(specs, tmp_path, fake_stage_memory):
    from mmthesis.eval.reproduce.engine import reproduce

    out = reproduce("figure-26", "smoke", tmp_path)
    assert fake_stage_memory == [("s-smke-itc-momentum", "smoke", False), ("s-smke-itc-momentum", "smoke", True)]
    after = out.values["momentum after student forward"]
    assert after["stage"][-1] == "momentum forward" and after["bytes"][-1] == 101 * 1024**2
    left, right = out.figure.axes
    assert [round(b.get_height(), 6) for b in left.patches] == [10, 90, 92, 101]  # MiB
    assert [t.get_text() for t in right.get_xticklabels()] == ["batch", "EMA update", "momentum forward", "student forward"]
    assert left.get_ylabel() == "CPU memory, substitute (MiB)" and "tensor bytes per stage" in out.caption
    assert "substitute for GPU memory" in out.caption and "cpu" in out.caption
    assert any("stands in for GPU memory" in s for s in out.standins)


# -- figures 32 and 33: charts from the reproduced tables -----------------------------------------------
def _table_json(number: int, scale: str = "smoke", factor: float = 0.5) -> dict:
    """table-N.json as the results kind writes it: rows the table computes get reproduced = factor x published
    (None where nothing is published), quoted rows keep their published cells."""
    from mmthesis.eval.reproduce.specs import load_spec

    spec = load_spec(f"table-{number}")
    values = {}
    for row in spec.rows:
        entry = {"published": row.published}
        if row.quoted:
            entry["quoted"] = row.quoted
        else:
            entry["reproduced"] = [v * factor if isinstance(v, (int, float)) else "not computed: x" for v in row.published]
        values[row.name] = entry
    return {"table": number, "scale": scale, "records": [f"$MMTHESIS_HOME/runs/r{number}/result.json"], "values": values}


@pytest.fixture
def chart_tables(specs, tmp_path):
    from mmthesis.core.paths import repo_root

    checkout = repo_root() / "reproductions"
    for name in [f"table-{n}.yaml" for n in (25, 26, 27, 28, 29, 30)] + ["_retrieval-rk.yaml", "_glue.yaml"]:
        shutil.copy(checkout / name, specs)
    return tmp_path / "thesis" / "tables"


def test_min_max_normalises_each_axis():
    from mmthesis.eval.reproduce.figures.summary import min_max

    got = min_max(np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [2.0, 5.0, 8.0]]))
    assert got.tolist() == [[0.0, 1.0, 0.0], [1.0, 1.0, 1 / 3], [0.5, 1.0, 1.0]]


def test_figure_32_radar_charts_from_the_tables(chart_tables, tmp_path):
    from mmthesis.core.io import atomic_write_json
    from mmthesis.eval.reproduce.engine import reproduce_figure
    from mmthesis.eval.reproduce.specs import load_spec

    for n in (26, 27, 28, 29, 30):
        atomic_write_json(chart_tables / f"table-{n}.json", _table_json(n))
    out = reproduce_figure("figure-32", "smoke", tmp_path / "figs", tables_dir=chart_tables)
    assert out.status == "reproduced", out.caption
    nlp = out.values["NLP (GLUE, Table 29)"]["models"]
    t29 = {r.name: r.published for r in load_spec("table-29").rows}
    assert nlp["BERT"]["quoted"] and nlp["BERT"]["raw"] == t29["BERT"][:8]
    assert not nlp["S-SMKE"]["quoted"] and nlp["S-SMKE"]["raw"] == pytest.approx([0.5 * v for v in t29["S-SMKE (ours)"][:8]])
    # min-max per axis: on MNLI the largest of the four models is 1, the smallest 0
    mnli = {m: v["normalised"][0] for m, v in nlp.items()}
    assert max(mnli.values()) == 1.0 and min(mnli.values()) == 0.0
    vl = out.values["Vision-language (Tables 26, 30)"]["models"]
    t30 = {r.name: r.published for r in load_spec("table-30").rows}
    assert vl["CLIP"]["quoted"] and vl["CLIP"]["raw"][0] == pytest.approx(np.mean(t30["CLIP"][:3]))
    assert vl["BEiT-3"]["quoted"] and not vl["S-SMKE finetuned"]["quoted"]
    assert vl["S-SMKE finetuned"]["raw"][3] == pytest.approx(0.5 * np.mean(t30["S-SMKE_CTL_MB †"][9:12]))
    vision = out.values["Vision (Tables 27, 28)"]["models"]
    assert vision["FLAVA"]["quoted"] and vision["FLAVA"]["raw"][0] == load_spec("table-27").rows[3].published[0]
    # BEiTv2: quoted on ImageNet (Table 27 quotes it), evaluated here on CIFAR (Table 28): partly quoted
    assert vision["BEiTv2"]["partly_quoted"] and not vision["BEiTv2"]["quoted"]
    assert "$MMTHESIS_HOME/runs/r26/result.json" in out.records and out.standins
    # the legend says which lines are quoted
    labels = [t.get_text() for t in out.figure.axes[2].get_legend().get_texts()]
    assert "BEiT-3 (quoted)" in labels and "S-SMKE (reproduced, smoke)" in labels


def test_figure_33_bubbles_and_building_a_missing_table(chart_tables, tmp_path, monkeypatch):
    import mmthesis.eval.reproduce.engine as engine
    from mmthesis.core.io import atomic_write_json
    from mmthesis.eval.reproduce.specs import load_spec

    atomic_write_json(chart_tables / "table-25.json", _table_json(25))
    atomic_write_json(chart_tables / "table-30.json", _table_json(30, scale="full"))  # another scale: rebuilt
    built = []

    def fake_reproduce(name, scale, out_dir=None, **kw):
        built.append((name, scale, out_dir))
        atomic_write_json(out_dir / f"{name}.json", _table_json(int(name.split("-")[1]), scale))

    monkeypatch.setattr(engine, "reproduce", fake_reproduce)
    out = engine.reproduce_figure("figure-33", "smoke", tmp_path / "figs", tables_dir=chart_tables)
    assert built == [("table-30", "smoke", chart_tables)]
    t25 = {r.name: r.published for r in load_spec("table-25").rows}
    r1 = [0, 3, 6, 9]
    assert out.values["S-SMKE"]["mean_r1"] == pytest.approx(0.5 * np.mean([t25["S-SMKE_CDL_MB"][i] for i in r1]), abs=1e-5)
    assert out.values["CLIP"]["quoted"] and out.values["CLIP"]["mean_r1"] == pytest.approx(np.mean([t25["CLIP"][i] for i in r1]))
    assert out.values["S-SMKE finetuned"]["finetuned"] and not out.values["S-SMKE finetuned"]["quoted"]
    ax = out.figure.axes[0]
    assert ax.get_xscale() == "log"
    hollow = [c for c in ax.collections if len(c.get_facecolors()) == 0 or c.get_facecolors()[0][3] == 0]
    assert len(hollow) == sum(v["quoted"] for v in out.values.values())
    assert "quoted (published)" in [t.get_text() for t in ax.get_legend().get_texts()]
