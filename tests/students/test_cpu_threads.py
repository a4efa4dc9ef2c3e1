"""``cpu_threads``: on CPU the trainer leaves one core per loader worker, and restores torch's setting afterwards."""

from __future__ import annotations

import torch

from mmthesis.students.train import cpu_threads


def test_cpu_threads_leaves_cores_to_workers_and_restores():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with cpu_threads(1):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
        with cpu_threads(5):  # never below one thread
            assert torch.get_num_threads() == 1
        with cpu_threads(None), cpu_threads(0):  # not on CPU / no workers: unchanged
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
