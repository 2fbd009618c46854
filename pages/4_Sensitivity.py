"""Sensitivity page: the lecture's headline plot, Z after the network's cut against the injected
S/sqrt(B), from every finished training and sweep job (the job folders are the truth), with the
no-gain and 5 sigma lines, the learning threshold and the 5 sigma reach; Z against the
augmentation size +n; threshold and reach per benchmark; CSV, PNG and HTML exports."""

import io

import numpy as np
import pandas as pd
import streamlit as st

from app_ui import (multiselect_following, page_setup, poll_interval,
                    results_signature, runs_frame)
from darkvalley_core import jobs
from darkvalley_core.benchmarks import BENCHMARKS
from darkvalley_core.plots import (copies_figure, figure_html, figure_png,
                                   reach_figure, sensitivity_figure)
from darkvalley_core.scan import (METHOD_LABELS, copies_series, reach_rows, readoff_table,
                                  sensitivity_curves)

benchmark, preset_name, seed = page_setup("sensitivity")
st.title("Sensitivity")

running = [j for j in jobs.list_jobs() if j.kind in ("train", "scan") and
           j.state in jobs.ACTIVE_STATES]
signature = results_signature()


@st.fragment(run_every=poll_interval(bool(running)))
def watch_jobs():
    """While trainings run: show them, and redraw the page as soon as one finishes."""
    if results_signature() != signature:
        st.rerun()
    for job in running:
        st_ = job.status
        st.progress(float(st_.get("progress") or 0),
                    text=f"{job.config.get('label') or job.id} · {st_.get('state')} · "
                         f"{st_.get('message', '')}")


watch_jobs()

df = runs_frame()
if df is None or len(df) == 0:
    st.info("No finished training yet. Launch one on **Train** (a tiny preset run takes seconds); "
            "its points appear here as soon as it finishes.")
    st.stop()

# ---- choices
with st.sidebar:
    st.markdown("### Sensitivity")
    z_field = st.radio("Significance", ["z_ideal", "z_asimov"], key="sens-z",
                       format_func=lambda z: {"z_ideal": "ideal: (S/√B)·ε_S/√ε_B",
                                              "z_asimov": "Asimov, background-subtracted"}[z])
    eps_values = [float(e) for e in sorted(df["eps_b"].dropna().unique(), reverse=True)]
    # Default: 1 % if the test samples resolve it, else the tightest working point they do.
    resolved = [e for e in eps_values if df.loc[df["eps_b"] == e, "eps_s"].notna().any()]
    default = 0.01 if 0.01 in resolved else (resolved[-1] if resolved else eps_values[0])
    eps_b = st.selectbox("Working point ε_B", eps_values, key="sens-epsb",
                         index=eps_values.index(default),
                         format_func=lambda e: f"{100 * e:g} %" + ("" if e in resolved else
                                                                   " (not resolved)"))
    by_job = st.checkbox("One curve per job", value=False, key="sens-byjob",
                         help="off: repetitions of the same configuration are pooled across "
                              "jobs; on: each job's sweep is its own curve (overlay sweeps)")

all_benchmarks = [b for b in BENCHMARKS if b in set(df["benchmark"])]
f1, f2, f3 = st.columns([2, 2, 3])
bench_sel = f1.multiselect("Benchmarks", all_benchmarks,
                           default=[benchmark] if benchmark in all_benchmarks else
                           all_benchmarks[:1], key=f"sens-bench-{benchmark}")
with f2:
    methods_avail = [m for m in METHOD_LABELS if m in set(df["method"])]
    method_sel = multiselect_following("Methods", methods_avail, key="sens-methods",
                                       format_func=METHOD_LABELS.get)
with f3:  # a job that finishes while the page is open joins the selection
    job_ids = list(dict.fromkeys(df.sort_values("finished", ascending=False)["job"]))
    labels = dict(zip(df["job"], df["job_label"]))
    job_sel = multiselect_following(
        "Jobs", job_ids, key="sens-jobs",
        format_func=lambda j: f"{labels.get(j, j)} ({j})" if labels.get(j) != j else j)

sel = df[df["benchmark"].isin(bench_sel) & df["method"].isin(method_sel) &
         df["job"].isin(job_sel)]
curves, supervised = sensitivity_curves(sel, z_field, float(eps_b), by_job=by_job)
n_runs = len(sel[np.isclose(sel["eps_b"], float(eps_b))]) if len(sel) else 0
st.caption(f"{len(job_sel)} job(s) selected, {n_runs} trained network(s) at ε_B = "
           f"{100 * float(eps_b):g} %; mean ± standard deviation over the repetitions.")

