"""Streamlit helpers shared by the app's pages: the sidebar choices that follow the user from page
to page, cached loading of event files, and job progress widgets. Compute lives in
darkvalley_core; this module only draws."""

from __future__ import annotations

import os
import time

import streamlit as st

from darkvalley_core.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK
from darkvalley_core.presets import DEFAULT_PRESET, PRESETS

STATE_BENCHMARK = "dv_benchmark"
STATE_PRESET = "dv_preset"
STATE_SEED = "dv_seed"


def _remember(key: str, default, valid) -> str:
    if key not in st.session_state:
        from_url = st.query_params.get(key.removeprefix("dv_"))
        st.session_state[key] = from_url if from_url in valid else default
    return st.session_state[key]


def page_setup(title: str, icon: str = "🌌") -> tuple[str, str, int]:
    """Page config and the sidebar choices (benchmark, preset, seed) shared by every page.

    The choices live in ``st.session_state`` (they follow the user from page to page) and in
    the URL's query parameters (they survive a reload).
    """
    st.set_page_config(page_title=f"darkvalley · {title}", page_icon=icon, layout="wide")
    names = list(BENCHMARKS)
    bench = _remember(STATE_BENCHMARK, DEFAULT_BENCHMARK, names)
    preset = _remember(STATE_PRESET, DEFAULT_PRESET, list(PRESETS))
    with st.sidebar:
        st.markdown("### darkvalley")
        choice = st.selectbox("Benchmark", names, index=names.index(bench),
                              help="ID: rho_D -> pi_D pi_D, pi_D -> d d-bar (m_pi = Lambda). "
                                   "DD: rho_D, pi_D -> d d-bar (m_pi = 1.8 Lambda).")
        pchoice = st.selectbox("Sample preset", list(PRESETS), index=list(PRESETS).index(preset),
                               format_func=lambda p: f"{p}: {PRESETS[p].description}")
        seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1,
                               value=int(st.session_state.get(STATE_SEED, 0)), step=1)
    for key, value in ((STATE_BENCHMARK, choice), (STATE_PRESET, pchoice)):
        if st.session_state[key] != value:
            st.session_state[key] = value
    st.session_state[STATE_SEED] = int(seed)
    st.query_params["benchmark"] = choice
    st.query_params["preset"] = pchoice
    return choice, pchoice, int(seed)


@st.cache_data(show_spinner="Reading events…", max_entries=16)
def _load(path: str, mtime: float, constituents: bool):
    from darkvalley_core.storage import read_events

    return read_events(path, constituents=constituents)


def load_sample(path, constituents: bool = False):
    """An events file (cached on path and modification time), or None if it is missing."""
    if path is None or not os.path.exists(path):
        return None
    return _load(str(path), os.path.getmtime(path), constituents)


def sample_paths(benchmark: str, preset: str, seed: int):
    """(signal config, background config, signal path or None, background path or None)."""
    from darkvalley_core.generation import preset_configs

    sig, bkg = preset_configs(preset, benchmark, seed)
    sp, bp = sig.default_path(), bkg.default_path()
    return sig, bkg, (sp if sp.exists() else None), (bp if bp.exists() else None)


def job_progress(job) -> None:
    """One job's progress bar with its message and elapsed time."""
    st_ = job.status
    state = st_.get("state")
    elapsed = time.time() - float(st_.get("started") or time.time())
    frac = float(st_.get("progress") or 0.0)
    eta = ""
    if state == "running" and 0.02 < frac < 1:
        eta = f", about {elapsed * (1 - frac) / frac:.0f} s left"
    label = f"{job.config.get('label') or job.id} · {state} · {st_.get('message', '')}" \
            f" ({elapsed:.0f} s{eta})"
    st.progress(frac, text=label)
    if state in ("failed", "lost"):
        st.error(f"{job.id}: {st_.get('error') or state}")


# --------------------------------------------------------------------------------------------
# Jobs and results (pages 3-5). Nothing here keeps job state in the session: every call reads
# the job folders, so a new browser session sees exactly what the last one saw.
POLL_S = 1.5  # refresh period of the job widgets while something runs


