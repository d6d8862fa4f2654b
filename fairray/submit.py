"""Submit a `jobs/<job>.py` entrypoint to a Ray cluster's jobs API (what `ray job submit` does, from Python).

The job runs `python jobs/<job>.py <args>` on the cluster with this checkout as its `working_dir` (Ray honours
.gitignore, so .venv/ and runs/ stay behind). Outputs go wherever the job's `--out` says: on a multi-node
cluster that must be shared storage.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from fairray.errors import FairrayError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def jobs_address(address: str | None = None) -> str:
    """The jobs API (dashboard) URL: `address`, else $RAY_API_SERVER_ADDRESS, else an http $RAY_ADDRESS, else
    the local default. (A plain host:port $RAY_ADDRESS is the GCS address, not the jobs API.)"""
    if address:
        return address
    if api := os.environ.get("RAY_API_SERVER_ADDRESS"):
        return api
    ray_address = os.environ.get("RAY_ADDRESS", "")
    if ray_address.startswith(("http://", "https://")):
        return ray_address
    return DEFAULT_ADDRESS


def available_jobs(working_dir: Path) -> list[str]:
    return sorted(p.stem for p in (Path(working_dir) / "jobs").glob("*.py") if not p.name.startswith("_"))


def job_script(job: str, working_dir: Path) -> str:
    """`jobs/<job>.py` relative to working_dir (train-gan and train_gan both name jobs/train_gan.py)."""
    name = job.removesuffix(".py").removeprefix("jobs/").replace("-", "_")
    if not (Path(working_dir) / "jobs" / f"{name}.py").is_file():
        jobs = available_jobs(working_dir)
        raise FairrayError(f"no job '{job}' in {Path(working_dir) / 'jobs'} (available: "
                           f"{', '.join(jobs) if jobs else 'none: is --working-dir the fairray checkout?'})")
    return f"jobs/{name}.py"


def new_submission_id(job: str) -> str:
    """`fairray-<job>-<YYYYmmdd-HHMMSS>-<ms>`: sortable, and unique enough for one person submitting by hand."""
    now = time.time()
    name = job.removesuffix(".py").removeprefix("jobs/").replace("-", "_")
    return f"fairray-{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{int(now * 1000) % 1000:03d}"


def last_log_line(logs: str) -> str:
    lines = [ln.strip() for ln in logs.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no log output)"


def submit(job: str, args: list[str] | None = None, address: str | None = None, working_dir: Path = Path("."),
           submission_id: str | None = None, wait: bool = False, poll_s: float = 1.0) -> str:
    """Submit `python jobs/<job>.py <args>`; returns the submission id, or with wait=True the terminal status
    (SUCCEEDED or STOPPED). A FAILED job raises FairrayError carrying the job's last log line."""
    from ray.job_submission import JobSubmissionClient

    working_dir = Path(working_dir).resolve()
    if not working_dir.is_dir():
        raise FairrayError(f"working dir {working_dir} does not exist")
    script = job_script(job, working_dir)
    name = Path(script).stem
    entrypoint = shlex.join(["python", script, *(args or [])])
    runtime_env: dict = {"working_dir": str(working_dir)}
    if mode := os.environ.get("RAY_AUTH_MODE"):
        runtime_env["env_vars"] = {"RAY_AUTH_MODE": mode}
    submission_id = submission_id or new_submission_id(name)
    url = jobs_address(address)
    try:
        client = JobSubmissionClient(url)
    except ConnectionError as e:
        raise FairrayError(f"cannot reach the Ray jobs API at {url} ({str(e).splitlines()[0][:200]}); set "
                           "--address or RAY_API_SERVER_ADDRESS (and RAY_AUTH_MODE=token if the cluster uses "
                           "token auth)") from None
    sid = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id)
    if not wait:
        return sid
    while (status := str(client.get_job_status(sid).value)) not in TERMINAL:
        time.sleep(poll_s)
    if status == "FAILED":
        raise FairrayError(f"job {sid} FAILED: {last_log_line(client.get_job_logs(sid))}")
    return status
