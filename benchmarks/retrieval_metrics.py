"""Retrieval recall on N x 5N random embeddings: blocked (ours) vs full-matrix reference; last line `ratio: <ref time / ours>`.

The reference is the straightforward computation: build the whole N x M score
matrix, argsort every row and column (stable, so ties go to the lower index),
locate the positives. Ours (mmthesis.eval.retrieval) scores blocks of queries
and counts higher-scoring candidates, so its memory is bounded by
block x candidates. Each runs in a fresh process on the same embeddings (same
seed); peak memory is measured above the inputs, and their R@K must agree.

    python benchmarks/retrieval_metrics.py --images 5000 --captions-per-image 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch

from mmthesis.eval.retrieval import retrieval_recall


def reference(image: torch.Tensor, text: torch.Tensor, cap: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    scores = image @ text.t()
    n, m = scores.shape
    order_i2t = torch.argsort(-scores, dim=1, stable=True)
    first_hit = torch.where(cap[order_i2t] == torch.arange(n)[:, None], torch.arange(m), m).min(dim=1).values
    order_t2i = torch.argsort(-scores.t(), dim=1, stable=True)
    rank_t2i = (order_t2i == cap[:, None]).int().argmax(dim=1)
    out = {f"i2t_r{k}": 100.0 * int((first_hit < k).sum()) / n for k in ks}
    out.update({f"t2i_r{k}": 100.0 * int((rank_t2i < k).sum()) / m for k in ks})
    return out


def make_embeddings(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(args.seed)
    n, m = args.images, args.images * args.captions_per_image
    image = torch.nn.functional.normalize(torch.randn(n, args.dim, generator=g), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(m, args.dim, generator=g), dim=-1)
    return image, text, torch.arange(m) // args.captions_per_image


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _measure(which: str, args: argparse.Namespace, queue) -> None:
    torch.set_num_threads(args.threads)
    image, text, cap = make_embeddings(args)
    baseline = _rss_mib()
    start = time.perf_counter()
    if which == "reference":
        result = reference(image, text, cap)
    else:
        result = retrieval_recall(image, text, cap, block_size=args.block_size)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    queue.put((result, elapsed, max(0.0, peak - baseline)))


def run_isolated(which: str, args: argparse.Namespace) -> tuple[dict[str, float], float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(which, args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    ref, t_ref, mem_ref = run_isolated("reference", args)
    ours, t_ours, mem_ours = run_isolated("ours", args)
    for key in ref:
        assert abs(ref[key] - ours[key]) < 1e-9, (key, ref[key], ours[key])
    print(f"embeddings: {args.images} images x {args.images * args.captions_per_image} captions, dim {args.dim}")
    print(f"reference (full matrix + argsort): {t_ref:8.3f} s, peak memory above inputs {mem_ref:8.0f} MiB")
    print(f"ours (blocks of {args.block_size}):         {t_ours:8.3f} s, peak memory above inputs {mem_ours:8.0f} MiB")
    print(f"metrics agree: {ours}")
    print(f"ratio: {t_ref / t_ours:.2f}")


if __name__ == "__main__":
    main()
