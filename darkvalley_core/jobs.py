"""Background jobs: every long task (generation, training, sweeps) runs in a fresh interpreter.

A job is a folder ``cache/jobs/<id>/``; the folder, not any browser session, is the truth::

    config.json   what to run: {"kind", "argv" (a darkvalley command line), "key", "label",
                  "created", "resources": {"gpu", "cores"}}
    status.json   {"state", "progress" (0..1), "message", "heartbeat" (unix time), "pid",
                   "pid_start", "host", "started", "finished", "error", "attempt"};
                   always written atomically (temporary file, then os.replace)
    metrics.csv   per-epoch numbers appended by training jobs (one whole line per write)
    log.txt       the worker's stdout and stderr
    result.json   the command's JSON result, written atomically when it succeeds
    children/     a sweep's finished children (see scan.py)

States: queued -> running -> done | failed | cancelled, and ``lost`` for a queued or running job
whose worker process is gone (checked by pid and the process's start time, so a reused pid is not
mistaken for the worker; from another host, by a heartbeat older than ``LOST_AFTER_S``). A lost
job is recorded as lost in its status file the first time it is seen; what it had written
(metrics, a sweep's finished children) stays, and ``retry`` runs it again in the same folder.

Queue without a daemon. ``submit`` starts ``python -m darkvalley_core jobs worker <folder>`` at
once, in its own session and process group (``start_new_session``), so the job outlives the
Streamlit script run, page reloads, the browser tab and a restart of the app. The worker first
waits its turn: under a lock file (``jobs/.scheduler.lock``) it looks at the other job folders
and starts only when its resources are free after those of every older queued job are set aside
(first come, first served, no starvation; the cores of a job that waits for the busy GPU are not
set aside, so CPU jobs can use them meanwhile). Resources are a number of CPU cores and, for a job
that trains on a GPU, the GPU, which it also holds through an exclusive ``flock`` on
``jobs/.gpu.lock`` for its whole life (the kernel drops the lock if the worker dies). Because a
job starts only when all its cores are free, its thread counts (``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, torch's intra-op threads) are set to its cores when
it is launched: concurrent CPU jobs share the machine's cores and never oversubscribe them.
The machine's core count is ``os.cpu_count()``, or ``DARKVALLEY_CORES`` if set.

Cancel signals the job's own session (its process group and anything its worker started:
joblib/loky workers, a dask LocalCluster) and nothing else: SIGTERM, then SIGKILL after a grace
period, until no process of the job is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import JobError
from .storage import cache_root, config_key, write_json_atomic

HEARTBEAT_S = 2.0
LOST_AFTER_S = 5 * HEARTBEAT_S  # heartbeat age that marks a job of another host as lost
STARTUP_GRACE_S = 30.0  # a queued job may have no pid yet for this long after its creation
QUEUE_POLL_S = 0.5  # how often a queued worker looks whether its turn has come
CANCEL_GRACE_S = 5.0  # SIGTERM -> SIGKILL
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("done", "failed", "cancelled", "lost")
STATES = ACTIVE_STATES + FINAL_STATES
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "DARKVALLEY_THREADS")
METRIC_FIELDS = ["stage", "run", "epoch", "train_loss", "val_loss", "val_auc", "best_epoch",
                 "elapsed_s", "events_per_s"]
_REPO = Path(__file__).resolve().parent.parent


def jobs_dir() -> Path:
    return cache_root() / "jobs"


def total_cores() -> int:
    """Cores the scheduler hands out: ``DARKVALLEY_CORES`` if set, else ``os.cpu_count()``."""
    env = os.environ.get("DARKVALLEY_CORES", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise JobError(f"DARKVALLEY_CORES must be a positive integer, got {env!r}") from None
    return max(1, os.cpu_count() or 1)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------------------------
# Processes.
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_start(pid: int | None) -> str | None:
    """The process's start time (clock ticks since boot), which with the pid names it uniquely."""
    if not pid:
        return None
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    # A zombie (finished, not yet reaped by its parent) is not alive.
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"


