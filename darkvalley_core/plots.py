"""Plotly figures shared by the app's pages and the exports (no streamlit here)."""

from __future__ import annotations


import numpy as np

from .jets import SIDEBANDS_GEV, SIGNAL_REGION_GEV

SIGNAL_COLOUR = "#d62728"
BACKGROUND_COLOUR = "#1f77b4"
SR_COLOUR = "rgba(214, 39, 40, 0.10)"
SB_COLOUR = "rgba(31, 119, 180, 0.10)"


def _hist(values: np.ndarray, bins: np.ndarray, density: bool):
    counts, edges = np.histogram(values, bins=bins)
    if density and counts.sum() > 0:
        counts = counts / (counts.sum() * np.diff(edges))
    return counts, edges


def _step_trace(go, counts, edges, name, colour):
    centres = 0.5 * (edges[1:] + edges[:-1])
    return go.Scatter(x=centres, y=counts, mode="lines", line_shape="hvh", name=name,
                      line=dict(color=colour, width=2))


def mjj_figure(signal_mjj: np.ndarray | None, background_mjj: np.ndarray | None,
               sidebands: str = "narrow", log_y: bool = False, bin_width: float = 50.0,
               signal_label: str = "signal", weights_note: str = "unit area"):
    """m_jj of signal and background (unit-area histograms) with the SR and SB shaded."""
    import plotly.graph_objects as go

    bins = np.arange(3000.0, 7000.0 + bin_width, bin_width)
    fig = go.Figure()
    lo, hi = SIGNAL_REGION_GEV
    fig.add_vrect(x0=lo, x1=hi, fillcolor=SR_COLOUR, line_width=0, annotation_text="SR",
                  annotation_position="top left")
    for a, b in SIDEBANDS_GEV[sidebands]:
        fig.add_vrect(x0=a, x1=b, fillcolor=SB_COLOUR, line_width=0, annotation_text="SB",
                      annotation_position="top left")
    if background_mjj is not None and len(background_mjj):
        c, e = _hist(background_mjj, bins, True)
        fig.add_trace(_step_trace(go, c, e, "QCD dijets", BACKGROUND_COLOUR))
    if signal_mjj is not None and len(signal_mjj):
        c, e = _hist(signal_mjj, bins, True)
        fig.add_trace(_step_trace(go, c, e, signal_label, SIGNAL_COLOUR))
    fig.update_layout(xaxis_title="m_jj [GeV]", yaxis_title=f"events / GeV ({weights_note})",
                      template="plotly_white", height=420, margin=dict(t=30, b=40),
                      legend=dict(x=0.99, xanchor="right", y=0.99))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def compare_figure(signal: np.ndarray | None, background: np.ndarray | None, bins: np.ndarray,
                   xlabel: str, signal_label: str = "signal", log_y: bool = False):
    """Unit-area histograms of one variable for signal and background."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if background is not None and len(background):
        c, e = _hist(background, bins, True)
        fig.add_trace(_step_trace(go, c, e, "QCD dijets", BACKGROUND_COLOUR))
    if signal is not None and len(signal):
        c, e = _hist(signal, bins, True)
        fig.add_trace(_step_trace(go, c, e, signal_label, SIGNAL_COLOUR))
    fig.update_layout(xaxis_title=xlabel, yaxis_title="unit area", template="plotly_white",
                      height=300, margin=dict(t=20, b=40), showlegend=True,
                      legend=dict(x=0.99, xanchor="right", y=0.99))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


# --------------------------------------------------------------------------------------------
# Training and sensitivity (pages 4 and 5). Curves are plain dicts built by
# darkvalley_core.scan.sensitivity_curves: {"label", "x", "mean", "std", "n", ...}.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
Z_LABELS = {"z_ideal": "Z after the cut (ideal)", "z_asimov": "Z after the cut (Asimov, "
            "background-subtracted)"}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


def loss_figure(rows: list[dict], height: int = 260):
    """Training and validation loss per epoch (one colour per run and stage) from metrics.csv
    rows (``jobs.read_metrics``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    groups: dict = {}
    for r in rows:
        if r.get("epoch") is None:
            continue
        key = (str(r.get("child") or ""), str(r.get("stage") or ""), r.get("run"))
        groups.setdefault(key, []).append(r)
    for i, (key, rs) in enumerate(groups.items()):
        colour = PALETTE[i % len(PALETTE)]
        child, stage, run = key
        name = " ".join(p for p in (child, stage, f"run {int(run) + 1}" if run is not None
                                    else "") if p)
        ep = [r["epoch"] + 1 for r in rs]
        fig.add_trace(go.Scatter(x=ep, y=[r.get("train_loss") for r in rs], mode="lines",
                                 name=f"{name} train", line=dict(color=colour, dash="dot"),
                                 legendgroup=name))
        fig.add_trace(go.Scatter(x=ep, y=[r.get("val_loss") for r in rs], mode="lines+markers",
                                 name=f"{name} validation", line=dict(color=colour),
                                 legendgroup=name))
    fig.update_layout(xaxis_title="epoch", yaxis_title="binary cross-entropy",
                      template="plotly_white", height=height, margin=dict(t=10, b=40, l=50),
                      showlegend=len(groups) <= 6)
    return fig


def sensitivity_figure(curves: list[dict], z_field: str = "z_ideal", eps_b: float = 0.01,
                       supervised: list[dict] | None = None, x_max: float | None = None,
                       height: int = 520):
    """Z after the cut vs the injected S/sqrt(B): mean +- spread over the repetitions per curve,
    the no-gain line Z = S/sqrt(B) and the 5 sigma line (physics.md section 10).

    ``supervised``: [{"label", "eps_s", "eps_s_std"}]: the fully supervised reference drawn as
    Z = x eps_s / sqrt(eps_b) (it needs no injection)."""
    import plotly.graph_objects as go

    xs = [x for c in curves for x in c["x"]]
    hi = x_max or (max(xs) * 1.05 if xs else 6.0)
    hi = max(hi, 1.0)
    fig = go.Figure()
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        x = np.asarray(c["x"], float)
        m = np.asarray(c["mean"], float)
        s = np.nan_to_num(np.asarray(c["std"], float))
        ok = np.isfinite(m)
        if ok.sum() >= 2:
            fig.add_trace(go.Scatter(
                x=np.r_[x[ok], x[ok][::-1]], y=np.r_[(m + s)[ok], (m - s)[ok][::-1]],
                fill="toself", fillcolor=_rgba(colour, 0.15), line=dict(width=0),
                hoverinfo="skip", showlegend=False, legendgroup=c["label"]))
        fig.add_trace(go.Scatter(
            x=x, y=m, mode="lines+markers", name=c["label"], legendgroup=c["label"],
            line=dict(color=colour, width=2),
            error_y=dict(type="data", array=s, visible=True, thickness=1),
            customdata=np.c_[s, np.asarray(c.get("n", np.ones_like(x)), float)],
            hovertemplate="S/√B = %{x:.3g}<br>Z = %{y:.3g} ± %{customdata[0]:.2g}"
                          "<br>%{customdata[1]:.0f} run(s)<extra>%{fullData.name}</extra>"))
    for j, sup in enumerate(supervised or []):
        xx = np.linspace(0.0, hi, 50)
        k = sup["eps_s"] / np.sqrt(eps_b)
        fig.add_trace(go.Scatter(x=xx, y=k * xx, mode="lines", name=sup["label"],
                                 line=dict(color="#444", dash="dashdot", width=1.5)))
    line = np.array([0.0, hi])
    fig.add_trace(go.Scatter(x=line, y=line, mode="lines", name="no gain: Z = S/√B",
                             line=dict(color="#888", dash="dash", width=1.5)))
    fig.add_trace(go.Scatter(x=line, y=[5.0, 5.0], mode="lines", name="5σ",
                             line=dict(color="#d62728", dash="dot", width=1.5)))
    fig.update_layout(xaxis_title="injected S/√B before the cut (signal region)",
                      yaxis_title=f"{Z_LABELS.get(z_field, z_field)}, ε_B = {eps_b:g}",
                      template="plotly_white",
                      height=min(height + 22 * len(curves) + 22 * len(supervised or []), 1000),
                      margin=dict(t=30, b=50),
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"))
    fig.update_xaxes(range=[0, hi])
    ys = [v for c in curves for v, s in zip(c["mean"], c["std"]) if v == v] or [0.0]
    fig.update_yaxes(range=[min(0.0, min(ys) - 0.5), max(6.0, hi * 1.05, max(ys) * 1.1)])
    return fig


def copies_figure(series: list[dict], z_field: str = "z_ideal", eps_b: float = 0.01,
                  injection: float = 3.0, height: int = 420):
    """Z after the cut against the augmentation size +n at one injected S/sqrt(B):
    series = [{"label", "x" (copies), "mean", "std"}], n = 0 being no augmentation."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, c in enumerate(series):
        fig.add_trace(go.Scatter(
            x=c["x"], y=c["mean"], mode="lines+markers", name=c["label"],
            line=dict(color=PALETTE[i % len(PALETTE)], width=2),
            error_y=dict(type="data", array=np.nan_to_num(np.asarray(c["std"], float)),
                         visible=True, thickness=1)))
    fig.add_hline(y=injection, line=dict(color="#888", dash="dash"),
                  annotation_text=f"no gain (Z = {injection:g})", annotation_position="bottom right")
    fig.add_hline(y=5.0, line=dict(color="#d62728", dash="dot"), annotation_text="5σ",
                  annotation_position="top right")
    fig.update_layout(xaxis_title="augmentation size +n (copies per training event)",
                      yaxis_title=f"{Z_LABELS.get(z_field, z_field)}, ε_B = {eps_b:g}",
                      template="plotly_white", height=height, margin=dict(t=30, b=50),
                      title=dict(text=f"injected S/√B = {injection:g}", x=0.5, font=dict(size=13)))
    fig.update_xaxes(rangemode="tozero")
    return fig


def reach_figure(rows: list[dict], benchmarks: list[str], height: int = 460):
    """Learning threshold and 5 sigma reach per benchmark, one series per method/augmentation
    (rows: {"series", "benchmark", "threshold", "threshold_low", "threshold_high", "reach",
    "reach_low", "reach_high"}; NaN where the scan never got there)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("learning threshold", "5σ reach"),
                        horizontal_spacing=0.08)
    series = list(dict.fromkeys(r["series"] for r in rows))
    for i, name in enumerate(series):
        rs = [r for r in rows if r["series"] == name]
        colour = PALETTE[i % len(PALETTE)]
        for col, f in ((1, "threshold"), (2, "reach")):
            y = np.array([r[f] for r in rs], float)
            lo = np.array([r[f + "_low"] for r in rs], float)
            hi_ = np.array([r[f + "_high"] for r in rs], float)
            fig.add_trace(go.Scatter(
                x=[r["benchmark"] for r in rs], y=y, mode="markers", name=name,
                legendgroup=name, showlegend=col == 1,
                marker=dict(color=colour, size=10, symbol=["circle", "diamond", "square",
                                                           "triangle-up"][i % 4]),
                error_y=dict(type="data", array=np.nan_to_num(hi_ - y),
                             arrayminus=np.nan_to_num(y - lo), visible=True)), row=1, col=col)
    for col in (1, 2):
        fig.update_xaxes(categoryorder="array", categoryarray=benchmarks, row=1, col=col,
                         tickangle=-45)
        fig.update_yaxes(title_text="injected S/√B", row=1, col=col, rangemode="tozero")
    fig.update_layout(template="plotly_white", height=height, margin=dict(t=40, b=80),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def figure_png(fig, width: int = 1000, height: int = 600) -> bytes:
    """PNG bytes of a plotly figure: through kaleido when it works here (it needs the kaleido
    package and a Chrome or Chromium it can start), else redrawn with matplotlib from the
    figure's scatter traces, error bars and straight-line shapes."""
    import importlib.util

    if importlib.util.find_spec("kaleido") is not None:
        try:
            return fig.to_image(format="png", width=width, height=height, scale=2)
        except Exception:  # noqa: BLE001 -- no usable browser for kaleido: draw it ourselves
            pass
    return _matplotlib_png(fig, width, height)


def _matplotlib_png(fig, width: int, height: int) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashes = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--"}
    mfig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    for tr in fig.data:
        if tr.type != "scatter" or tr.x is None or tr.y is None:
            continue
        x = np.asarray(tr.x, dtype=float)
        y = np.asarray(tr.y, dtype=float)
        err = None
        if tr.error_y is not None and tr.error_y.array is not None:
            err = np.asarray(tr.error_y.array, dtype=float)
        if tr.fill == "toself":  # a band drawn as a closed polygon
            ax.fill(x, y, color=_mpl_colour(tr.fillcolor), linewidth=0)
            continue
        mode = tr.mode or "lines"
        colour = tr.line.color if tr.line is not None and tr.line.color else None
        ls = dashes.get(tr.line.dash, "-") if tr.line is not None and tr.line.dash else "-"
        ax.errorbar(x, y, yerr=err, color=colour, linestyle=ls if "lines" in mode else "none",
                    marker="o" if "markers" in mode else None, capsize=3 if err is not None else 0,
                    label=tr.name if tr.showlegend is not False and tr.name else None)
    for shape in fig.layout.shapes or ():
        if shape.type == "line" and shape.y0 == shape.y1 and shape.xref == "paper":
            ax.axhline(shape.y0, color=shape.line.color or "grey", linestyle=":")
    ax.set_xlabel(fig.layout.xaxis.title.text or "")
    ax.set_ylabel(fig.layout.yaxis.title.text or "")
    if fig.layout.title and fig.layout.title.text:
        ax.set_title(fig.layout.title.text, fontsize=10)
    if fig.layout.yaxis.type == "log":
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    mfig.tight_layout()
    buf = io.BytesIO()
    mfig.savefig(buf, format="png")
    plt.close(mfig)
    return buf.getvalue()


def _mpl_colour(colour):
    """A plotly colour string ("rgba(r, g, b, a)", "#rrggbb", a name) for matplotlib."""
    if isinstance(colour, str) and colour.startswith("rgba"):
        r, g, b, a = (float(v) for v in colour[colour.index("(") + 1:-1].split(","))
        return (r / 255, g / 255, b / 255, a)
    if isinstance(colour, str) and colour.startswith("rgb"):
        r, g, b = (float(v) for v in colour[colour.index("(") + 1:-1].split(","))
        return (r / 255, g / 255, b / 255)
    return colour


def figure_html(fig) -> str:
    """A self-contained interactive HTML page of a figure (plotly.js inlined: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)
