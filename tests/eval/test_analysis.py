import pytest
import torch
import torch.nn.functional as F

from mmthesis.eval.analysis import (
    linear_cka,
    modality_gap,
    paired_cosine,
    representation_analysis,
    swapped_query_retrieval,
)
from mmthesis.eval.retrieval import retrieval_recall

g = torch.Generator().manual_seed(0)


def kornblith_hsic_cka(x, y):
    """CKA from the HSIC definition (Kornblith et al. 2019, eq. 2-3) with Gram matrices K = XX^T, L = YY^T."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    gram_x, gram_y = x.double() @ x.double().T, y.double() @ y.double().T

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h) / (n - 1) ** 2

    return float(hsic(gram_x, gram_y) / torch.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y)))


def test_cka_matches_hsic_formula_and_invariances():
    x, y = torch.randn(30, 5, generator=g), torch.randn(30, 7, generator=g)
    y_related = x @ torch.randn(5, 7, generator=g) + 0.3 * y
    for a, b in [(x, y), (x, y_related)]:
        assert linear_cka(a, b) == pytest.approx(kornblith_hsic_cka(a, b), abs=1e-10)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert linear_cka(x, x.double() @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 3.7 * x) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, y_related) > linear_cka(x, y)
    with pytest.raises(ValueError, match="constant"):
        linear_cka(x, torch.ones(30, 3))


def test_paired_cosine_and_gap_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # not normalised on purpose
    idx = torch.tensor([0, 1, 1])
    c = 2**-0.5
    got = paired_cosine(img, txt, idx)
    assert got["paired_cos"] == pytest.approx((1 + 1 + c) / 3)
    assert got["unpaired_cos"] == pytest.approx((0 + 0 + c) / 3)  # (t0, i1), (t1, i0), (t2, i0)
    assert got["paired_minus_unpaired"] == pytest.approx(2 / 3)
    gap = torch.tensor([0.5, 0.5]) - torch.tensor([1 + c, 1 + c]) / 3
    assert modality_gap(img, txt) == pytest.approx(float(gap.norm()))
    assert modality_gap(img, img * 5) == 0.0


def test_swapped_query_retrieval_roles():
    n = 12
    img = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
    idx = torch.cat([torch.arange(n), torch.arange(n), torch.tensor([0])])  # image 0 has 3 captions
    txt = F.normalize(img[idx] + 0.6 * torch.randn(len(idx), 8, generator=g), dim=-1)
    got = swapped_query_retrieval(img, txt, idx)
    gallery = torch.arange(n, len(idx))  # every caption but each image's first
    assert got == pytest.approx(
        got | {f"image_{k}": v for k, v in retrieval_recall(img, txt[gallery], idx[gallery]).items()}
    )
    swapped = retrieval_recall(txt[:n], txt[gallery], idx[gallery])
    assert all(got[f"swapped_{k}"] == pytest.approx(v) for k, v in swapped.items())
    assert got["swap_images"] == n
    # when every caption coincides with its image, swapping the modality changes nothing
    same = swapped_query_retrieval(img, img[idx], idx)
    assert same["swapped_minus_image_mean"] == 0.0 and same["image_mean"] == 100.0
    with pytest.raises(ValueError, match="2 or more captions"):
        swapped_query_retrieval(img, txt[:n], idx[:n])


def test_aligned_embeddings_score_better_than_random():
    n = 40
    img = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    idx = torch.arange(n).repeat(2)
    aligned = representation_analysis(
        img, F.normalize(img[idx] + 0.1 * torch.randn(2 * n, 16, generator=g), dim=-1), idx
    )
    random = representation_analysis(img, F.normalize(torch.randn(2 * n, 16, generator=g), dim=-1), idx)
    assert aligned["paired_cos"] > 0.9 > 0.3 > random["paired_cos"]
    assert aligned["cka_paired"] > 0.9 and random["cka_paired"] < aligned["cka_paired"]
    assert aligned["modality_gap"] < 0.1
    assert aligned["swapped_mean"] > random["swapped_mean"] and aligned["image_mean"] > random["image_mean"]


# ------------------------------------------------------------------------------ CLI on a tiny trained run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mmthesis.core.config import config_hash
    from mmthesis.core.paths import data_root
    from mmthesis.core.results import run_dir
    from mmthesis.data.registry import PrepareRequest, get_dataset
    from mmthesis.students.artifact import run_name
    from mmthesis.students.recipes import load_recipe
    from mmthesis.students.train import train_recipe

    home = tmp_path_factory.mktemp("eval_smoke_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMTHESIS_HOME", str(home))
    get_dataset("shapes").prepare(PrepareRequest(out_root=data_root(), raw=None, scale="smoke"))
    config = load_recipe(
        "s-smke-cdl-mb", "smoke", ["data.train=[shapes]", "data.retrieval_eval=[shapes]", "train.max_steps=30"]
    )
    train_recipe(config, "smoke")
    yield home, run_dir(run_name(config, "smoke"), config_hash(config))
    mp.undo()


@pytest.mark.smoke
@pytest.mark.slow
def test_cli_zero_shot_analysis_and_linear_probe_write_finite_results(tiny_run, monkeypatch):
    import json
    import math

    from typer.testing import CliRunner

    from mmthesis.cli.app import app
    from mmthesis.core.paths import runs_root

    home, folder = tiny_run
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    expected = {
        "zero-shot-shapes": ("top1", "top5", "chance_top1"),
        "analysis-shapes": ("paired_cos", "unpaired_cos", "modality_gap", "cka_paired", "swapped_mean", "image_mean"),
        "linear-probe-shapes": ("top1", "train_top1", "majority_top1"),
    }
    args = ["eval", *expected, "--model", str(folder), "--scale", "smoke"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    # each (model, task) is its own cached evaluation, the unit `reproduce` shares
    records = sorted((runs_root() / "eval-mmthesis-run").glob("*/result.json"))
    assert len(records) == len(expected), records
    metrics: dict = {}
    for path in records:
        record = json.loads(path.read_text())
        assert record["status"] == "finished" and record["datasets"]["shapes"]
        metrics |= record["metrics"]
    assert set(metrics) == set(expected)
    for task, keys in expected.items():
        for key in keys:
            assert math.isfinite(metrics[task][key]), (task, key, metrics[task])
        assert 0.0 <= metrics[task].get("top1", 0.0) <= 100.0
    assert -1.0 <= metrics["analysis-shapes"]["cka_paired"] <= 1.0
    # a second run reuses the finished evaluations instead of evaluating again
    mtimes = [p.stat().st_mtime_ns for p in records]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "reusing finished evaluation" in again.output
    assert [p.stat().st_mtime_ns for p in records] == mtimes
