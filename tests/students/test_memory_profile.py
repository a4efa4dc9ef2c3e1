"""Figure 26's measurement: memory per stage of a momentum-encoder training step, in both orders (on CPU here)."""

from __future__ import annotations

import pytest

from mmthesis.core.errors import ConfigError
from mmthesis.students.memory_profile import CPU_METHOD, stage_memory
from mmthesis.students.recipes import load_recipe

FAST = ["data.train=[shapes]", "data.batch_size=8", "teacher.prefit_steps=0"]
AFTER = ["ema_update", "momentum_forward", "student_forward", "teacher_forward", "loss", "backward", "optimizer_step"]


@pytest.mark.smoke
def test_both_orders_profile_every_stage_and_momentum_last_peaks_no_lower(smoke_home, monkeypatch):
    monkeypatch.setenv("MMTHESIS_HOME", str(smoke_home))
    config = load_recipe("s-smke-itc-momentum", "smoke", FAST)
    first = stage_memory(config, "smoke", momentum_first=True, device="cpu")
    last = stage_memory(config, "smoke", momentum_first=False, device="cpu")
    assert [s for s, _ in first.stages] == AFTER
    assert [s for s, _ in last.stages] == ["student_forward", "ema_update", "momentum_forward", *AFTER[3:]]
    assert first.method == last.method == CPU_METHOD and first.device == "cpu"
    for profile in (first, last):
        values = [b for _, b in profile.stages]
        assert values == sorted(values) and values[0] > 0  # cumulative peaks, parameters included
    # the student's forward holds its activations: measured after it, the momentum forward adds to them
    assert dict(last.stages)["momentum_forward"] > dict(first.stages)["student_forward"]
    assert last.peak >= first.peak


def test_a_recipe_without_momentum_encoder_is_refused():
    with pytest.raises(ConfigError, match="no momentum encoder"):
        stage_memory(load_recipe("s-smke", "smoke"), "smoke", momentum_first=True, device="cpu")
