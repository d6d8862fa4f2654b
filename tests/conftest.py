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