tab_main, tab_copies, tab_bench, tab_data = st.tabs(
    ["Z vs injected S/√B", "Z vs augmentation +n", "Across benchmarks", "Data"])


def exports(fig, name: str, table: pd.DataFrame, key: str) -> None:
    c1, c2, c3 = st.columns(3)
    c1.download_button("CSV", table.to_csv(index=False).encode(), f"{name}.csv", "text/csv",
                       key=f"{key}-csv", width="stretch")
    c2.download_button("Interactive HTML", lambda: figure_html(fig).encode(), f"{name}.html",
                       "text/html", key=f"{key}-html", width="stretch")
    c3.download_button("PNG", lambda: figure_png(fig), f"{name}.png", "image/png",
                       key=f"{key}-png", width="stretch")


with tab_main:
    if not curves and not supervised:
        st.info("Nothing to draw for this selection and working point (a working point that "
                "the test sample cannot resolve has no value).")
    else:
        fig = sensitivity_figure(curves, z_field, float(eps_b), supervised)
        st.plotly_chart(fig, width="stretch", key="sens-main")
        table = pd.DataFrame(readoff_table(curves, text=True))
        if len(table):
            st.markdown("**Read-offs** in injected S/√B: the learning threshold (where the curve "
                        "rises above the no-gain line for good) and the 5σ reach; linear "
                        "interpolation between the scanned points, band from the mean ± std "
                        "curves.")
            st.dataframe(table, hide_index=True, width="stretch")
        readoffs = {r["curve"]: r for r in readoff_table(curves)}
        points = pd.DataFrame([{"curve": c["label"], "injection": x, "z_mean": m, "z_std": s,
                                "runs": n, "eps_b": float(eps_b), "z": z_field,
                                **{k: v for k, v in readoffs[c["label"]].items()
                                   if k not in ("curve", "points", "runs")}}
                               for c in curves for x, m, s, n in
                               zip(c["x"], c["mean"], c["std"], c["n"])])
        exports(fig, f"sensitivity-{z_field}-epsb{float(eps_b):g}", points, "main")

with tab_copies:
    injections = sorted(sel.loc[sel["method"] != "supervised", "injection"].dropna().unique())
    if not injections:
        st.info("No CWoLa or transfer-learning result in this selection.")
    else:
        inj = st.select_slider("Injected S/√B", injections, value=injections[
            len(injections) // 2], key="sens-copies-inj")
        series = copies_series(sel, z_field, float(eps_b), float(inj))
        if not series:
            st.info("No augmented training at this injection: sweep the augmentation and its "
                    "copies on **Train** (e.g. rotation with +1, +3, +5, +10).")
        else:
            figc = copies_figure(series, z_field, float(eps_b), float(inj))
            st.plotly_chart(figc, width="stretch", key="sens-copies")
            rows = pd.DataFrame([{"series": s["label"], "copies": x, "z_mean": m, "z_std": sd}
                                 for s in series for x, m, sd in
                                 zip(s["x"], s["mean"], s["std"])])
            exports(figc, f"z-vs-copies-inj{float(inj):g}", rows, "copies")

with tab_bench:
    # All benchmarks, whatever the filter above: the lecture's comparison across the 14 models.
    every = df[df["method"].isin(method_sel) & df["job"].isin(job_sel)]
    all_curves, _ = sensitivity_curves(every, z_field, float(eps_b), by_job=False)
    rows = reach_rows([c for c in all_curves if c["method"] in ("cwola", "transfer")])
    if not rows:
        st.info("No CWoLa or transfer-learning sweep yet: sweep the injections for several "
                "benchmarks, with CWoLa and transfer learning, on **Train**.")
    else:
        figb = reach_figure(rows, list(BENCHMARKS))
        st.plotly_chart(figb, width="stretch", key="sens-bench")
        rt = pd.DataFrame(rows)
        st.dataframe(rt.style.format(precision=2, na_rep="—"), hide_index=True,
                     width="stretch")
        st.caption("— : not reached within the scanned injections.")
        exports(figb, f"thresholds-per-benchmark-{z_field}-epsb{float(eps_b):g}", rt, "bench")

with tab_data:
    st.dataframe(sel, hide_index=True, width="stretch")
    buf = io.StringIO()
    sel.to_csv(buf, index=False)
    st.download_button("All runs of the selection (CSV)", buf.getvalue().encode(),
                       "sensitivity-runs.csv", "text/csv", key="data-csv")
