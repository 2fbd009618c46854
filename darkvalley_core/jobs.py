"""Background jobs: every long task (generation, training, sweeps) runs in a fresh interpreter.

A job is a folder ``cache/jobs/<id>/``; the folder, not any browser session, is the truth::

    config.json   what to run: {"kind", "argv" (a darkvalley command line), "key", "created"}
    status.json   {"state", "progress" (0..1), "message", "heartbeat" (unix time), "pid",
                   "started", "finished", "error"}; written atomically
    metrics.csv   per-epoch numbers appended by training jobs
    log.txt       the worker's stdout and stderr
    result.json   the command's JSON result, written atomically when it succeeds

States: queued -> running -> done | failed | cancelled; a running job whose process vanished or
whose heartbeat stopped is reported as ``lost``. The worker runs ``python -m darkvalley_core
jobs worker <folder>`` in its own process group (``start_new_session``), so a cancel signals that
group and nothing else, and the job outlives the Streamlit script run, page reloads and the
browser tab.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import JobError
from .storage import cache_root, config_key, write_json_atomic

HEARTBEAT_S = 2.0
LOST_AFTER_S = 5 * HEARTBEAT_S
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("done", "failed", "cancelled", "lost")


def jobs_dir() -> Path:
    return cache_root() / "jobs"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (finished, not yet reaped by its parent) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class Job:
    """A handle on a job folder; every property reads the files afresh."""

    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def config(self) -> dict:
        return _read_json(self.folder / "config.json") or {}

    @property
    def raw_status(self) -> dict:
        return _read_json(self.folder / "status.json") or {"state": "unknown"}

    @property
    def status(self) -> dict:
        """The status, with a dead running job reported as ``lost``."""
        st = self.raw_status
        if st.get("state") == "running":
            stale = time.time() - float(st.get("heartbeat") or 0) > LOST_AFTER_S
            if not _pid_alive(st.get("pid")) or stale:
                st = {**st, "state": "lost",
                      "error": st.get("error") or "the worker process stopped without finishing"}
        return st

    @property
    def state(self) -> str:
        return self.status.get("state", "unknown")

    @property
    def result(self) -> dict | None:
        return _read_json(self.folder / "result.json")

    def log_tail(self, n_lines: int = 20) -> str:
        try:
            with open(self.folder / "log.txt", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        # Progress bars redraw with carriage returns; keep the last state of each line.
        lines = [line.split("\r")[-1] for line in text.splitlines()]
        return "\n".join(lines[-n_lines:])


def list_jobs() -> list[Job]:
    """All jobs, newest first."""
    folder = jobs_dir()
    if not folder.is_dir():
        return []
    jobs = [Job(p) for p in folder.iterdir() if (p / "config.json").exists()]
    return sorted(jobs, key=lambda j: j.config.get("created", 0), reverse=True)


def get_job(job_id: str) -> Job:
    folder = jobs_dir() / job_id
    if not (folder / "config.json").exists():
        raise JobError(f"no job {job_id!r} in {jobs_dir()}")
    return Job(folder)


def find_active(key: str) -> Job | None:
    for job in list_jobs():
        if job.config.get("key") == key and job.state in ACTIVE_STATES:
            return job
    return None


def submit(argv: list[str], kind: str | None = None, label: str = "") -> Job:
    """Start ``python -m darkvalley_core <argv>`` as a background job and return its handle.

    A submission identical to a queued or running job returns that job instead of a new one.
    """
    if not argv:
        raise JobError("nothing to run: the job's command line is empty")
    kind = kind or argv[0]
    key = config_key({"argv": list(argv)})
    existing = find_active(key)
    if existing is not None:
        return existing
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = jobs_dir() / f"{stamp}-{kind}-{key[:6]}"
    folder.mkdir(parents=True, exist_ok=True)
    created = time.time()
    write_json_atomic(folder / "config.json", {"kind": kind, "argv": list(argv), "key": key,
                                               "label": label, "created": created})
    write_json_atomic(folder / "status.json", {"state": "queued", "progress": 0.0,
                                               "message": "starting", "heartbeat": created})
    log = open(folder / "log.txt", "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "darkvalley_core", "jobs", "worker", str(folder)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        write_json_atomic(folder / "status.json", {"state": "failed", "error": str(exc)})
        raise JobError(f"could not start the job: {exc}") from exc
    finally:
        log.close()
    # Record the pid at once, so a job killed before its first heartbeat is seen as lost.
    status = Job(folder).raw_status
    if status.get("state") == "queued":
        write_json_atomic(folder / "status.json", {**status, "pid": proc.pid})
    return Job(folder)


def cancel(job_id: str) -> Job:
    """Stop a job's process group (and only it) and mark the job cancelled."""
    job = get_job(job_id)
    st = job.raw_status
    if st.get("state") not in ACTIVE_STATES:
        return job
    pid = st.get("pid")
    if pid and _pid_alive(pid):
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.time() + 5
        while _pid_alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    write_json_atomic(job.folder / "status.json",
                      {**job.raw_status, "state": "cancelled", "finished": time.time(),
                       "message": "cancelled by the user"})
    return job


