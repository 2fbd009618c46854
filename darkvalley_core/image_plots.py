"""Jet-image figures (plotly, no streamlit) and the fast average images behind them.

Conventions follow ``darkvalley_core.images``: an image is ``img[i, j]`` with ``i`` the eta' bin
and ``j`` the phi' bin over the window [-1, 1) x [-1, 1). Figures draw eta' horizontally and
phi' vertically (heatmap ``z = img.T``), so the principal axis is horizontal and the brightest
quadrant is the top right one. Colour scales are logarithmic by default:

- non-negative images (raw pT): log10 of the pixel value; empty pixels are left blank and values
  below ``max * 10**-decades`` are shown at that floor;
- signed images (a signal - background difference, event-normalised images): a symmetric log,
  ``sign(v) log10(1 + |v| / c)`` with ``c = max|v| * 10**-decades``, linear near zero.

The colour bars are labelled in the pixel values themselves (GeV for raw images), and hovering
a pixel shows its value.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .images import EN_STD_FLOOR, WINDOW, check_normalise, check_resolution, preprocess

SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"  # red = more in signal
SIGNAL_COLOUR = "#d62728"  # as in plots.py
BACKGROUND_COLOUR = "#1f77b4"
JET_NAMES = ("leading jet", "subleading jet")
#: decades of dynamic range shown on log colour scales
LOG_DECADES = 4.0


# --------------------------------------------------------------------------------------------
# numbers behind the figures
# --------------------------------------------------------------------------------------------
def pixel_centres(resolution: int) -> np.ndarray:
    """Centres of the pixels along eta' (or phi'), in [-1, 1]."""
    res = check_resolution(resolution)
    d = 2.0 * WINDOW / res
    return -WINDOW + d * (np.arange(res) + 0.5)


def _pixel_index(x, y, res):
    """Pixel (i, j) -> i * res + j of every constituent, and whether it lies in the window.

    The same float arithmetic as ``images._pixelate_chunk``, so every constituent lands in the
    same pixel as in ``images.jet_images``.
    """
    h = x.dtype.type(0.5 * res / WINDOW)
    u = x * h
    u += h
    v = y * h
    v += h
    iu = np.floor(u, out=u).astype(np.intp)
    iv = np.floor(v, out=v).astype(np.intp)
    inside = iu.view(np.uintp) < res
    inside &= iv.view(np.uintp) < res
    iu *= res
    iu += iv
    return iu, inside


def average_images(pt, eta, phi, offsets, resolution=25, normalise="raw", max_events=None):
    """Mean event image over the first ``max_events`` events (all when None).

    Equal (to float rounding) to ``images.jet_images(...).mean(axis=0)``, but computed from the
    constituents without making the per-event images: the jets are preprocessed exactly as in
    ``images`` (same pixel for every constituent), then

    - raw: one weighted ``np.bincount`` of all in-window constituents into the 2 res^2 pixels;
    - event (EN): the per-event pixel mean and std come from the occupied pixels (a sort of the
      in-window constituents by (jet, pixel)); the mean EN image is then
      ``sum_e (img_e / s_e) / N - sum_e (mu_e / s_e) / N``, a bincount with weights pT / s_e
      minus a constant (``s_e`` floored at ``images.EN_STD_FLOOR`` like ``event_normalise``).

    Cost is linear in the constituents and independent of the resolution (~0.15 s for 25k QCD
    events at 75 x 75, where materialising the images would take seconds and a gigabyte).

    Returns ``(mean, n_events)``: mean float64 (2, res, res) (leading, subleading jet) and the
    number of events averaged (0 gives all-zero images). Raises ConfigError as ``jet_images``.
    """
    res = check_resolution(resolution)
    normalise = check_normalise(normalise)
    off = np.asarray(offsets)
    if off.ndim != 1 or len(off) < 1 or (len(off) - 1) % 2:
        raise ConfigError(f"offsets must describe two jets per event (event-major), got "
                          f"shape {off.shape}")
    n_all = (len(off) - 1) // 2
    n = n_all if max_events is None else max(0, min(n_all, int(max_events)))
    npix = res * res
    if n == 0:
        return np.zeros((2, res, res)), 0
    off = off[: 2 * n + 1].astype(np.int64)
    m = int(off[-1])
    p, x, y = preprocess(np.asarray(pt)[:m], np.asarray(eta)[:m], np.asarray(phi)[:m], off)
    pix, inside = _pixel_index(x, y, res)
    jet = np.repeat(np.arange(2 * n, dtype=np.intp), np.diff(off))[inside]
    pix = pix[inside]
    w = p[inside].astype(np.float64)
    slot = (jet & 1) * npix + pix  # leading / subleading image of the mean
    if normalise == "raw":
        total = np.bincount(slot, weights=w, minlength=2 * npix)
        return (total / n).reshape(2, res, res), n
    # EN: per-event pixel sums S1 and squared pixel sums S2 over the 2 res^2 pixels
    key = jet * npix + pix
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
    value = np.add.reduceat(w[order], starts) if len(starts) else np.zeros(0)
    event_of_pixel = key_sorted[starts] // (2 * npix)
    s1 = np.bincount(event_of_pixel, weights=value, minlength=n)
    s2 = np.bincount(event_of_pixel, weights=value * value, minlength=n)
    mean = s1 / (2 * npix)
    std = np.sqrt(np.maximum(s2 / (2 * npix) - mean * mean, 0.0))
    inv = 1.0 / np.maximum(std, EN_STD_FLOOR)
    total = np.bincount(slot, weights=w * inv[jet >> 1], minlength=2 * npix)
    total -= float(np.sum(mean * inv))
    return (total / n).reshape(2, res, res), n


def radial_profile(image: np.ndarray):
    """Cumulative fraction of an image's summed pixel value within radius r of the centre.

    ``image`` is (res, res) with non-negative pixels; returns ``(r, fraction)`` with r the
    sorted distinct pixel-centre radii (in the eta'-phi' frame) and the fraction at each.
    """
    img = np.asarray(image, dtype=np.float64)
    c = pixel_centres(img.shape[-1])
    r = np.hypot(c[:, None], c[None, :]).ravel()
    order = np.argsort(r, kind="stable")
    rs, w = r[order], img.ravel()[order]
    cum = np.cumsum(w)
    total = cum[-1] if len(cum) and cum[-1] > 0 else 1.0
    last = np.r_[rs[1:] != rs[:-1], True]  # one point per distinct radius
    return rs[last], cum[last] / total


def mean_radius(image: np.ndarray) -> float:
    """pT-weighted mean distance of an image's pixels from the centre (non-negative image)."""
    img = np.asarray(image, dtype=np.float64)
    c = pixel_centres(img.shape[-1])
    r = np.hypot(c[:, None], c[None, :])
    s = img.sum()
    return float((img * r).sum() / s) if s > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# colour scales
