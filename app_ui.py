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
