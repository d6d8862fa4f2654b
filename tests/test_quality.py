"""Frechet distance (closed forms, both methods), streamed feature stats, and the FID loader (no download)."""

import numpy as np
import pytest
import torch

from fairray.errors import FairrayError
from fairray.metrics.quality import FeatureFrechet, feature_stats, frechet_distance, inception_fid


def _cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_closed_forms(method):
    rng = np.random.default_rng(0)
    mu, s = rng.normal(size=8), _cov(rng, 8)
    assert abs(frechet_distance(mu, s, mu, s, method=method)) < 1e-8
    shift = rng.normal(size=8)
    # equal covariances: the trace terms cancel, leaving ||mu1 - mu2||^2
    assert frechet_distance(mu, s, mu + shift, s, method=method) == pytest.approx(shift @ shift, rel=1e-8)
    # commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 2, 8)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu, np.diag(a), mu, np.diag(b), method=method) == pytest.approx(expected, rel=1e-8)
    s2 = _cov(rng, 8)
    d12 = frechet_distance(mu, s, mu + shift, s2, method=method)
    assert d12 == pytest.approx(frechet_distance(mu + shift, s2, mu, s, method=method), rel=1e-8)  # symmetric


def test_sqrtm_and_eigh_agree_also_on_singular_covariances():
    rng = np.random.default_rng(1)
    mu1, mu2, s1, s2 = rng.normal(size=32), rng.normal(size=32), _cov(rng, 32), _cov(rng, 32)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu1, s1, mu2, s2, method="eigh"),
                                                               rel=1e-9)
    # 5 samples in 32-d: rank-4 covariances, the case the eps offset exists for
    f1, f2 = rng.normal(size=(5, 32)), rng.normal(size=(5, 32)) + 1
    st1, st2 = feature_stats(f1), feature_stats(f2)
    d_sqrtm, d_eigh = frechet_distance(*st1, *st2), frechet_distance(*st1, *st2, method="eigh")
    assert np.isfinite(d_sqrtm) and d_eigh == pytest.approx(d_sqrtm, rel=1e-3)
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(mu1, s1, mu2[:4], s2)


def _color_features(images: np.ndarray) -> np.ndarray:
    """A toy feature_fn: per-channel mean and std of uint8 NHWC images."""
    x = images.astype(np.float64) / 255
    return np.concatenate([x.mean((1, 2)), x.std((1, 2))], 1)


def test_feature_frechet_streams_exact_stats():
    rng = np.random.default_rng(2)
    real = rng.integers(0, 256, (70, 8, 8, 3), dtype=np.uint8)
    fake = (rng.integers(0, 200, (50, 8, 8, 3)) + 40).astype(np.uint8)
    ff = FeatureFrechet(_color_features, batch_size=16)  # several batches per side
    ff.update(real, real=True)
    ff.update(fake, real=False)
    mu, s = feature_stats(_color_features(real))
    mu_s, s_s = ff.stats(real=True)
    assert np.allclose(mu_s, mu) and np.allclose(s_s, s)
    expected = frechet_distance(mu, s, *feature_stats(_color_features(fake)))
    assert ff.compute() == pytest.approx(expected, rel=1e-9) and ff.count(True) == 70
    ff.reset_fake()
    ff.update(real, real=False)
    assert abs(ff.compute()) < 1e-9
    ff.reset_fake()
    with pytest.raises(ValueError, match="fake"):
        ff.compute()


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A randomly initialised FID Inception-v3 saved as a state dict, as the real weights file is (nothing is
    downloaded: the URL loader is stubbed out and load_state_dict skipped while building the template)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
    torch.manual_seed(0)
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    mp.undo()
    for m in net.modules():  # He init keeps activations O(1) through 94 conv layers, so features see the input
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def one_thread():
    """Steady timing on a busy 2-core box: 2-thread OpenMP convs stall under contention (2 s became 42 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_inception_fid_loads_only_the_given_file(random_inception, monkeypatch, one_thread):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def no_download(*a, **k):
        raise AssertionError("tried to download Inception weights")

    monkeypatch.setattr(fe, "load_state_dict_from_url", no_download)
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)  # 2 per side: 299-px convs cost ~1 s each
    fake = rng.integers(0, 128, (2, 32, 32, 3), dtype=np.uint8)
    fid = inception_fid(real, fake, random_inception, batch_size=2)
    assert np.isfinite(fid) and fid > 0  # random weights prove the plumbing, never quality


def test_inception_fid_rejects_missing_or_wrong_weights(tmp_path):
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(FairrayError, match="not found"):
        inception_fid(images, images, tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(FairrayError, match="state dict"):
        inception_fid(images, images, tmp_path / "junk.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(FairrayError, match="Inception"):
        inception_fid(images, images, tmp_path / "other.pth")