# --------------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{v:g}"


def colour_scale(panels, log=True, decades=LOG_DECADES, signed=None, symmetric=False):
    """Transform images sharing one colour bar; returns (transformed panels, axis settings).

    ``signed`` None: symmetric log when any value is negative, plain log otherwise.
    ``symmetric`` centres the range on 0 (for a diverging colour scale); otherwise the range
    runs from the smallest to the largest value. The settings
    dict holds cmin, cmax (and cmid for symmetric scales) and the colour bar ticks.
    """
    panels = [np.asarray(p, dtype=np.float64) for p in panels]
    vmax = max((float(np.nanmax(np.abs(p))) if p.size else 0.0) for p in panels)
    vmin = min((float(np.nanmin(p)) if p.size else 0.0) for p in panels)
    top_value = max((float(np.nanmax(p)) if p.size else 0.0) for p in panels)
    if signed is None:
        signed = vmin < 0
    if vmax <= 0 or not np.isfinite(vmax):
        vmax = 1.0
    if not log:
        if symmetric:
            return panels, {"cmin": -vmax, "cmax": vmax, "cmid": 0.0}
        return panels, {"cmin": min(vmin, 0.0), "cmax": max(top_value, 1e-12)}
    if not signed:
        floor = vmax * 10.0 ** -decades
        out = []
        for p in panels:
            q = np.full(p.shape, np.nan)
            pos = p > 0
            q[pos] = np.log10(np.maximum(p[pos], floor))
            out.append(q)
        lo, hi = np.log10(floor), np.log10(vmax)
        ks = np.arange(np.ceil(lo), np.floor(hi) + 1)
        return out, {"cmin": lo, "cmax": hi, "tickvals": ks.tolist(),
                     "ticktext": [_fmt(10.0 ** k) for k in ks]}
    c = vmax * 10.0 ** -decades

    def t(v):
        return np.sign(v) * np.log10(1.0 + np.abs(v) / c)

    top = float(t(vmax))
    lo = -top if symmetric else float(t(vmin))
    hi = top if symmetric else float(t(top_value))
    ks = np.arange(np.ceil(np.log10(c)) + 1, np.floor(np.log10(vmax)) + 1)
    ticks = [10.0 ** k for k in ks[::-1] if (ks[-1] - k) % 2 == 0]  # every other decade
    vals = [v for v in [-v for v in ticks] + [0.0] + ticks[::-1] if lo <= t(v) <= hi]
    settings = {"cmin": lo, "cmax": hi, "tickvals": [float(t(v)) for v in vals],
                "ticktext": [_fmt(v) for v in vals]}
    if symmetric:
        settings["cmid"] = 0.0
    return [t(p) for p in panels], settings


