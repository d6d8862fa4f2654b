import logging
import socket
import subprocess
import sys
import time
import urllib.request

import matplotlib.pyplot as plt
import pytest
from mlflow.tracking import MlflowClient

from fairray.tracking import PARENT_TAG, Tracker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exercise(tracker: Tracker) -> tuple[str | None, str | None]:
    with tracker.run("campaign") as parent:
        parent.log_params({"space": {"alpha": [0.5, 1.0]}, "seed": 0})
        with tracker.run("trial-0", parent=parent) as child:
            child.log_params({"alpha": 0.5})
            for step in range(3):
                child.log_metrics({"fairness_discrepancy_gender_10k": 0.3 - 0.1 * step}, step=step)
            fig, ax = plt.subplots()
            ax.plot([0, 1])
            child.log_figure(fig, "charts/curve.png")
    return parent.run_id, child.run_id


def check_store(uri: str, experiment: str, parent_id: str, child_id: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {parent_id, child_id}
    child = runs[child_id]
    assert child.data.tags[PARENT_TAG] == parent_id
    assert child.data.params == {"alpha": "0.5"}
    assert runs[parent_id].data.params["space.alpha"] == "[0.5, 1.0]"
    hist = client.get_metric_history(child_id, "fairness_discrepancy_gender_10k")
    assert [round(m.value, 6) for m in sorted(hist, key=lambda m: m.step)] == [0.3, 0.2, 0.1]
    assert child.info.status == "FINISHED"
    # a seed's numbers depend on the CPU's kernels: every run says which CPU made it
    assert child.data.tags["fairray.native_bf16"] in ("True", "False") and child.data.tags["fairray.cpu"]
    assert [a.path for a in client.list_artifacts(child_id, "charts")] == ["charts/curve.png"]


def test_sqlite_store_parent_and_child_runs(tmp_path):
    tracker = Tracker(tmp_path, "exp-sqlite")
    assert tracker.uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    parent_id, child_id = exercise(tracker)
    check_store(tracker.uri, "exp-sqlite", parent_id, child_id)
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts under the out dir, not the cwd
    again = Tracker(tmp_path, "exp-sqlite")  # reopening reuses the experiment
    assert again.experiment_id == tracker.experiment_id


def test_failed_body_marks_run_failed(tmp_path):
    tracker = Tracker(tmp_path, "exp")
    with pytest.raises(RuntimeError), tracker.run("boom") as run:
        raise RuntimeError("x")
    assert MlflowClient(tracker.uri).get_run(run.run_id).info.status == "FAILED"


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not come up")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_real_mlflow_server(tmp_path, mlflow_server):
    tracker = Tracker(tmp_path / "out", "exp-server", uri=mlflow_server)
    assert tracker.active
    parent_id, child_id = exercise(tracker)
    check_store(mlflow_server, "exp-server", parent_id, child_id)


def test_dead_server_warns_once_and_work_continues(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="fairray.tracking"):
        tracker = Tracker(tmp_path, "exp", uri=uri)
        parent_id, child_id = exercise(tracker)
    assert not tracker.active and parent_id is None and child_id is None
    assert len([r for r in caplog.records if "continuing without tracking" in r.message]) == 1
    assert time.perf_counter() - t0 < 60