def delete(job_id: str) -> None:
    """Remove a finished job's folder."""
    import shutil

    job = get_job(job_id)
    if job.state in ACTIVE_STATES:
        raise JobError(f"job {job_id} is {job.state}; cancel it before deleting it")
    shutil.rmtree(job.folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Worker side.
class Reporter:
    """Writes the worker's status file: progress from the command, heartbeat from a thread."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.lock = threading.Lock()
        self.status = {**(_read_json(self.folder / "status.json") or {}), "state": "running",
                       "pid": os.getpid(), "started": time.time(), "progress": 0.0,
                       "message": "running"}
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        with self.lock:
            self.status["heartbeat"] = time.time()
            write_json_atomic(self.folder / "status.json", self.status)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except Exception:  # a full disk must not kill the job's computation
                pass

    def progress(self, fraction: float, message: str = "") -> None:
        self.status["progress"] = float(min(max(fraction, 0.0), 1.0))
        if message:
            self.status["message"] = message
        self._write()

    def finish(self, state: str, error: str | None = None) -> None:
        self._stop.set()
        self.status.update(state=state, finished=time.time())
        if state == "done":
            self.status["progress"] = 1.0
            self.status["message"] = "finished"
        if error:
            self.status["error"] = error
            self.status["message"] = error
        self._write()


_CURRENT: Reporter | None = None


def report_progress(done: float, total: float, message: str = "") -> None:
    """Called by long computations; a no-op outside a job worker."""
    if _CURRENT is not None and total:
        _CURRENT.progress(done / total, message or f"{done:g} / {total:g}")


def report_metrics(record: dict) -> None:
    """Append one epoch's numbers to the job's metrics.csv; a no-op outside a job worker."""
    if _CURRENT is None:
        return
    import csv

    path = _CURRENT.folder / "metrics.csv"
    fields = ["stage", "run", "epoch", "train_loss", "val_loss", "val_auc", "best_epoch",
              "elapsed_s", "events_per_s"]
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: record.get(k) for k in fields})


def run_worker(folder: str | Path) -> int:
    """Entry point of the worker process: run the job's command, record its outcome."""
    global _CURRENT
    from . import cli
    from .errors import DarkValleyError

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if not config:
        print(f"no readable config.json in {folder}", file=sys.stderr)
        return 2
    reporter = _CURRENT = Reporter(folder)

    def on_term(signum, frame):
        reporter.finish("cancelled")
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    argv = list(config["argv"])
    print(f"[darkvalley job {folder.name}] python -m darkvalley_core {' '.join(argv)}",
          flush=True)
    try:
        args = cli.build_parser().parse_args(argv)
        args.json = False
        result = cli.COMMANDS[args.command](args)
        write_json_atomic(folder / "result.json", {"ok": True, "command": args.command,
                                                   **(result or {})})
    except SystemExit as exc:
        reporter.finish("failed", f"invalid command line (exit {exc.code})")
        return 2
    except DarkValleyError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        reporter.finish("failed", str(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 -- recorded for the user, with the traceback in log
        import traceback

        traceback.print_exc()
        reporter.finish("failed", f"{type(exc).__name__}: {exc}")
        return 1
    reporter.finish("done")
    return 0
