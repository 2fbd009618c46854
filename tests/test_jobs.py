"""The job runner with real (tiny) jobs: lifecycle, queue, GPU lock, lost workers, cancel,
dedupe, retry, and the `jobs` command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darkvalley_core import jobs
from darkvalley_core.errors import JobError

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["train", "--preset", "tiny", "--runs", "1", "--max-epochs", "2", "--injection", "3",
         "--device", "cpu", "--quiet"]
# A training that runs until it is stopped (tiny epochs, no early stopping).
LONG_TRAIN = ["train", "--preset", "tiny", "--runs", "5", "--max-epochs", "5000",
              "--patience", "5000", "--injection", "3", "--device", "cpu", "--quiet"]


@pytest.fixture
def job_cache(tiny_samples, tmp_path, monkeypatch):
    """A fresh cache per test (its own jobs/) that sees the session's tiny samples."""
    from darkvalley_core.storage import events_dir

    src = Path(tiny_samples[0]).parent
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("DARKVALLEY_CACHE", str(cache))
    (cache / "events").symlink_to(src, target_is_directory=True)
    assert events_dir().resolve() == src.resolve()
    yield cache
    for job in jobs.list_jobs():  # never leave a worker behind
        if job.state in jobs.ACTIVE_STATES:
            jobs.cancel(job.id)


