import json
from dataclasses import dataclass

import pytest

from mmthesis.core.results import RunRecorder, find_finished_run, read_result


@dataclass
class Cfg:
    a: int = 1


def test_recorder_writes_provenance_and_status(tmp_path):
    with RunRecorder("demo", "smoke", Cfg(), root=tmp_path, datasets={"shapes": "abc"}) as rec:
        assert json.loads(rec.path.read_text())["status"] == "running"
        rec.result.metrics["x"] = 1.5
    data = json.loads(rec.path.read_text())
    assert data["status"] == "finished"
    assert data["config"] == {"a": 1} and len(data["config_hash"]) == 16
    assert data["metrics"] == {"x": 1.5} and data["datasets"] == {"shapes": "abc"}
    assert data["wall_time_s"] >= 0 and data["device_hours"] >= 0
    assert data["packages"]["mmthesis-core"] == "0.1.0"
    assert "cpu_count" in data["hardware"] and "commit" in data["git"]
    assert not list(rec.dir.glob(".*tmp"))  # atomic writes leave no temp files


def test_run_cache_finds_only_finished_runs_with_same_config(tmp_path):
    assert find_finished_run("demo", Cfg(), tmp_path) is None
    with RunRecorder("demo", "smoke", Cfg(), root=tmp_path):
        pass
    assert find_finished_run("demo", Cfg(), tmp_path).status == "finished"
    assert find_finished_run("demo", Cfg(a=2), tmp_path) is None


def test_failure_is_recorded_and_reraised(tmp_path):
    rec = RunRecorder("demo", "smoke", Cfg(a=3), root=tmp_path)
    with pytest.raises(RuntimeError):
        with rec:
            raise RuntimeError("boom")
    result = read_result(rec.dir)
    assert result.status == "failed" and "boom" in result.error
    assert find_finished_run("demo", Cfg(a=3), tmp_path) is None