def _coloraxis(settings, colourscale, title, colorbar=None):
    bar = {"title": {"text": title, "side": "right"}, "thickness": 14}
    if "tickvals" in settings:
        bar.update(tickvals=settings["tickvals"], ticktext=settings["ticktext"])
    if colorbar:
        bar.update(colorbar)
    axis = {"colorscale": colourscale, "cmin": settings["cmin"], "cmax": settings["cmax"],
            "colorbar": bar}
    if "cmid" in settings:
        axis["cmid"] = settings["cmid"]
    return axis


# --------------------------------------------------------------------------------------------
# figure building
# --------------------------------------------------------------------------------------------
def _grid_figure(grid, titles, axes_of, axes, unit, height, row_labels=None):
    """One heatmap per cell of ``grid`` (rows of (res, res) images or None).

    ``axes_of[r][c]`` names the colour axis of each cell ("coloraxis", "coloraxis2", ...);
    ``axes`` maps those names to (transformed panels in grid order, plotly coloraxis dict).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n_rows, n_cols = len(grid), len(grid[0])
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles,
                        horizontal_spacing=0.04 if n_cols > 3 else 0.06,
                        vertical_spacing=0.12 if n_rows > 1 else 0.0)
    used = {name: iter(panels) for name, (panels, _) in axes.items()}
    for r, row in enumerate(grid):
        for c, img in enumerate(row):
            if img is None:
                continue
            name = axes_of[r][c]
            z = next(used[name])
            res = img.shape[-1]
            centres = pixel_centres(res)
            fig.add_trace(go.Heatmap(
                z=z.T, x=centres, y=centres, customdata=np.asarray(img, np.float64).T,
                coloraxis=name, name=titles[r * n_cols + c] if titles else "",
                hovertemplate="η′ = %{x:.3f}<br>φ′ = %{y:.3f}<br>%{customdata:.4g} " + unit
                              + "<extra></extra>"), row=r + 1, col=c + 1)
    fig.update_xaxes(range=[-WINDOW, WINDOW], constrain="domain", showgrid=False, zeroline=False,
                     ticks="outside", tickvals=[-1, -0.5, 0, 0.5, 1], mirror=True,
                     showline=True, linecolor="#888")
    fig.update_yaxes(range=[-WINDOW, WINDOW], constrain="domain", showgrid=False, zeroline=False,
                     ticks="outside", tickvals=[-1, -0.5, 0, 0.5, 1], mirror=True,
                     showline=True, linecolor="#888")
    for k in range(1, n_rows * n_cols + 1):
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for c in range(n_cols):
        fig.update_xaxes(title_text="η′", row=n_rows, col=c + 1)
    for r in range(n_rows):
        label = "φ′" if not row_labels else f"{row_labels[r]}<br>φ′"
        fig.update_yaxes(title_text=label, row=r + 1, col=1)
    fig.update_layout(height=height, template="plotly_white", plot_bgcolor="white",
                      margin=dict(t=50, b=50, l=60, r=20),
                      **{name: axis for name, (_, axis) in axes.items()})
    return fig


def _unit(normalise: str) -> str:
    """Unit of a pixel value (EN pixels are pure numbers)."""
    return "GeV" if normalise == "raw" else ""


def event_figure(images, log=True, normalise="raw", title=""):
    """The two jet images of one event side by side; images (2, res, res)."""
    imgs = np.asarray(images)
    unit = _unit(normalise)
    panels, settings = colour_scale([imgs[0], imgs[1]], log)
    fig = _grid_figure([[imgs[0], imgs[1]]], [f"{title}{JET_NAMES[0]}", f"{title}{JET_NAMES[1]}"],
                       [["coloraxis", "coloraxis"]],
                       {"coloraxis": (panels, _coloraxis(settings, SEQUENTIAL,
                                                         f"pixel pT [{unit}]"
                                                         if normalise == "raw" else "EN pixel"))},
                       unit, height=420)
    return fig


def augmentation_figure(images, log=True, normalise="raw", copy_labels=None):
    """Original beside its augmented copies: images (copies + 1, 2, res, res); copy 0 first.

    Rows are the leading and subleading jet, columns the copies; one shared colour bar.
    """
    imgs = np.asarray(images)
    n = len(imgs)
    labels = copy_labels or (["original"] + [f"copy {k}" for k in range(1, n)])
    grid = [[imgs[k, j] for k in range(n)] for j in range(2)]
    panels, settings = colour_scale([p for row in grid for p in row], log)
    unit = _unit(normalise)
    titles = [labels[k] if j == 0 else "" for j in range(2) for k in range(n)]
    return _grid_figure(grid, titles, [["coloraxis"] * n] * 2,
                        {"coloraxis": (panels, _coloraxis(
                            settings, SEQUENTIAL,
                            f"pixel pT [{unit}]" if normalise == "raw" else "EN pixel"))},
                        unit, height=max(380, int(760 / max(3, n) * 2)), row_labels=JET_NAMES)


def average_figure(signal_avg=None, background_avg=None, log=True, normalise="raw",
                   signal_label="signal", background_label="QCD dijets",
                   n_signal=None, n_background=None):
    """Average images of signal and background and their difference (signal - background).

    ``*_avg`` are (2, res, res) mean event images or None (missing sample: its column and the
    difference stay empty). Rows: leading and subleading jet. Signal and background share one
    colour bar; the difference has its own diverging one (red: more pT in signal).
    """
    have_s, have_b = signal_avg is not None, background_avg is not None
    s = np.asarray(signal_avg, np.float64) if have_s else None
    b = np.asarray(background_avg, np.float64) if have_b else None
    diff = s - b if have_s and have_b else None
    grid = [[s[j] if have_s else None, b[j] if have_b else None,
             diff[j] if diff is not None else None] for j in range(2)]
    unit = _unit(normalise)
    ns = f" ({n_signal:,} events)" if n_signal is not None else ""
    nb = f" ({n_background:,} events)" if n_background is not None else ""
    titles = [f"{signal_label}{ns}", f"{background_label}{nb}", "signal − background",
              "", "", ""]
    axes = {}
    avg_panels = [p for row in grid for p in row[:2] if p is not None]
    value = "mean pixel pT [GeV]" if normalise == "raw" else "mean EN pixel"
    if avg_panels:
        panels, settings = colour_scale(avg_panels, log)
        axes["coloraxis"] = (panels, _coloraxis(
            settings, SEQUENTIAL, value,
            {"orientation": "h", "x": 0.33, "xanchor": "center", "y": -0.12, "yanchor": "top",
             "len": 0.6, "title": {"text": value, "side": "top"}}))
    if diff is not None:
        panels, settings = colour_scale([diff[0], diff[1]], log, signed=True, symmetric=True)
        axes["coloraxis2"] = (panels, _coloraxis(
            settings, DIVERGING, "difference",
            {"orientation": "h", "x": 0.855, "xanchor": "center", "y": -0.12, "yanchor": "top",
             "len": 0.3, "title": {"text": f"difference [{unit}]" if unit else "difference",
                       "side": "top"}}))
    axes_of = [["coloraxis", "coloraxis", "coloraxis2"]] * 2
    fig = _grid_figure(grid, titles, axes_of, axes, unit, height=720, row_labels=JET_NAMES)
    fig.update_layout(margin=dict(t=50, b=140, l=60, r=20))
    return fig


def radial_figure(signal_avg=None, background_avg=None, signal_label="signal",
                  background_label="QCD dijets"):
    """Cumulative pT fraction within radius r of the jet centre, from raw average images."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for avg, label, colour in ((background_avg, background_label, BACKGROUND_COLOUR),
                               (signal_avg, signal_label, SIGNAL_COLOUR)):
        if avg is None:
            continue
        for j, dash in ((0, "solid"), (1, "dash")):
            r, frac = radial_profile(avg[j])
            fig.add_trace(go.Scatter(x=r, y=frac, mode="lines", line=dict(color=colour, dash=dash),
                                     name=f"{label}, {JET_NAMES[j]} (⟨r⟩ = "
                                          f"{mean_radius(avg[j]):.3f})"))
    fig.update_layout(xaxis_title="r = √(η′² + φ′²)", yaxis_title="fraction of pT within r",
                      template="plotly_white", height=360, margin=dict(t=20, b=40),
                      xaxis_range=[0, 1.0], yaxis_range=[0, 1.02],
                      legend=dict(x=0.99, xanchor="right", y=0.02, yanchor="bottom"))
    return fig


def figure_html(fig) -> str:
    """A self-contained interactive HTML page of a figure (plotly.js embedded: works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)
