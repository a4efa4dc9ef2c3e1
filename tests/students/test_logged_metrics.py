"""read_logged_metrics: Lightning's CSV rows (empty cells for metrics not logged then) become per-metric series."""

import pytest

from mmthesis.core.errors import CheckpointError
from mmthesis.students.artifact import METRICS, read_logged_metrics


def test_series_skip_empty_cells(tmp_path):
    (tmp_path / METRICS).parent.mkdir()
    (tmp_path / METRICS).write_text("epoch,step,train/loss,val/loss\n0,49,1.5,\n0,99,1.25,\n0,99,,1.75\n")
    assert read_logged_metrics(tmp_path) == {"train/loss": [(49, 1.5), (99, 1.25)], "val/loss": [(99, 1.75)]}


def test_missing_log_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="metrics.csv does not exist"):
        read_logged_metrics(tmp_path)
