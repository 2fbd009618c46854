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
