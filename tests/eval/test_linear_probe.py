import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from mmthesis.core.errors import ConfigError, UnknownNameError
from mmthesis.eval.features import cached_features, extract_image_features, feature_key
from mmthesis.eval.linear_probe import LinearProbe, fit_linear_probe, top1_accuracy, topk_accuracy


def blobs(n_per, centers, noise, seed):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centers, dtype=torch.float64)
    x = torch.cat(
        [c[k] + noise * torch.randn(n_per, c.shape[1], generator=g, dtype=torch.float64) for k in range(len(c))]
    )
    y = torch.arange(len(c)).repeat_interleave(n_per)
    return x, y


CENTERS = [[3.0, 0.0, 0.0, 1.0], [0.0, 3.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.5]]


def test_matches_sklearn_on_separable_toy_problem():
    x, y = blobs(40, CENTERS, 0.5, 0)
    xt, yt = blobs(30, CENTERS, 0.9, 1)  # noisier test set: not every point is easy
    l2 = 1e-2
    probe = fit_linear_probe(x, y, 3, l2=l2, layer_norm=False, tol=1e-8)
    ref = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
    assert top1_accuracy(probe, x, y) == 100.0  # separable
    assert top1_accuracy(probe, xt, yt) == pytest.approx(100.0 * ref.score(xt.numpy(), yt.numpy()))
    # same objective -> same predicted probabilities (up to the softmax's shift invariance of W, b)
    ours = torch.softmax(probe.logits(xt), 1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(xt.numpy()), atol=1e-6)
    # converged on the tolerance, not the cap: scikit-learn's optimum is no better than ours
    w, b = torch.tensor(ref.coef_), torch.tensor(ref.intercept_)
    sk_objective = float(F.cross_entropy(x @ w.t() + b, y) + 0.5 * l2 * (w * w).sum())
    assert probe.converged and probe.grad_max <= 1e-8 and 0 < probe.iterations < 10_000
    assert probe.converged_loss == pytest.approx(sk_objective, rel=1e-12, abs=0)


def test_iteration_cap_is_reported_as_not_converged_and_topk():
    x, y = blobs(20, CENTERS, 0.5, 3)
    short = fit_linear_probe(x, y, 3, l2=1e-3, max_iter=3)
    assert short.iterations == 3 and not short.converged and short.grad_max > 1e-6
    full = fit_linear_probe(x, y, 3, l2=1e-3)
    assert full.converged and full.converged_loss < short.converged_loss
    with pytest.raises(ValueError, match="tol must be > 0"):
        fit_linear_probe(x, y, 3, tol=0.0)
    # top-k by hand: a probe whose logits are the features themselves
    probe = LinearProbe(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), False, 0.0)
    feats = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 1.0, 0.0]])
    labels = torch.tensor([1, 0, 1])  # ranks 1, 2 and (tie, lower index first) 1
    assert [topk_accuracy(probe, feats, labels, k) for k in (1, 2, 3)] == pytest.approx([0.0, 200 / 3, 100.0])


def test_l2_shrinks_weights_and_layer_norm_is_applied():
    x, y = blobs(20, CENTERS, 0.5, 2)
    weak, strong = fit_linear_probe(x, y, 3, l2=1e-4), fit_linear_probe(x, y, 3, l2=1.0)
    assert strong.weight.norm() < 0.2 * weak.weight.norm()
    # with layer norm a per-example rescaling of the features does not change predictions
    scaled = x * torch.linspace(0.5, 3.0, len(x), dtype=torch.float64)[:, None]
    assert torch.equal(weak.predict(x), weak.predict(scaled))
    with pytest.raises(ValueError, match="labels must lie"):
        fit_linear_probe(x, y, 2)


class Pixels(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode_image(self, images):
        self.calls += 1
        return F.normalize(images.flatten(1), dim=-1)


def test_features_are_cached_under_their_key(tmp_path):
    images = torch.randn(5, 3, 2, 2)
    model = Pixels()

    def compute():
        return {"features": extract_image_features(model, images, batch_size=2), "labels": torch.arange(5)}

    key = feature_key("run/abc", "fp1", "train", "Resize(2)")
    first = cached_features(key, compute, tmp_path)
    assert model.calls == 3 and first["features"].shape == (5, 12)
    again = cached_features(key, compute, tmp_path)
    assert (
        model.calls == 3
        and torch.equal(again["features"], first["features"])
        and torch.equal(again["labels"], torch.arange(5))
    )
    # any change of run, data, split, transform or kind is another key
    others = {
        feature_key("run/abd", "fp1", "train", "Resize(2)"),
        feature_key("run/abc", "fp2", "train", "Resize(2)"),
        feature_key("run/abc", "fp1", "test", "Resize(2)"),
        feature_key("run/abc", "fp1", "train", "Resize(3)"),
        feature_key("run/abc", "fp1", "train", "Resize(2)", "patch-mean"),
    }
    assert key not in others and len(others) == 5
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.safetensors"]
    with pytest.raises(ConfigError, match="image backbone"):
        extract_image_features(model, images, kind="patch-mean")
    with pytest.raises(UnknownNameError, match="did you mean patch-mean"):
        extract_image_features(model, images, kind="patch-maen")
