"""One CPU thread for small problems: intra-op thread sync costs more than the tiny matmuls it splits.

Measured at smoke scale on 2 shared cores: finetuning the tiny Data2Vec2 student (64 wide) is 4x faster in wall
time on one thread, GLUE on the 384-wide MiniLM student 3.4x, and the linear probe's L-BFGS 25x. The threshold is
on the work of one step, so full-scale models keep every thread; results do not depend on the thread count beyond
floating-point summation order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

SINGLE_THREAD_BELOW = 1e9  # work units of one step (e.g. batch * tokens * width**2, or N * D * C)


@contextlib.contextmanager
def single_thread_if_small(work: float, below: float = SINGLE_THREAD_BELOW) -> Iterator[int]:
    """Run the block on one intra-op thread when ``work < below`` (always restored); yields the threads used."""
    threads = torch.get_num_threads()
    small = work < below and threads > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield 1 if small else threads
    finally:
        if small:
            torch.set_num_threads(threads)
