import os

# Keep every test hermetic: no store or artifacts in the cwd, no usage stats, no tokens.
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
