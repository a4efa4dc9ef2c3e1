"""Table 5 (kind ``layer-decay``): per-layer learning rates from the finetuning's own function and configs."""

from __future__ import annotations

import json

import pytest


def test_table_5_rates_come_from_the_task_and_recipe_configs(tmp_path):
    from mmthesis.eval.finetune import FinetuneParams
    from mmthesis.eval.protocols import params_of
    from mmthesis.eval.reproduce.engine import reproduce
    from mmthesis.eval.task_registry import get_task
    from mmthesis.students.recipes import load_recipe

    built = reproduce("table-5", "smoke", tmp_path)  # configuration only: every scale shows the full config
    p = params_of(FinetuneParams, get_task("finetune-imagenet1k").at_scale("full"))
    rows = built.values["reproduced"]
    for name, overrides in (("code: model.image.blocks=8", []), ("thesis text: model.image.blocks=6", ["model.image.blocks=6"])):
        blocks = load_recipe("distil-data2vec2", "full", overrides).model.image.blocks
        expected = [p.lr * p.layer_decay ** (blocks + 1 - layer) for layer in range(blocks + 2)]
        assert rows[name] == pytest.approx(expected, rel=1e-12)
    assert len(rows["thesis text: model.image.blocks=6"]) == 8 and len(rows["code: model.image.blocks=8"]) == 10
    md = (tmp_path / "table-5.md").read_text()
    thesis_row = next(line for line in md.splitlines() if "thesis text" in line and line.startswith("|"))
    code_row = next(line for line in md.splitlines() if "code:" in line and line.startswith("|"))
    assert "≠" not in thesis_row and "| 2.3e-4 |" in thesis_row and "| 1e-3 |" in thesis_row
    assert "≠" in code_row
    assert json.loads((tmp_path / "table-5.json").read_text())["status"] == "derived"


@pytest.mark.parametrize(("value", "shown"), [(2.3e-4, "2.3e-4"), (1e-3, "1e-3"), (0.000999, "1e-3"), (8.1e-4, "8.1e-4")])
def test_thesis_number_format(value, shown):
    from mmthesis.eval.reproduce.kinds.layer_decay import thesis_format

    assert thesis_format(value) == shown
