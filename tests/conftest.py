import os

# Keep every test hermetic: no store or artifacts in the cwd, no usage stats, no tokens.
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (2 CPUs, small object store); shut down at the end."""
    import ray

    from fairray.ray_env import init_ray

    init_ray(num_cpus=2, object_store_mb=256)
    yield ray
    ray.shutdown()


ATTRCLF_HEADS = ["gender", "tone4", "Young", "Smiling", "Eyeglasses", "hair"]


@pytest.fixture(scope="session")
def attrclf_trained(tmp_path_factory, ray_local):
    """One attrclf trained with Ray Train for the whole session: (labeler dir, held-out metrics)."""
    from fairray.config import AttrClfConfig, SynthConfig
    from fairray.stage import RunContext
    from fairray.train import attrclf

    out = tmp_path_factory.mktemp("attrclf")
    cfg = AttrClfConfig(synth=SynthConfig(n=6000, bias="none", perc=0.0, val_frac=0.1, test_frac=0.2),
                        heads=ATTRCLF_HEADS, epochs=4, blocks=[1, 1, 1, 1])
    metrics = attrclf.run(cfg, out, RunContext(progress=False))
    return out / "attrclf", metrics


@pytest.fixture(scope="session")
def synth_90_10(tmp_path_factory):
    """A small 90_10 gender-biased SynthFaces set (32 px) with a balanced reference subset and val/test splits."""
    from fairray.config import SynthConfig
    from fairray.data import synth_dataset

    out = tmp_path_factory.mktemp("synth-90-10")
    synth_dataset.build(SynthConfig(n=2000, perc=0.25, val_frac=0.1, test_frac=0.1), out, progress=False)
    return out


@pytest.fixture(scope="session")
def gan_trained(tmp_path_factory, ray_local, synth_90_10):
    """One small unweighted DCGAN trained with Ray Train on `synth_90_10`: its complete checkpoint dir."""
    from fairray.config import GanConfig
    from fairray.train import gan

    out = tmp_path_factory.mktemp("gan")
    # 24 kimg at the demo's width: the shortest run found whose samples pass the validity rule (width 16 at 12 or
    # 24 kimg: coverage 0.34 / 0.45 of 1.0, invalid; this: 0.80, 31 s in process on 2 threads), so the tests that
    # build on it (latent debiasing, DiGA, distillation) start from faces
    cfg = GanConfig(dataset=str(synth_90_10), name="fixture", width=32, z_dim=64, batch_size=32, kimg=24,
                    tick_kimg=8, snapshot_ticks=3, reweight="none")
    return gan.fit(cfg, synth_90_10, out)
