"""Jobs page: every background job (generation, training, sweeps) with its state, progress, ETA,
live loss curves and log; cancel, run again, delete. The job folders are the truth: a new
browser session, or the app restarted, shows the same jobs."""

import time

import pandas as pd
import streamlit as st

from app_ui import format_duration, job_controls, job_table_rows, page_setup, poll_interval
from darkvalley_core import jobs
from darkvalley_core.plots import loss_figure

page_setup("jobs")
st.title("Jobs")

all_jobs = jobs.list_jobs()
active = [j for j in all_jobs if j.state in jobs.ACTIVE_STATES]

if not all_jobs:
    st.info("No jobs yet. Generation (on **Benchmark**) and trainings and sweeps (on **Train**) "
            "run as background jobs, listed here; so do `python -m darkvalley_core jobs submit "
            "-- ...` command lines.")
    st.stop()

kinds = sorted({j.kind for j in all_jobs})
c1, c2 = st.columns([3, 2])
kind_sel = c1.multiselect("Kinds", kinds, default=kinds, key="jobs-kinds")
states = list(jobs.STATES)
state_sel = c2.multiselect("States", states, default=states, key="jobs-states")


def job_metrics(job) -> list[dict]:
    """Loss rows of a training job, or of a sweep's children (the ones with metrics)."""
    rows = job.metrics()
    children = job.folder / "children"
    if not rows and children.is_dir():
        files = sorted(children.glob("*.metrics.csv"), key=lambda p: p.stat().st_mtime)
        for path in files[-4:]:  # the most recent children
            name = path.name.removesuffix(".metrics.csv")
            rows += [{**r, "child": name.rsplit("-", 1)[0]} for r in jobs.read_metrics(path)]
    return rows


def details(job, key: str) -> None:
    st_ = job.status
    state = st_.get("state")
    started = st_.get("started")
    end = st_.get("finished") or time.time()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("State", state)
    c2.metric("Progress", f"{100 * float(st_.get('progress') or 0):.0f} %")
    c3.metric("Elapsed", format_duration(end - float(started)) if started else "—")
    c4.metric("ETA", format_duration(job.eta_s()) or "—")
    st.progress(float(st_.get("progress") or 0), text=st_.get("message", ""))
    if state in ("failed", "lost"):
        st.error(st_.get("error") or state)
    pos = jobs.queue_position(job) if state == "queued" else None
    if pos:
        st.caption(f"Queued: number {pos} in the queue ({st_.get('message', '')}).")
    st.code("python -m darkvalley_core " + " ".join(job.config.get("argv", [])),
            language="bash")
    rows = job_metrics(job)
    if rows:
        st.plotly_chart(loss_figure(rows), width="stretch", key=f"loss-{key}{job.id}")
    log = job.log_tail(25)
    if log:
        st.code(log, language="text")
    job_controls(job, key=key)
    res = job.result if state == "done" else None
    if res and res.get("command") in ("train", "scan"):
        st.caption("Its points are on **Sensitivity**.")
    elif res and res.get("command") == "generate":
        st.caption(f"Wrote {res.get('path')} ({res.get('n_selected', 0):,} selected events).")


@st.fragment(run_every=poll_interval(bool(active)))
def job_list():
    current = jobs.list_jobs()
    shown = [j for j in current if j.kind in kind_sel and j.state in state_sel]
    counts = pd.Series([j.state for j in current]).value_counts()
    cols = st.columns(5)
    for col, s in zip(cols, ("running", "queued", "done", "failed", "lost")):
        col.metric(s, int(counts.get(s, 0)))
    st.dataframe(pd.DataFrame(job_table_rows(shown)), hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn(
                     "progress", min_value=0, max_value=100, format="%d %%")})
    running_now = [j for j in shown if j.state in jobs.ACTIVE_STATES]
    for job in running_now:
        with st.expander(f"{job.config.get('label') or job.id} · {job.state}", expanded=True):
            details(job, key="live-")
    if active and not any(j.state in jobs.ACTIVE_STATES for j in current):
        st.rerun()  # everything finished: redraw without polling


job_list()

st.subheader("Inspect a job")
ids = [j.id for j in all_jobs if j.kind in kind_sel and j.state in state_sel]
if ids:
    labels = {j.id: j.config.get("label") for j in all_jobs}
    job_id = st.selectbox("Job", ids, key="jobs-inspect",
                          format_func=lambda i: f"{i} · {labels[i]}" if labels.get(i) else i)
    try:
        details(jobs.get_job(job_id), key="inspect-")
    except Exception as exc:  # noqa: BLE001 -- deleted meanwhile
        st.warning(f"{job_id}: {exc}")