def session_processes(sid: int | None) -> list[int]:
    """Live processes of the session ``sid`` (a job's worker and everything it started)."""
    if not sid:
        return []
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return [sid] if _pid_alive(sid) else []
    for name in names:
        if not name.isdigit():
            continue
        fields = _proc_stat(int(name))
        # fields[3] is the session id (field 6 of /proc/<pid>/stat)
        if fields and len(fields) > 3 and fields[3] == str(sid) and fields[0] != "Z":
            out.append(int(name))
    return out


def _signal_session(sid: int, sig: int) -> None:
    try:
        os.killpg(sid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in session_processes(sid):  # members that moved to another process group
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop_session(sid: int, grace: float = CANCEL_GRACE_S) -> bool:
    """SIGTERM every process of the session, then SIGKILL what is left; True if none is left."""
    _signal_session(sid, signal.SIGTERM)
    deadline = time.time() + grace
    while session_processes(sid) and time.time() < deadline:
        time.sleep(0.05)
    if session_processes(sid):
        _signal_session(sid, signal.SIGKILL)
        deadline = time.time() + 5
        while session_processes(sid) and time.time() < deadline:
            time.sleep(0.05)
    return not session_processes(sid)


# --------------------------------------------------------------------------------------------
# Reading jobs.
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
        st = _read_json(self.folder / "status.json")
        if st is None:  # between the creation of the folder and the launch of the worker
            return {"state": "queued", "progress": 0.0, "message": "starting",
                    "heartbeat": self.config.get("created", 0)}
        return st

    def _is_lost(self, st: dict) -> tuple[bool, bool]:
        """(lost, certain): certain when decided from the pid on this host."""
        pid = st.get("pid")
        now = time.time()
        host = st.get("host")
        if host and host != socket.gethostname():
            return now - float(st.get("heartbeat") or 0) > LOST_AFTER_S, False
        if not pid:
            created = float(self.config.get("created") or 0)
            return now - created > STARTUP_GRACE_S, True
        if not _pid_alive(pid):
            return True, True
        started = st.get("pid_start")
        if started and _proc_start(pid) not in (None, started):
            return True, True  # the pid now belongs to another process
        return False, True

    @property
    def status(self) -> dict:
        """The status, with a queued or running job whose worker is gone reported as ``lost``
        (and recorded so in status.json)."""
        st = self.raw_status
        if st.get("state") not in ACTIVE_STATES:
            return st
        lost, certain = self._is_lost(st)
        if not lost:
            return st
        error = st.get("error") or ("the worker process stopped before the job started"
                                    if st.get("state") == "queued" else
                                    "the worker process stopped without finishing")
        lost_st = {**st, "state": "lost", "error": error, "message": error,
                   "finished": st.get("finished") or time.time()}
        if certain:
            # Re-read: a worker that finished just before it exited has written its final state.
            again = self.raw_status
            if again.get("state") in ACTIVE_STATES and again.get("pid") == st.get("pid"):
                try:
                    write_json_atomic(self.folder / "status.json", lost_st)
                except Exception:  # noqa: BLE001 -- a read-only cache still reads as lost
                    pass
            else:
                return again
        return lost_st

    @property
    def state(self) -> str:
        return self.status.get("state", "unknown")

    @property
    def kind(self) -> str:
        return self.config.get("kind", "")

    @property
    def result(self) -> dict | None:
        return _read_json(self.folder / "result.json")

    @property
    def created(self) -> float:
        return float(self.config.get("created") or 0)

    def metrics(self) -> list[dict]:
        """Rows of metrics.csv (numbers as floats; a torn last line is skipped)."""
        return read_metrics(self.folder / "metrics.csv")

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

    def eta_s(self) -> float | None:
        """Seconds left, from the progress so far (None when it cannot be told yet)."""
        st = self.status
        if st.get("state") != "running" or not st.get("started"):
            return None
        frac = float(st.get("progress") or 0.0)
        if not 0.02 < frac < 1:
            return None
        elapsed = time.time() - float(st["started"])
        return elapsed * (1 - frac) / frac

    def to_dict(self) -> dict:
        st = self.status
        cfg = self.config
        return {"id": self.id, "state": st.get("state"),
                "progress": float(st.get("progress") or 0),
                "message": st.get("message", ""), "argv": cfg.get("argv", []),
                "kind": cfg.get("kind"), "label": cfg.get("label", ""),
                "created": cfg.get("created"), "started": st.get("started"),
                "finished": st.get("finished"), "heartbeat": st.get("heartbeat"),
                "pid": st.get("pid"), "error": st.get("error"),
                "resources": cfg.get("resources"), "attempt": st.get("attempt", 1),
                "eta_s": self.eta_s(), "folder": str(self.folder)}


def read_metrics(path: Path) -> list[dict]:
    import csv

    try:
        with open(path, newline="") as f:
            text = f.read()
    except OSError:
        return []
    if not text.endswith("\n"):  # a worker killed in the middle of a line
        text = text[: text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(text.splitlines()):
        out = {}
        for k, v in row.items():
            if k is None:
                continue
            try:
                out[k] = float(v) if v not in ("", None) else None
            except ValueError:
                out[k] = v
        rows.append(out)
    return rows


def list_jobs() -> list[Job]:
    """All jobs, newest first."""
    folder = jobs_dir()
    if not folder.is_dir():
        return []
    jobs = [Job(p) for p in folder.iterdir() if (p / "config.json").exists()]
    return sorted(jobs, key=lambda j: (j.created, j.id), reverse=True)


def get_job(job_id: str) -> Job:
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise JobError(f"not a job id: {job_id!r}")
    folder = jobs_dir() / job_id
    if not (folder / "config.json").exists():
        raise JobError(f"no job {job_id!r} in {jobs_dir()}")
    return Job(folder)


def find_active(key: str) -> Job | None:
    for job in list_jobs():
        if job.config.get("key") == key and job.state in ACTIVE_STATES:
            return job
    return None


# --------------------------------------------------------------------------------------------
# Submitting.
@contextmanager
def _scheduler_lock():
    """Serialises queue decisions and submissions across processes (flock; none on Windows)."""
    folder = jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".scheduler.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def gpu_present() -> bool:
    """A CUDA GPU usable by torch, judged without importing torch (the app must stay fast): an
    NVIDIA driver, a torch build that is not CPU-only, and CUDA_VISIBLE_DEVICES not empty."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if not (os.path.exists("/dev/nvidiactl") or os.path.isdir("/proc/driver/nvidia/gpus")):
        return False
    try:
        from importlib.metadata import version

        return "+cpu" not in version("torch")
    except Exception:  # noqa: BLE001
        return False


def _normalised(argv: list[str]):
    """The parsed command line (for the dedupe key and the resources), or raise JobError."""
    from . import cli

    if argv[0] == "jobs":
        raise JobError("a job cannot run the 'jobs' command")
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = cli.build_parser().parse_args(list(argv))
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise JobError(f"invalid command line {' '.join(argv)!r}: "
                       f"{msg[-1] if msg else 'see --help'}") from None
    return args


def resources_for(args) -> dict:
    """What a parsed command needs from this machine: {"gpu": bool, "cores": int}."""
    n = total_cores()
    command = args.command
    if command in ("train", "scan"):
        device = getattr(args, "device", "auto")
        remote = command == "scan" and getattr(args, "backend", "loky") in ("dask", "ray") \
            and getattr(args, "scheduler", None) not in (None, "", "local")
        if remote:  # the work runs on the cluster; this worker only waits for it
            return {"gpu": False, "cores": 1}
        gpu = device in ("cuda", "mps") or (device == "auto" and gpu_present())
        return {"gpu": gpu, "cores": 1 if gpu else n}
    if command == "generate":
        return {"gpu": False, "cores": max(1, min(int(getattr(args, "jobs", 1) or 1), n))}
    return {"gpu": False, "cores": 1}


def _job_key(args) -> str:
    d = {k: v for k, v in vars(args).items() if k not in ("json", "quiet")}
    return config_key(d)


def _reap(proc: subprocess.Popen) -> None:
    """Wait for the worker in a thread, so a finished worker does not stay a zombie of the app."""
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()


def _launch(folder: Path, cores: int, attempt: int) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in THREAD_ENV:
        env[name] = str(cores)
    with open(folder / "log.txt", "ab") as log:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "darkvalley_core", "jobs", "worker", str(folder)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=_REPO, env=env)
        except OSError as exc:
            write_json_atomic(folder / "status.json", {"state": "failed", "error": str(exc),
                                                       "message": str(exc),
                                                       "finished": time.time()})
            raise JobError(f"could not start the job: {exc}") from exc
    _reap(proc)
    # The worker waits for this file before it writes anything: no lost update.
    write_json_atomic(folder / "status.json", {
        "state": "queued", "progress": 0.0, "message": "waiting for its turn",
        "heartbeat": time.time(), "pid": proc.pid, "pid_start": _proc_start(proc.pid),
        "host": socket.gethostname(), "attempt": attempt})


def submit(argv: list[str], kind: str | None = None, label: str = "",
           cores: int | None = None, gpu: bool | None = None) -> Job:
    """Queue ``python -m darkvalley_core <argv>`` as a background job and return its handle.

    The command line is checked at once (an invalid one raises JobError and creates nothing).
    A submission identical to a queued or running job (same parsed options, in any order)
    returns that job instead of a new one. ``cores`` / ``gpu`` override what the job asks
    the scheduler for (default: ``resources_for`` the command).
    """
    argv = [a for a in argv if a != "--"]
    if not argv:
        raise JobError("nothing to run: the job's command line is empty")
    args = _normalised(argv)
    kind = kind or args.command
    key = _job_key(args)
    res = resources_for(args)
    if cores is not None:
        if cores < 1:
            raise JobError(f"a job needs at least one core, got {cores}")
        res["cores"] = int(cores)
    if gpu is not None:
        res["gpu"] = bool(gpu)
    res["cores"] = min(res["cores"], total_cores())
    with _scheduler_lock():
        existing = find_active(key)
        if existing is not None:
            return existing
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{kind}-{key[:6]}"
        folder = jobs_dir() / base
        n = 1
        while folder.exists():
            n += 1
            folder = jobs_dir() / f"{base}-{n}"
        folder.mkdir(parents=True)
        write_json_atomic(folder / "config.json", {
            "kind": kind, "argv": list(argv), "key": key, "label": label,
            "created": time.time(), "resources": res})
    _launch(folder, res["cores"], attempt=1)
    return Job(folder)


def retry(job_id: str) -> Job:
    """Run a lost, failed or cancelled job again in its folder (a sweep keeps its finished
    children); the previous attempt's metrics are kept as metrics-attempt<N>.csv."""
    job = get_job(job_id)
    st = job.status
    if st.get("state") not in ("lost", "failed", "cancelled"):
        raise JobError(f"job {job_id} is {st.get('state')}; only a lost, failed or cancelled "
                       "job can be run again")
    cfg = job.config
    with _scheduler_lock():
        other = find_active(cfg.get("key", ""))
        if other is not None:
            raise JobError(f"the same command is already {other.state} as job {other.id}")
        attempt = int(st.get("attempt") or 1)
        _stop_leftovers(st)
        metrics = job.folder / "metrics.csv"
        if metrics.exists():
            os.replace(metrics, job.folder / f"metrics-attempt{attempt}.csv")
        (job.folder / "result.json").unlink(missing_ok=True)
        with open(job.folder / "log.txt", "a") as log:
            log.write(f"\n[darkvalley] attempt {attempt + 1} ({time.strftime('%c')})\n")
        write_json_atomic(job.folder / "status.json", {
            "state": "queued", "progress": 0.0, "message": "waiting for its turn",
            "heartbeat": time.time(), "attempt": attempt + 1})
    _launch(job.folder, int((cfg.get("resources") or {}).get("cores", 1)), attempt + 1)
    return Job(job.folder)


def cancel(job_id: str) -> Job:
    """Stop a job's processes (its session, and only it) and mark the job cancelled."""
    job = get_job(job_id)
    st = job.raw_status
    if st.get("state") not in ACTIVE_STATES:
        return job
    pid = st.get("pid")
    same_host = not st.get("host") or st.get("host") == socket.gethostname()
    if pid and same_host and not job._is_lost(st)[0]:
        _stop_session(int(pid))
    final = job.raw_status
    if final.get("state") in ACTIVE_STATES or final.get("state") == "cancelled":
        write_json_atomic(job.folder / "status.json",
                          {**final, "state": "cancelled",
                           "finished": final.get("finished") or time.time(),
                           "message": "cancelled by the user"})
    return job


def delete(job_id: str) -> None:
    """Remove a finished job's folder (and any process a lost job left behind)."""
    job = get_job(job_id)
    st = job.status
    if st.get("state") in ACTIVE_STATES:
        raise JobError(f"job {job_id} is {st.get('state')}; cancel it before deleting it")
    _stop_leftovers(st)
    shutil.rmtree(job.folder, ignore_errors=True)


def _stop_leftovers(st: dict) -> None:
    """Stop what a finished or lost job's worker left in its session (e.g. loky workers of a
    worker killed with SIGKILL). Linux does not hand out a pid still used as a session id, so
    while a leftover lives the id names that session; a pid reused by a new process with
    another start time means there is nothing of the job left."""
    pid = st.get("pid")
    if not pid or (st.get("host") and st.get("host") != socket.gethostname()):
        return
    started = _proc_start(int(pid))
    if started is not None and started != st.get("pid_start"):
        return
    if session_processes(int(pid)):
        _stop_session(int(pid), grace=1.0)


def wait(job_id: str, timeout: float = 600.0, poll: float = 0.2) -> Job:
    """Block until the job is in a final state (for scripts and tests); JobError on timeout."""
    job = get_job(job_id)
    deadline = time.time() + timeout
    while job.state in ACTIVE_STATES:
        if time.time() > deadline:
            raise JobError(f"job {job_id} still {job.state} after {timeout:g} s")
        time.sleep(poll)
    return job


def queue_position(job: Job) -> int | None:
    """1 + the number of queued jobs created before ``job`` (None unless it is queued)."""
    if job.state != "queued":
        return None
    ahead = [j for j in list_jobs() if j.state == "queued" and
             (j.created, j.id) < (job.created, job.id)]
    return len(ahead) + 1


# --------------------------------------------------------------------------------------------
# Worker side.
_GPU_LOCK_FD = None


def _take_gpu_lock() -> bool:
    global _GPU_LOCK_FD
    if _GPU_LOCK_FD is not None:
        return True
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return True
    f = open(jobs_dir() / ".gpu.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _GPU_LOCK_FD = f  # held until the process exits
    return True


def _try_grant(me: Job, request: dict) -> tuple[bool, str]:
    """Whether ``me`` may start now; if not, why (for its status message). Call under the
    scheduler lock."""
    free_cores = total_cores()
    gpu_free = True
    holders = []
    waiting = []
    for job in list_jobs():
        if job.id == me.id:
            continue
        st = job.status
        res = job.config.get("resources") or {"gpu": False, "cores": 1}
        if st.get("state") == "running":
            free_cores -= int(res.get("cores", 1))
            gpu_free &= not res.get("gpu")
            holders.append(job.id)
        elif st.get("state") == "queued" and (job.created, job.id) < (me.created, me.id):
            waiting.append((job, res))
    # Set aside the resources of every older queued job, first come, first served -- except
    # the cores of one that waits for a busy GPU: CPU jobs may use them meanwhile (once the GPU
    # is free, that job's cores are set aside too, so it cannot be starved).
    for _job, res in waiting:
        if res.get("gpu") and not gpu_free:
            continue
        free_cores -= int(res.get("cores", 1))
        gpu_free &= not res.get("gpu")
    need = int(request.get("cores", 1))
    if request.get("gpu") and not gpu_free:
        return False, "waiting for the GPU" + (f" ({len(waiting)} job(s) ahead)" if waiting
                                               else "")
    if need > free_cores:
        why = f"waiting for {need} core(s): {len(holders)} job(s) running"
        if waiting:
            why += f", {len(waiting)} queued ahead"
        return False, why
    if request.get("gpu") and not _take_gpu_lock():
        return False, "waiting for the GPU (held by another process)"
    return True, ""


class Reporter:
    """Writes the worker's status file: progress from the command, heartbeat from a thread."""

    def __init__(self, folder: Path, state: str = "running"):
        self.folder = Path(folder)
        self.lock = threading.RLock()  # re-entered by the SIGTERM handler in the main thread
        deadline = time.time() + 10
        while not (self.folder / "status.json").exists() and time.time() < deadline:
            time.sleep(0.02)  # the launcher writes it right after starting this process
        prev = _read_json(self.folder / "status.json") or {}
        self.status = {**prev, "state": state, "pid": os.getpid(),
                       "pid_start": _proc_start(os.getpid()), "host": socket.gethostname(),
                       "progress": 0.0, "error": None,
                       "message": "running" if state == "running" else
                       prev.get("message", "waiting for its turn")}
        self.status.pop("finished", None)
        if state == "running":
            self.status["started"] = time.time()
        else:
            self.status.pop("started", None)
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
            except Exception:  # noqa: BLE001 -- a full disk must not kill the computation
                pass

    def update(self, **fields) -> None:
        with self.lock:
            self.status.update(fields)
            self._write()

    def start(self, threads: int) -> None:
        self.update(state="running", started=time.time(), message="running", threads=threads)

    def progress(self, fraction: float, message: str = "") -> None:
        with self.lock:
            self.status["progress"] = float(min(max(fraction, 0.0), 1.0))
            if message:
                self.status["message"] = message
            self._write()

    def finish(self, state: str, error: str | None = None) -> None:
        self._stop.set()
        with self.lock:
            self.status.update(state=state, finished=time.time())
            if state == "done":
                self.status["progress"] = 1.0
                self.status["message"] = "finished"
            elif state == "cancelled":
                self.status["message"] = "cancelled by the user"
            if error:
                self.status["error"] = error
                self.status["message"] = error
            self._write()


_CURRENT: Reporter | None = None


def current_folder() -> Path | None:
    """The folder of the job this process runs, or None outside a job worker."""
    return _CURRENT.folder if _CURRENT is not None else None


def report_progress(done: float, total: float, message: str = "") -> None:
    """Called by long computations; a no-op outside a job worker."""
    if _CURRENT is not None and total:
        _CURRENT.progress(done / total, message or f"{done:g} / {total:g}")


def append_metrics(path: Path, record: dict) -> None:
    """Append one epoch's numbers to a metrics CSV as one whole line (a single write in append
    mode), so a worker killed at any moment leaves at most a torn last line, which readers skip."""
    import csv
    import io

    path = Path(path)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            writer.writeheader()
        writer.writerow({k: record.get(k) for k in METRIC_FIELDS})
        os.write(fd, buf.getvalue().encode())
    finally:
        os.close(fd)


def report_metrics(record: dict) -> None:
    """Append one epoch's numbers to the job's metrics.csv; a no-op outside a job worker."""
    if _CURRENT is None:
        return
    append_metrics(_CURRENT.folder / "metrics.csv", record)


def run_worker(folder: str | Path) -> int:
    """Entry point of the worker process: wait for its turn, run the job's command, record its
    outcome."""
    global _CURRENT
    from . import cli
    from .errors import DarkValleyError

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if not config:
        print(f"no readable config.json in {folder}", file=sys.stderr)
        return 2
    reporter = _CURRENT = Reporter(folder, state="queued")

    def on_term(signum, frame):
        reporter.finish("cancelled")
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    me = Job(folder)
    request = config.get("resources") or {"gpu": False, "cores": 1}
    last_reason = None
    while True:
        with _scheduler_lock():
            ok, reason = _try_grant(me, request)
            if ok:
                reporter.start(int(request.get("cores", 1)))
                break
        if reason != last_reason:
            reporter.update(message=reason)
            last_reason = reason
        time.sleep(QUEUE_POLL_S)
    argv = list(config["argv"])
    print(f"[darkvalley job {folder.name}] python -m darkvalley_core {' '.join(argv)} "
          f"({request.get('cores', 1)} core(s){', GPU' if request.get('gpu') else ''})",
          flush=True)
    try:
        args = cli.build_parser().parse_args(argv)
        args.json = False
        result = cli.COMMANDS[args.command](args)
        write_json_atomic(folder / "result.json", {"ok": True, "command": args.command,
                                                   **cli._finite(result or {})})
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
