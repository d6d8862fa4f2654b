"""Cluster operation: cluster.yaml (Ray's own offline validation), KubeRay manifests, jobs/*.py entrypoints,
fairray.submit, and (slow) a real two-node local Ray cluster that runs fairray jobs through the jobs API."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from fairray.errors import FairrayError
from fairray.submit import available_jobs, jobs_address, last_log_line, new_submission_id, submit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MANIFESTS = [ROOT / "cluster.yaml", ROOT / "deploy" / "kuberay" / "raycluster.yaml",
             ROOT / "deploy" / "kuberay" / "rayjob.yaml"]
ENTRYPOINT = re.compile(r"python\s+(jobs/[\w.-]+\.py)")


def cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def validate(raw: dict) -> dict:
    """What `ray up` checks before it talks to the cloud: defaults merged, schema, head/worker consistency."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    return cfg


# ------------------------------------------------------------------------------------------------ cluster.yaml
def test_cluster_yaml_passes_rays_offline_validation():
    cfg = validate(cluster_yaml())
    types = cfg["available_node_types"]
    assert set(types) == {"head_cpu", "worker_gpu", "worker_cpu"} and cfg["head_node_type"] == "head_cpu"
    assert types["head_cpu"]["resources"] == {"CPU": 0}
    assert cfg["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert any("pip install" in c and "fairray" in c for c in cfg["setup_commands"])
    assert "g5" in types["worker_gpu"]["node_config"]["InstanceType"]  # a GPU instance type
    assert sum(t.get("max_workers", 0) for n, t in types.items() if n != "head_cpu") <= cfg["max_workers"]


def test_cluster_yaml_auth_storage_and_mlflow_are_consistent():
    cfg = cluster_yaml()
    head, worker = " ".join(cfg["head_start_ray_commands"]), " ".join(cfg["worker_start_ray_commands"])
    modes = {re.search(r"RAY_AUTH_MODE=(\w+)", cmd).group(1) for cmd in (head, worker)}
    assert modes == {"token"}  # same mode on the head and every worker
    assert "ray start --head" in head and "--address=$RAY_HEAD_IP:6379" in worker
    assert re.search(r"mlflow server --host 0\.0\.0\.0 --port 5000", head)
    assert re.search(r"MLFLOW_TRACKING_URI=http://\S.*:5000;", head)  # the head's own routable IP
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in worker
    assert any("FAIRRAY_STORAGE=/shared/" in o for o in cfg["docker"]["run_options"])
    assert ".gitignore" in cfg["rsync_filter"]  # the checkout is copied without .venv/ and runs/


@pytest.mark.parametrize("break_it, error, match", [
    (lambda c: c.update(head_node_type="head_gpu"), ValueError, "`head_node_type` must be one of"),
    (lambda c: c.update(idle_timeout_minutes="ten"), jsonschema.ValidationError, "'ten' is not of type 'number'"),
    (lambda c: c.update(env={"X": "1"}), jsonschema.ValidationError, "Additional properties are not allowed"),
    (lambda c: c["available_node_types"]["worker_gpu"].update(min_workers=99), ValueError,
     "smaller than the sum of `min_workers`"),
], ids=["head_node_type-not-a-node-type", "idle_timeout-not-a-number", "unknown-top-level-key", "min_workers-over-max"])
def test_broken_cluster_yaml_is_rejected(break_it, error, match):
    raw = cluster_yaml()
    break_it(raw)
    with pytest.raises(error, match=match):
        validate(raw)


# ----------------------------------------------------------------------------------------------------- KubeRay
def test_kuberay_manifests():
    cluster = yaml.safe_load((ROOT / "deploy/kuberay/raycluster.yaml").read_text())
    job = yaml.safe_load((ROOT / "deploy/kuberay/rayjob.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and isinstance(spec["backoffLimit"], int)
    assert spec["entrypoint"].startswith("python jobs/train_gan.py ") and "--out /shared/" in spec["entrypoint"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert {"working_dir", "env_vars"} <= set(runtime_env)
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http://")
    for rc in (cluster["spec"], spec["rayClusterSpec"]):
        assert rc["rayVersion"] == ray.__version__ and rc["authOptions"]["mode"] == "token"
        assert rc["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        assert rc["headGroupSpec"]["template"]["spec"]["containers"][0]["image"].startswith(
            f"rayproject/ray:{ray.__version__}")
        groups = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
        gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(gpu["nvidia.com/gpu"]) == 1
        for g in groups.values():
            assert {"replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(g)
    assert "cpu" in {g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_entrypoint_named_in_a_manifest_exists(path):
    named = set(ENTRYPOINT.findall(path.read_text()))
    assert named, f"{path} names no `python jobs/X.py` entrypoint"
    assert all((ROOT / p).is_file() for p in named), named


def test_debias_job_is_a_thin_entrypoint():
    src = (ROOT / "jobs/debias.py").read_text()
    assert all(f"| {k}" in src for k in ("inputs", "outputs", "resources"))
    assert 'app(["debias", *sys.argv[1:]])' in src
    res = subprocess.run([sys.executable, "jobs/debias.py", "ratio", "some/dataset", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "dataset: some/dataset" in res.stdout, res.stdout + res.stderr
    assert {"debias", "label", "train_gan", "generate", "distill", "tune"} <= set(available_jobs(ROOT))


# ---------------------------------------------------------------------------------------------- fairray.submit
def test_submit_rejects_an_unknown_job_or_an_unreachable_cluster():
    with pytest.raises(FairrayError, match=r"no job 'trian_gan'.*available: .*debias.*label.*train_gan"):
        submit("trian_gan", [], address="http://127.0.0.1:9", working_dir=ROOT)
    with pytest.raises(FairrayError, match=r"cannot reach the Ray jobs API at http://127.0.0.1:9 .*RAY_AUTH_MODE"):
        submit("train-gan", ["--set", "kimg=1"], address="http://127.0.0.1:9", working_dir=ROOT)
    assert re.fullmatch(r"fairray-train_gan-\d{8}-\d{6}-\d{3}", new_submission_id("train-gan"))


def test_jobs_address_precedence(monkeypatch):
    for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    assert jobs_address() == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address, not the jobs API
    assert jobs_address() == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert jobs_address() == "http://10.0.0.1:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.2:8265")
    assert jobs_address() == "http://10.0.0.2:8265"
    assert jobs_address("http://h:1") == "http://h:1"
    assert last_log_line("a\n\nerror: x\n  \n") == "error: x"


# ---------------------------------------------------------------------------------- a real two-node local cluster
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _procs() -> dict[int, tuple[int, str, str, str]]:
    """pid -> (ppid, state, cmdline, environ) for every process we may read."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                env = Path(f"/proc/{d}/environ").read_bytes().decode(errors="replace")
            except OSError:
                env = ""
        except (OSError, IndexError):
            continue
        out[int(d)] = (int(stat[1]), stat[0], cmd, env)
    return out


def cluster_processes(temp_dir: str, marker: str) -> set[int]:
    """Live processes of *our* cluster only: those naming our --temp-dir or carrying our marker env var (every
    process `ray start` spawned inherits it), plus all their descendants (ray::* workers retitle themselves)."""
    procs = _procs()
    ours = {pid for pid, (_, _, cmd, env) in procs.items()
            if temp_dir in cmd or f"FAIRRAY_TEST_CLUSTER={marker}" in env}
    while True:
        more = {pid for pid, (ppid, *_) in procs.items() if ppid in ours} - ours
        if not more:
            break
        ours |= more
    ours.discard(os.getpid())
    return {pid for pid in ours if procs[pid][1] != "Z"}


def stop_cluster(temp_dir: str, marker: str) -> set[int]:
    """SIGTERM, then SIGKILL, exactly our cluster's processes (never `ray stop`: it stops every Ray here)."""
    for sig, grace in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 3.0)):
        for pid in cluster_processes(temp_dir, marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and cluster_processes(temp_dir, marker):
            time.sleep(0.3)
    return cluster_processes(temp_dir, marker)


def _ray(env: dict, *args: str) -> None:
    res = subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"ray {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


@contextlib.contextmanager
def local_cluster():
    """A head (2 CPUs, dashboard/jobs API on loopback) + one worker node (1 CPU), own temp dir and ports."""
    temp_dir = tempfile.mkdtemp(prefix="frc-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    marker = uuid.uuid4().hex
    gcs, dash, agent_head, client, agent_worker = _free_ports(5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER", "MLFLOW_"))}
    # PATH: the job's `python` is this venv's. RAY_API_SERVER_ADDRESS: Ray Train's internal actors find the
    # State API by address auto-discovery, which fails when another Ray runs on this machine.
    env |= {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "FAIRRAY_TEST_CLUSTER": marker,
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}"}
    # Each node its own temp root: two raylets on one machine sharing one would share runtime_resources/, and
    # the worker node's runtime-env GC would delete the driver's unpacked working_dir (its cwd) under it.
    head_tmp, worker_tmp = f"--temp-dir={temp_dir}/h", f"--temp-dir={temp_dir}/w"
    t0 = time.perf_counter()
    try:
        _ray(env, "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
             f"--dashboard-agent-listen-port={agent_head}", f"--ray-client-server-port={client}", "--num-cpus=2",
             "--object-store-memory=200000000", head_tmp, "--disable-usage-stats")
        _ray(env, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", f"--dashboard-agent-listen-port={agent_worker}",
             "--object-store-memory=100000000", worker_tmp, "--disable-usage-stats")
        assert list(Path(temp_dir, "w").glob("session_*")), "the worker node ignored its own --temp-dir"
        print(f"TIMING cluster up {time.perf_counter() - t0:.1f}s", flush=True)
        yield {"url": f"http://127.0.0.1:{dash}", "env": env, "temp_dir": temp_dir, "marker": marker}
    finally:
        t0 = time.perf_counter()
        left = stop_cluster(temp_dir, marker)
        print(f"TIMING cluster down {time.perf_counter() - t0:.1f}s", flush=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test cluster survived: {sorted(left)}"


def random_attrclf(dataset: Path, dest: Path) -> Path:
    """An untrained attrclf saved in the real `fairray.attrclf/1` format (labels are noise; the plumbing is real)."""
    import torch

    from fairray.models.classifiers import AttributeClassifier, ClassifierConfig
    from fairray.train.attrclf import head_codes

    codes = head_codes(dataset, ["gender"])
    mcfg = ClassifierConfig({h: len(c) for h, c in codes.items()}, 32, 8, (1, 1, 1, 1))
    dest.mkdir(parents=True)
    torch.save({"config": asdict(mcfg), "state_dict": AttributeClassifier(mcfg).state_dict(), "codes": codes,
                "temperature": {h: 1.0 for h in codes}, "format": "fairray.attrclf/1"}, dest / "model.pt")
    return dest


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~3-5 min on 2 busy cores; on a timeout the finally block still stops the cluster
def test_jobs_on_a_real_two_node_cluster(tmp_path):
    from mlflow.tracking import MlflowClient
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_nodes

    from fairray.config import SynthConfig
    from fairray.data import synth_dataset
    from fairray.data.table import read_table
    from fairray.train.checkpoint import load_state, newest_complete

    data = (tmp_path / "synth").resolve()
    synth_dataset.build(SynthConfig(n=300, perc=0.25, val_frac=0.1, test_frac=0.1), data, progress=False)
    labeler = random_attrclf(data, tmp_path / "attrclf")
    out = (tmp_path / "gan").resolve()
    gan_args = ["--set", f"dataset={data}", "--set", "width=8", "--set", "z_dim=16", "--set", "batch_size=16",
                "--set", "tick_kimg=0.32", "--set", "snapshot_ticks=1", "--set", "name=cl", "--out", str(out)]

    with local_cluster() as c:
        env = c["env"]  # RAY_API_SERVER_ADDRESS=<our jobs API>, RAY_AUTH_MODE=disabled, the venv first on PATH
        client = JobSubmissionClient(c["url"])
        assert [n.state for n in list_nodes(address=c["url"])] == ["ALIVE", "ALIVE"]  # head + worker node

        def job(sid: str, *entrypoint: str) -> tuple[str, str]:
            t0 = time.perf_counter()
            res = subprocess.run([str(BIN / "ray"), "job", "submit", "--working-dir", str(ROOT), "--submission-id",
                                  sid, "--", "python", *entrypoint], env=env, capture_output=True, text=True,
                                 timeout=400)
            status, logs = client.get_job_status(sid).value, client.get_job_logs(sid)
            print(f"TIMING {sid} {time.perf_counter() - t0:.1f}s", flush=True)
            assert (res.returncode == 0) == (status == "SUCCEEDED"), res.stdout[-3000:] + res.stderr[-3000:]
            return status, logs

        # Config mistakes need no cluster resources: they run while the label job does. The CLI job and one
        # through fairray.submit(wait=True), which must raise with the job's last log line.
        bad = ["--set", "kimgg=1", "--out", str(tmp_path / "bad")]
        with ThreadPoolExecutor(2) as pool:
            bad_cli = pool.submit(job, "bad-1", "jobs/train_gan.py", *bad)
            bad_sdk = pool.submit(submit, "train-gan", bad, address=c["url"], working_dir=ROOT, wait=True,
                                  poll_s=0.5)
            status, logs = job("label-1", "jobs/label.py", str(data), "--labeler", f"attrclf:{labeler}",
                               "--out", str(tmp_path / "labeled"))
            assert status == "SUCCEEDED", logs[-4000:]
            summary = json.loads((tmp_path / "labeled" / "summary.json").read_text())
            assert summary["rows_out"] == summary["rows_in"] == len(read_table(data)) and "gender" in summary["heads"]
            assert list((tmp_path / "labeled" / "data").glob("*.parquet"))

            status, logs = bad_cli.result()
            assert status == "FAILED" and "Traceback" not in logs
            assert re.fullmatch(r"error: config error: unknown key 'kimgg' \(allowed: .*\)", last_log_line(logs)), logs
            with pytest.raises(FairrayError, match=r"job fairray-train_gan-\S+ FAILED: error: config error: "
                                                   r"unknown key 'kimgg'"):
                bad_sdk.result()

        status, logs = job("gan-1", "jobs/train_gan.py", *gan_args, "--set", "kimg=0.64")
        assert status == "SUCCEEDED", logs[-4000:]
        first = load_state(newest_complete(out / "ray_results" / "cl"))
        assert first["nimg"] >= 640 and first["resumes"] == [] and (out / "cl_grid.png").is_file()

        # Re-submitting with the same --out and name and a longer schedule continues from the checkpoint.
        status, logs = job("gan-2", "jobs/train_gan.py", *gan_args, "--set", "kimg=0.96")
        assert status == "SUCCEEDED", logs[-4000:]
        second = load_state(newest_complete(out / "ray_results" / "cl"))
        assert second["resumes"] == [first["nimg"]] and second["nimg"] >= 960

        mlflow = MlflowClient(f"sqlite:///{out}/mlflow.db")
        runs = mlflow.search_runs([mlflow.get_experiment_by_name("fairray-gan").experiment_id])
        assert len(runs) == 1 and runs[0].data.tags["fairray.run_name"] == "cl"  # the re-run reused its run
        steps = [m.step for m in mlflow.get_metric_history(runs[0].info.run_id, "img_per_s")]
        assert max(steps) >= 960 and min(steps) <= 640
        assert {j.submission_id for j in client.list_jobs()} >= {"label-1", "gan-1", "gan-2", "bad-1"}
