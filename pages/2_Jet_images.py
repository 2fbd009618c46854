"""Jet images page: one event's two jet images (browsable, with rotation and pT smearing beside
the original) and the average images of signal and background with their difference."""

import os

import numpy as np
import streamlit as st

from app_ui import page_setup, sample_paths
from darkvalley_core.augment import SMEAR_FORMULAS, augmented_images
from darkvalley_core.benchmarks import get_benchmark
from darkvalley_core.errors import DarkValleyError
from darkvalley_core.image_plots import (augmentation_figure, average_figure, event_figure,
                                         figure_html, mean_radius, radial_figure)
from darkvalley_core.images import OFFICIAL_RESOLUTIONS, select_events
from darkvalley_core.jets import REGION_NAMES

EVENT_KEY = "img_event"
MAX_COPIES = 8
AVERAGE_CHOICES = ["all", 1000, 5000, 20000]

benchmark, preset_name, seed = page_setup("jet images")
bench = get_benchmark(benchmark)

st.title(f"Jet images · {bench.name}")
st.caption(
    "Each of the two leading jets is moved to its own frame: φ wrapped, the pT-weighted centroid "
    "at (0, 0), the principal axis along η′ (horizontal), the brightest quadrant top right; "
    "then pixel = summed constituent pT over η′, φ′ ∈ [−1, 1]. These are the CNN's inputs "
    "(arXiv:2312.06152, augmentations arXiv:2412.00198)."
)

sig_cfg, bkg_cfg, sig_path, bkg_path = sample_paths(benchmark, preset_name, seed)
if sig_path is None and bkg_path is None:
    st.info(f"No events yet for {bench.name} with the {preset_name} preset. Open **Benchmark** in "
            "the sidebar and press **Generate**; the jet images appear here when the samples "
            "are ready.")
    st.stop()


@st.cache_resource(max_entries=4, show_spinner="Reading events…")
def _sample(path: str, mtime: float):
    """The events file with its constituents, shared read-only by every rerun (no copy)."""
    from darkvalley_core.storage import read_events

    return read_events(path)


@st.cache_data(max_entries=32, show_spinner="Averaging jet images…")
def _average(path: str, mtime: float, resolution: int, normalise: str, max_events):
    from darkvalley_core.image_plots import average_images

    c = _sample(path, mtime).constituents
    return average_images(c["pt"], c["eta"], c["phi"], c["offsets"], resolution, normalise,
                          max_events)


@st.cache_data(max_entries=64, show_spinner=False)
def _event_images(path: str, mtime: float, event: int, resolution: int, normalise: str,
                  method: str, copies: int, max_angle: float, formula: str, aug_seed: int):
    """Copy 0 (the original) and copies 1..n of one event: (copies + 1, 2, res, res)."""
    c = _sample(path, mtime).constituents
    rows = np.full(copies + 1, event, dtype=np.int64)
    pt, eta, phi, off = select_events(c["pt"], c["eta"], c["phi"], c["offsets"], rows)
    return augmented_images(pt, eta, phi, off, rows, np.arange(copies + 1), method=method,
                            resolution=resolution, seed=aug_seed, normalise=normalise,
                            formula=formula, max_angle=max_angle)


def _load(path):
    """(sample, mtime) of a file, or (None, None) with an error shown when it is unreadable."""
    if path is None:
        return None, None
    try:
        mtime = os.path.getmtime(path)
        return _sample(str(path), mtime), mtime
    except (DarkValleyError, OSError) as exc:
        st.error(f"{exc} — regenerate it on the Benchmark page.")
        return None, None


samples = {}
for name, path in (("signal", sig_path), ("background", bkg_path)):
    sample, mtime = _load(path)
    if sample is not None:
        samples[name] = (str(path), mtime, sample)
if not samples:
    st.stop()
labels = {"signal": bench.name, "background": "QCD dijets"}
missing = [labels[n] for n in ("signal", "background") if n not in samples]
if missing:
    st.info(f"{' and '.join(missing)}: not generated yet for the {preset_name} preset; generate "
            "it on the Benchmark page to compare signal with background.")

c1, c2, c3 = st.columns([2, 2, 1])
with c1:
    resolution = st.radio("Resolution", OFFICIAL_RESOLUTIONS, horizontal=True,
                          format_func=lambda r: f"{r}×{r}", key="img_resolution",
                          help="25×25 trained best in the papers and is the default")
with c2:
    normalise = st.radio("Pixel values", ["raw", "event"], horizontal=True, key="img_normalise",
                         format_func=lambda n: {"raw": "raw pT [GeV]",
                                                "event": "event-normalised (EN)"}[n],
                         help="EN: both images of an event standardised with the mean and "
                              "standard deviation of its pixels (curbs mass sculpting)")
with c3:
    log = st.checkbox("log colour scale", value=True, key="img_log")


def _download(fig, name: str, key: str) -> None:
    st.download_button("Download figure (interactive HTML)", data=lambda: figure_html(fig),
                       file_name=f"darkvalley-{bench.name}-{name}.html", mime="text/html",
                       on_click="ignore", key=key,
                       help="PNG: use the camera icon of the figure's toolbar")


def _step(delta: int, n: int) -> None:
    st.session_state[EVENT_KEY] = int(np.clip(st.session_state.get(EVENT_KEY, 0) + delta, 0,
                                              n - 1))