def wait_for(predicate, timeout=60.0, poll=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def test_full_lifecycle_queued_running_done(job_cache):
    job = jobs.submit(TRAIN, label="lifecycle")
    seen = [job.state]
    assert seen[0] == "queued"
    while job.state in jobs.ACTIVE_STATES:
        if job.state != seen[-1]:
            seen.append(job.state)
        time.sleep(0.02)
    seen.append(job.state)
    assert seen[0] == "queued" and "running" in seen and seen[-1] == "done", seen
    st = job.status
    assert st["progress"] == 1.0 and st["finished"] >= st["started"] >= job.created
    assert job.result["ok"] and job.result["command"] == "train"
    assert job.result["table"][0]["benchmark"] == "ID-10"
    rows = job.metrics()
    assert [r["epoch"] for r in rows] == [0.0, 1.0]
    assert all(r["val_loss"] > 0 for r in rows)
    cfg = job.config
    assert cfg["label"] == "lifecycle" and cfg["resources"] == {"gpu": False,
                                                              "cores": jobs.total_cores()}
    assert "python -m darkvalley_core train" in (job.folder / "log.txt").read_text()
    # a finished job can be deleted; an active one cannot
    jobs.delete(job.id)
    assert not job.folder.exists()


def test_two_submissions_of_one_config_make_one_job(job_cache, monkeypatch):
    monkeypatch.setenv("DARKVALLEY_CORES", "1")
    blocker = jobs.submit(["generate", "--preset", "tiny", "--events", "20", "--quiet",
                           "--out", str(job_cache / "b.h5")])
    a = jobs.submit(TRAIN)
    reordered = TRAIN[:1] + TRAIN[3:5] + TRAIN[1:3] + TRAIN[5:]  # same options, other order
    b = jobs.submit(reordered)
    assert a.id == b.id
    assert len([j for j in jobs.list_jobs() if j.kind == "train"]) == 1
    with pytest.raises(JobError, match="invalid command line"):
        jobs.submit(["train", "--no-such-option"])
    with pytest.raises(JobError, match="jobs"):
        jobs.submit(["jobs", "list"])
    assert len(jobs.list_jobs()) == 2  # nothing created by the bad submissions
    jobs.cancel(a.id)
    jobs.cancel(blocker.id)


def test_queue_waits_for_cores_and_survives_its_submitter(job_cache, monkeypatch):
    """With one core, a second CPU job waits until the first is over; the queue lives in the
    folders and the workers, not in the process that submitted."""
    monkeypatch.setenv("DARKVALLEY_CORES", "1")
    first = jobs.submit(LONG_TRAIN)
    second = jobs.submit(["generate", "--preset", "tiny", "--events", "20", "--quiet",
                          "--out", str(job_cache / "g.h5")])
    wait_for(lambda: first.state == "running", what="first job running")
    time.sleep(3 * jobs.QUEUE_POLL_S)
    assert second.state == "queued"
    assert "core" in second.status["message"]
    assert jobs.queue_position(second) == 1
    # A new handle from the folder alone (e.g. a restarted app) sees the same queue.
    assert jobs.get_job(second.id).state == "queued"
    jobs.cancel(first.id)
    jobs.wait(second.id, timeout=120)
    assert first.state == "cancelled" and second.state == "done"
    assert second.status["started"] >= first.status["finished"] - 0.5
    assert (job_cache / "g.h5").exists()


def test_gpu_jobs_run_one_at_a_time(job_cache, monkeypatch):
    monkeypatch.setenv("DARKVALLEY_CORES", "2")
    a = jobs.submit(LONG_TRAIN, cores=1, gpu=True)
    b = jobs.submit(["generate", "--preset", "tiny", "--events", "20", "--quiet", "--out",
                     str(job_cache / "b.h5")], cores=1, gpu=True)
    c = jobs.submit(["generate", "--preset", "tiny", "--events", "20", "--quiet", "--out",
                     str(job_cache / "c.h5")], cores=1)
    wait_for(lambda: a.state == "running", what="first GPU job running")
    jobs.wait(c.id, timeout=120)  # a CPU job uses the free core meanwhile
    assert c.state == "done" and a.state == "running"
    assert b.state == "queued" and "GPU" in b.status["message"]
    jobs.cancel(a.id)
    jobs.wait(b.id, timeout=120)
    assert b.state == "done"
    assert b.status["started"] >= a.status["finished"] - 0.5


def test_sigkill_shows_lost_and_keeps_partial_results(job_cache):
    job = jobs.submit(LONG_TRAIN)
    wait_for(lambda: len(job.metrics()) >= 3, timeout=90, what="three epochs")
    pid = job.raw_status["pid"]
    os.kill(pid, signal.SIGKILL)
    t0 = time.time()
    wait_for(lambda: job.state == "lost", timeout=3 * jobs.HEARTBEAT_S, what="lost")
    assert time.time() - t0 < 3 * jobs.HEARTBEAT_S
    st = json.loads((job.folder / "status.json").read_text())  # recorded, valid JSON
    assert st["state"] == "lost" and "stopped" in st["error"]
    rows = job.metrics()  # partial results kept and readable
    assert len(rows) >= 3 and all(isinstance(r["val_loss"], float) for r in rows)
    assert not (job.folder / "result.json").exists()
    assert jobs.session_processes(pid) == []
    with pytest.raises(JobError):
        jobs.retry(jobs.submit(TRAIN).id)  # an active job cannot be "run again"


def test_cancel_leaves_no_process_behind(job_cache):
    # a sweep with two loky workers: the worker and its children all go
    job = jobs.submit(["scan", *LONG_TRAIN[1:], "--injections", "2", "5", "--workers", "2"])
    wait_for(lambda: job.state == "running", timeout=60, what="running")
    pid = job.raw_status["pid"]
    wait_for(lambda: len(jobs.session_processes(pid)) >= 3, timeout=90,
             what="loky workers started")
    jobs.cancel(job.id)
    assert job.state == "cancelled"
    assert jobs.session_processes(pid) == []
    # a queued job is cancelled too (its waiting worker stops)
    blocker = jobs.submit(LONG_TRAIN)
    wait_for(lambda: blocker.state == "running", what="blocker running")
    queued = jobs.submit(TRAIN)
    time.sleep(2 * jobs.QUEUE_POLL_S)
    assert queued.state == "queued"
    qpid = queued.raw_status["pid"]
    jobs.cancel(queued.id)
    jobs.cancel(blocker.id)
    assert queued.state == "cancelled" and blocker.state == "cancelled"
    assert jobs.session_processes(qpid) == [] and jobs.session_processes(
        blocker.raw_status["pid"]) == []


def test_a_dead_queued_worker_is_lost_and_can_run_again(job_cache, monkeypatch):
    monkeypatch.setenv("DARKVALLEY_CORES", "1")
    blocker = jobs.submit(LONG_TRAIN)
    queued = jobs.submit(TRAIN)
    wait_for(lambda: queued.raw_status.get("pid") and queued.raw_status.get("pid_start"),
             what="queued worker")
    os.kill(queued.raw_status["pid"], signal.SIGKILL)
    wait_for(lambda: queued.state == "lost", timeout=5, what="lost")
    jobs.cancel(blocker.id)
    again = jobs.retry(queued.id)
    assert again.id == queued.id
    jobs.wait(queued.id, timeout=120)
    assert queued.state == "done" and queued.raw_status["attempt"] == 2
    assert "attempt 2" in (queued.folder / "log.txt").read_text()


def test_pid_reuse_is_not_mistaken_for_the_worker(job_cache):
    """A status whose pid now belongs to another process (other start time) reads as lost."""
    job = jobs.submit(["generate", "--preset", "tiny", "--events", "20", "--quiet", "--out",
                       str(job_cache / "p.h5")])
    jobs.wait(job.id, timeout=120)
    st = job.raw_status
    fake = {**st, "state": "running", "pid": os.getpid(), "pid_start": "1"}
    (job.folder / "status.json").write_text(json.dumps(fake))
    assert job.state == "lost"


def run_cli(*args, cache):
    env = {**os.environ, "DARKVALLEY_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-m", "darkvalley_core", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    return r


def test_jobs_command_line(job_cache):
    r = run_cli("jobs", "submit", "--label", "cli", "--json", "--", *TRAIN, cache=job_cache)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)["job"]
    assert job["state"] in ("queued", "running") and job["label"] == "cli"
    same = json.loads(run_cli("jobs", "submit", "--json", "--", *TRAIN, cache=job_cache).stdout)
    assert same["job"]["id"] == job["id"]
    r = run_cli("jobs", "wait", job["id"], "--json", cache=job_cache)
    assert json.loads(r.stdout)["job"]["state"] == "done"
    listed = json.loads(run_cli("jobs", "list", "--json", cache=job_cache).stdout)
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    shown = json.loads(run_cli("jobs", "show", job["id"], "--json", cache=job_cache).stdout)
    assert shown["result"]["command"] == "train" and len(shown["metrics"]) == 2
    assert "train" in run_cli("jobs", "list", cache=job_cache).stdout
    r = run_cli("jobs", "cancel", "nope", "--json", cache=job_cache)
    assert r.returncode == 2 and "no job" in json.loads(r.stdout)["error"]
    r = run_cli("jobs", "submit", "--json", "--", "train", "--bogus", cache=job_cache)
    assert r.returncode == 2 and "invalid command line" in json.loads(r.stdout)["error"]
    r = run_cli("jobs", "delete", job["id"], "--json", cache=job_cache)
    assert json.loads(r.stdout)["deleted"] == job["id"]
    assert json.loads(run_cli("jobs", "list", "--json", cache=job_cache).stdout)["jobs"] == []


def test_a_killed_sweep_keeps_its_children_and_resumes_without_rerunning_them(job_cache):
    job = jobs.submit(["scan", "--preset", "tiny", "--runs", "1", "--max-epochs", "6",
                       "--patience", "6", "--injections", "1", "2", "3", "--eps-b", "0.1",
                       "--device", "cpu", "--quiet"])
    children = job.folder / "children"
    wait_for(lambda: list(children.glob("*.json")), timeout=120, what="a finished child")
    os.kill(job.raw_status["pid"], signal.SIGKILL)
    wait_for(lambda: job.state == "lost", timeout=3 * jobs.HEARTBEAT_S, what="lost")
    done = {p.stem for p in children.glob("*.json")}
    assert 1 <= len(done) <= 3
    assert all(json.loads((children / f"{n}.json").read_text())["runs"] for n in done)
    jobs.retry(job.id)
    jobs.wait(job.id, timeout=180)
    assert job.state == "done", job.log_tail()
    result = job.result
    assert set(result["computed"]).isdisjoint(done)
    assert len(result["computed"]) == 3 - len(done) and result["n_children"] == 3
    assert {row["injection"] for row in result["table"]} == {1.0, 2.0, 3.0}
    assert (job.folder / "table.csv").exists()