def format_duration(seconds) -> str:
    if seconds is None or seconds != seconds:
        return ""
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def poll_interval(active: bool):
    """``run_every`` of a fragment: a period while something runs, else None (no polling)."""
    return POLL_S if active else None


def job_table_rows(job_list) -> list[dict]:
    """One row per job for st.dataframe (progress in 0..100)."""
    now = time.time()
    rows = []
    for job in job_list:
        st_ = job.status
        started = st_.get("started")
        end = st_.get("finished") or now
        rows.append({
            "job": job.id, "kind": job.kind, "label": job.config.get("label") or "",
            "state": st_.get("state"), "progress": round(100 * float(st_.get("progress") or 0)),
            "elapsed": format_duration(end - float(started)) if started else "",
            "ETA": format_duration(job.eta_s()),
            "message": (st_.get("error") or st_.get("message") or "")[:120],
            "created": time.strftime("%m-%d %H:%M:%S",
                                     time.localtime(job.created)) if job.created else ""})
    return rows


def job_controls(job, key: str = "") -> None:
    """Cancel (queued/running), run again (lost/failed/cancelled) and delete (finished)."""
    from darkvalley_core import jobs
    from darkvalley_core.errors import JobError

    state = job.state
    cols = st.columns(3)
    try:
        if state in jobs.ACTIVE_STATES:
            if cols[0].button("Cancel", key=f"cancel-{key}{job.id}", type="secondary"):
                jobs.cancel(job.id)
                st.rerun()
        else:
            if state in ("lost", "failed", "cancelled") and \
                    cols[0].button("Run again", key=f"retry-{key}{job.id}"):
                jobs.retry(job.id)
                st.rerun()
            if cols[1].button("Delete", key=f"delete-{key}{job.id}"):
                jobs.delete(job.id)
                st.rerun()
    except JobError as exc:
        st.error(str(exc))


def results_signature() -> tuple:
    """(job id, result.json modification time) of every job with a result: changes exactly when
    a job finishes, is run again or is deleted."""
    from darkvalley_core import jobs

    out = []
    for job in jobs.list_jobs():
        path = job.folder / "result.json"
        try:
            out.append((job.id, path.stat().st_mtime))
        except OSError:
            continue
    return tuple(sorted(out))


@st.cache_data(show_spinner=False, max_entries=8)
def _runs_frame(signature: tuple, cache: str):
    from darkvalley_core import jobs
    from darkvalley_core.scan import collect_runs

    found = []
    for job_id, _ in signature:
        try:
            found.append(jobs.get_job(job_id))
        except Exception:  # noqa: BLE001 -- deleted meanwhile
            continue
    return collect_runs(found)


def runs_frame():
    """Per-run results of every finished train and scan job (cached until one changes)."""
    from darkvalley_core.storage import cache_root

    return _runs_frame(results_signature(), str(cache_root()))


def multiselect_following(label: str, options: list, key: str, default: list | None = None,
                          **kwargs) -> list:
    """A multiselect whose choice survives reruns and that selects options which appear later
    (e.g. a job that just finished) instead of silently leaving them out."""
    seen_key = f"{key}__seen"
    seen = st.session_state.get(seen_key)
    if key in st.session_state and seen is not None:
        kept = [o for o in st.session_state[key] if o in options]
        st.session_state[key] = kept + [o for o in options if o not in seen and o not in kept]
    elif key not in st.session_state:
        st.session_state[key] = [o for o in (options if default is None else default)
                                 if o in options]
    else:
        st.session_state[key] = [o for o in st.session_state[key] if o in options]
    st.session_state[seen_key] = list(options)
    return st.multiselect(label, options, key=key, **kwargs)


@st.cache_data(show_spinner=False, ttl=60)
def measured_train_rate(device_type: str, cache: str):
    """This machine's measured training speed (scan.measured_train_rate), re-read each minute."""
    from darkvalley_core.scan import measured_train_rate as rate

    return rate(device_type)