@st.fragment
def event_browser():
    st.subheader("One event")
    left, right = st.columns([1, 3])
    with left:
        source = st.radio("Sample", list(samples), format_func=lambda n: labels[n],
                          horizontal=True, key="img_source")
        path, mtime, sample = samples[source]
        n = len(sample)
        if not 0 <= st.session_state.get(EVENT_KEY, 0) < n:
            st.session_state[EVENT_KEY] = min(max(0, st.session_state.get(EVENT_KEY, 0)), n - 1)
        event = st.number_input(f"Event (0 – {n - 1})", min_value=0, max_value=n - 1, step=1,
                                key=EVENT_KEY)
        b1, b2 = st.columns(2)
        b1.button("◀ previous", on_click=_step, args=(-1, n), disabled=event <= 0,
                  width="stretch")
        b2.button("next ▶", on_click=_step, args=(1, n), disabled=event >= n - 1,
                  width="stretch")
        ev = sample.events
        st.caption(
            f"Event {event} of {n} ({labels[source]}): m_jj = {ev['mjj'][event]:,.0f} GeV, "
            f"region {REGION_NAMES.get(int(ev['region'][event]), '?')}; jet pT "
            f"{ev['jet_pt'][event, 0]:,.0f} / {ev['jet_pt'][event, 1]:,.0f} GeV, jet mass "
            f"{ev['jet_m'][event, 0]:,.0f} / {ev['jet_m'][event, 1]:,.0f} GeV, "
            f"{ev['n_constituents'][event, 0]} / {ev['n_constituents'][event, 1]} constituents")

        st.markdown("**Augmentation**")
        rotate = st.checkbox("Jet rotation", key="img_rotate",
                             help="each jet turned about its centre by its own random angle")
        max_deg = 180
        if rotate:
            max_deg = st.slider("Rotation range ± [degrees]", 0, 180, 180, step=5,
                                key="img_max_angle", help="angle uniform in [−a, a]; the "
                                "authors saw the gain grow with the range")
        smear = st.checkbox("pT smearing", key="img_smear",
                            help="every constituent pT' ~ N(pT, f(pT)), then the jet is "
                                 "preprocessed again")
        formula = "lecture"
        if smear:
            formula = st.radio("Smearing width f(pT)", SMEAR_FORMULAS, key="img_formula",
                               format_func=lambda f: {
                                   "lecture": "lecture: √(0.052 pT² + 1.502 pT)",
                                   "delphes": "Delphes: √(0.05² pT² + 1.50² pT)"}[f])
        method = {(False, False): "none", (True, False): "rotate", (False, True): "smear",
                  (True, True): "combined"}[(rotate, smear)]
        copies = 0
        aug_seed = 0
        if method != "none":
            copies = st.number_input("Augmented copies", 1, MAX_COPIES, 3, key="img_copies")
            aug_seed = st.number_input("Augmentation seed", 0, 2**31 - 1, 0, key="img_aug_seed",
                                       help="copy k of event e depends only on (seed, e, k)")
    with right:
        imgs = _event_images(path, mtime, int(event), int(resolution), normalise, method,
                             int(copies), float(np.deg2rad(max_deg)), formula, int(aug_seed))
        if method == "none":
            fig = event_figure(imgs[0], log=log, normalise=normalise)
            st.plotly_chart(fig, width="stretch", key="img_event_fig")
            _download(fig, f"{source}-event{event}-{resolution}", "img_event_dl")
        else:
            what = {"rotate": f"rotation within ±{max_deg}°",
                    "smear": f"pT smearing ({formula})",
                    "combined": f"pT smearing ({formula}) then rotation within ±{max_deg}°"}
            fig = augmentation_figure(imgs, log=log, normalise=normalise)
            st.plotly_chart(fig, width="stretch", key="img_aug_fig")
            st.caption(f"Original and {copies} augmented copies of event {event} "
                       f"({what[method]}, augmentation seed {aug_seed}). Copy 0 is exactly the "
                       "network's input image; the training set of a '+n' study holds the "
                       "original and n such copies of every training event.")
            _download(fig, f"{source}-event{event}-{method}{copies}-{resolution}", "img_aug_dl")


@st.fragment
def averages():
    st.subheader("Average images")
    a1, a2 = st.columns([1, 3])
    with a1:
        max_events = st.selectbox("Events averaged (per sample)", AVERAGE_CHOICES,
                                  key="img_avg_events",
                                  format_func=lambda v: "all" if v == "all" else f"first {v:,}")
    limit = None if max_events == "all" else int(max_events)
    avg, used = {}, {}
    for name, (path, mtime, _) in samples.items():
        avg[name], used[name] = _average(path, mtime, int(resolution), normalise, limit)
    fig = average_figure(avg.get("signal"), avg.get("background"), log=log, normalise=normalise,
                         signal_label=labels["signal"], background_label=labels["background"],
                         n_signal=used.get("signal"), n_background=used.get("background"))
    st.plotly_chart(fig, width="stretch", key="img_avg_fig")
    st.caption("Mean over events of each pixel (leading jet top, subleading bottom); the "
               "difference is signal − background on a symmetric log scale (red: more in the "
               f"signal). {resolution}×{resolution} pixels, "
               f"{'raw pT' if normalise == 'raw' else 'event-normalised'}.")
    _download(fig, f"average-{resolution}-{normalise}", "img_avg_dl")

    raw = avg if normalise == "raw" else {
        name: _average(path, mtime, int(resolution), "raw", limit)[0]
        for name, (path, mtime, _) in samples.items()}
    st.markdown("**How broad are the jets?** Fraction of the jet pT within radius r of the "
                "centre (from the raw average images).")
    cols = st.columns(len(raw) + 1)
    for col, name in zip(cols, raw):
        col.metric(f"⟨r⟩ {labels[name]}, leading / subleading",
                   f"{mean_radius(raw[name][0]):.3f} / {mean_radius(raw[name][1]):.3f}")
    rfig = radial_figure(raw.get("signal"), raw.get("background"), labels["signal"],
                         labels["background"])
    st.plotly_chart(rfig, width="stretch", key="img_radial_fig")


event_browser()
averages()
