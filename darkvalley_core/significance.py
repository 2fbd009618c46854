"""Working points, discovery significance and read-offs of the headline plot (physics.md s. 10).

- A working point is a background efficiency eps_b (10%, 1%, 0.1%); the score threshold is set on
  an independent pure-background SR sample (``threshold_at_background_efficiency``); an event
  passes when its score is strictly above the threshold (as in the authors' code).
- Ideal significance: Z_after = (S/sqrt(B))_before x eps_s / sqrt(eps_b).
- Background-subtracted significance: S = N_pass - B_SR eps_b, B = B_SR eps_b, and the Asimov
  formula Z = sqrt(2 [(S + B) ln(1 + S/B) - S]) of Cowan, Cranmer, Gross, Vitells,
  arXiv:1007.1727 (eq. 97), which tends to S/sqrt(B) for S << B.
- Read-offs from Z_after(S/sqrt(B)) curves averaged over repetitions: the learning threshold
  and the injected signal needed for 5 sigma, each with a band from the mean +- std curves.

Everything is numpy, vectorised, and imports no torch. ``roc_auc`` lives here too (the trainer
reports it each epoch).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import ConfigError

__all__ = [
    "roc_auc",
    "threshold_at_background_efficiency",
    "signal_efficiency",
    "ideal_significance",
    "asimov_significance",
    "background_subtracted_significance",
    "Summary",
    "summarise",
    "Crossing",
    "crossing",
    "learning_threshold",
    "five_sigma_reach",
    "SculptingCheck",
    "sculpting_check",
]


def _scores(values, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ConfigError(f"{what} is empty")
    if not np.isfinite(a).all():
        raise ConfigError(f"{what} contains NaN or infinite values")
    return a


def roc_auc(scores, labels, weights=None) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative),
    ties counted 1/2 (the Mann-Whitney U statistic over n_pos n_neg; with weights, each pair
    counts w_i w_j). Labels are 0/1 (or bool); both classes must be present. O(n log n)."""
    s = _scores(scores, "roc_auc scores")
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != s.shape[0]:
        raise ConfigError(f"roc_auc: {s.shape[0]} scores but {y.shape[0]} labels")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("roc_auc: labels must be 0 or 1")
    y = y.astype(bool)
    w = np.ones_like(s) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape[0] != s.shape[0] or (w < 0).any():
        raise ConfigError("roc_auc: weights must be non-negative, one per score")
    w_pos, w_neg = np.where(y, w, 0.0), np.where(y, 0.0, w)
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        raise ConfigError("roc_auc needs both classes (label 0 and label 1) with positive weight")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Groups of tied scores: per group, positive and negative weight.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos_g = np.add.reduceat(w_pos[order], starts)
    neg_g = np.add.reduceat(w_neg[order], starts)
    neg_below = np.cumsum(neg_g) - neg_g
    return float(np.sum(pos_g * (neg_below + 0.5 * neg_g)) / (total_pos * total_neg))


def threshold_at_background_efficiency(bkg_scores, eps_b):
    """Score threshold t such that a fraction eps_b of ``bkg_scores`` lies strictly above it.

    t is the (1 - eps_b) quantile with linear interpolation, so with n distinct scores exactly
    n - ceil((n - 1)(1 - eps_b)) events pass (e.g. 10 of 1000 for eps_b = 0.01). eps_b may be an
    array (one threshold each). Needs n eps_b >= 1, or the working point is not resolved.
    """
    b = _scores(bkg_scores, "background scores")
    eps = np.asarray(eps_b, dtype=np.float64)
    if not ((eps > 0) & (eps < 1)).all():
        raise ConfigError(f"background efficiency must be in (0, 1), got {eps_b!r}")
    if (eps * b.size < 1).any():
        raise ConfigError(
            f"{b.size} background events cannot resolve eps_b = {np.min(eps):g}: "
            f"need at least {int(np.ceil(1 / np.min(eps)))}"
        )
    t = np.quantile(b, 1.0 - eps)
    return float(t) if t.ndim == 0 else t


def signal_efficiency(sig_scores, threshold):
    """Fraction of ``sig_scores`` strictly above ``threshold`` (scalar or array of thresholds)."""
    s = np.sort(_scores(sig_scores, "signal scores"))
    t = np.asarray(threshold, dtype=np.float64)
    eff = (s.size - np.searchsorted(s, t, side="right")) / s.size
    return float(eff) if eff.ndim == 0 else eff


def ideal_significance(initial_significance, eps_s, eps_b):
    """Z_after = Z_before eps_s / sqrt(eps_b): S and B both scaled by the cut, Z ~ S/sqrt(B)."""
    z0, es, eb = (np.asarray(v, dtype=np.float64) for v in (initial_significance, eps_s, eps_b))
    if (eb <= 0).any():
        raise ConfigError("ideal_significance: eps_b must be > 0")
    z = z0 * es / np.sqrt(eb)
    return float(z) if z.ndim == 0 else z


def asimov_significance(s, b, signed: bool = False):
    """Asimov discovery significance Z = sqrt(2 [(s + b) ln(1 + s/b) - s]) (arXiv:1007.1727).

    Vectorised over s and b (b > 0). For s <= 0: 0 by default; with ``signed=True`` a deficit
    gives -sqrt(...) (s is clipped at -b, i.e. no observed events), so the no-signal band can
    show downward fluctuations. For |s/b| < 1e-3 a series in s/b avoids the cancellation of the
    two terms; Z -> s/sqrt(b) for s << b.
    """
    s = np.asarray(s, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not (b > 0).all():
        raise ConfigError("asimov_significance: the expected background b must be > 0")
    s, b = np.broadcast_arrays(s, b)
    x = np.maximum(s / b, -1.0)
    # f(x) = (1 + x) ln(1 + x) - x >= 0, with f(-1) = 1.
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(x > -1.0, (1.0 + x) * np.log1p(np.maximum(x, -1 + 1e-300)) - x, 1.0)
    series = x**2 / 2 - x**3 / 6 + x**4 / 12 - x**5 / 20 + x**6 / 30
    f = np.where(np.abs(x) < 1e-3, series, exact)
    z = np.sqrt(2.0 * b * np.maximum(f, 0.0))
    z = np.where(x >= 0, z, -z if signed else 0.0)
    return float(z) if z.ndim == 0 else z


def background_subtracted_significance(n_pass, b_expected, signed: bool = False):
    """Asimov Z with S = n_pass - b_expected and B = b_expected (b_expected = B_SR x eps_b from
    simulation); ``signed`` as in ``asimov_significance``."""
    n = np.asarray(n_pass, dtype=np.float64)
    b = np.asarray(b_expected, dtype=np.float64)
    return asimov_significance(n - b, b, signed=signed)


class Summary(NamedTuple):
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray  # finite values per point


def summarise(values, axis: int = 0, ddof: int = 0) -> Summary:
    """Mean and standard deviation over repetitions (``axis``, default 0: values[rep, point]),
    ignoring NaN (failed repetitions). std uses ``ddof`` (0: spread of the repetitions)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ConfigError("summarise: no values")
    finite = np.isfinite(v)
    n = finite.sum(axis=axis)
    vz = np.where(finite, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = vz.sum(axis=axis) / n
        dev = np.where(finite, v - np.expand_dims(mean, axis), 0.0)
        std = np.sqrt((dev**2).sum(axis=axis) / (n - ddof))
    std = np.where(n - ddof > 0, std, np.where(n > 0, 0.0, np.nan))
    return Summary(mean, std, n)


class Crossing(NamedTuple):
    """x where a curve crosses a level, and its band from the mean + std (low) and mean - std
    (high) curves; NaN where the curve does not cross within the scanned range."""

    value: float
    low: float
    high: float


def _upward_crossing(x: np.ndarray, y: np.ndarray, level: float, rule: str) -> float:
    ok = np.isfinite(y)
    x, d = x[ok], y[ok] - level
    if d.size == 0:
        return np.nan
    above = d > 0
    if rule == "first":
        if above[0]:
            return float(x[0])
        idx = np.flatnonzero(~above[:-1] & above[1:])
        if idx.size == 0:
            return np.nan
        i = idx[0]
    else:  # "last": smallest x beyond which the curve stays above the level
        if not above[-1]:
            return np.nan
        below = np.flatnonzero(~above)
        if below.size == 0:
            return float(x[0])
        i = below[-1]
    return float(x[i] + (x[i + 1] - x[i]) * (-d[i]) / (d[i + 1] - d[i]))


def crossing(x, y_mean, y_std=None, level: float = 0.0, *, rule: str = "first") -> Crossing:
    """Where the curve y(x), linearly interpolated between points, crosses ``level`` upwards.

    rule="first": the first x at which y goes from <= level to > level (x[0] if y[0] > level).
    rule="last": the smallest x above which y stays > level up to the end of the scan.
    The two agree for monotone curves. NaN when the curve ends at or below the level ("first":
    never rises above it). The band: the same read-off on y_mean + y_std (-> low) and
    y_mean - y_std (-> high); either is NaN if that curve does not cross in the range.
    """
    if rule not in ("first", "last"):
        raise ConfigError(f"crossing: rule must be 'first' or 'last', got {rule!r}")
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ym = np.asarray(y_mean, dtype=np.float64).reshape(-1)
    ys = np.zeros_like(ym) if y_std is None else np.asarray(y_std, np.float64).reshape(-1)
    if xs.size < 2 or ym.shape != xs.shape or ys.shape != xs.shape:
        raise ConfigError("crossing: x, y_mean and y_std need the same length (at least 2)")
    if not (np.diff(xs) > 0).all():
        raise ConfigError("crossing: x must be strictly increasing")
    if (ys < 0).any():
        raise ConfigError("crossing: y_std must be >= 0")
    return Crossing(
        _upward_crossing(xs, ym, level, rule),
        _upward_crossing(xs, ym + ys, level, rule),
        _upward_crossing(xs, ym - ys, level, rule),
    )


def learning_threshold(x, z_after_mean, z_after_std=None, *, rule: str = "last") -> Crossing:
    """The learning threshold: the smallest injected S/sqrt(B) above which the mean Z_after
    exceeds the no-gain line Z_after = S/sqrt(B).

    Precisely: the upward zero crossing of d(x) = Z_after(x) - x, linearly interpolated between
    scanned points, with rule "last" of ``crossing`` (d > 0 from there to the end of the scan;
    x[0] if d > 0 at every point after the first). Band from Z_after +- std. NaN if the network
    never beats the no-gain line by the end of the scan.
    Points at x = 0 (no injected signal) are left out of the read-off.
    x: injected S/sqrt(B) values, strictly increasing; z_after_*: per-x mean and std.
    """
    xs = np.asarray(x, dtype=np.float64)
    zm = np.asarray(z_after_mean, np.float64)
    zs = None if z_after_std is None else np.asarray(z_after_std, np.float64)
    # A point without injected signal says nothing about learning (the ideal Z is 0 there by
    # construction, on the no-gain line), so it cannot place the threshold at 0.
    keep = xs > 0
    if keep.sum() >= 2:
        xs, zm = xs[keep], zm[keep]
        zs = None if zs is None else zs[keep]
    return crossing(xs, zm - xs, zs, 0.0, rule=rule)


def five_sigma_reach(x, z_after_mean, z_after_std=None, *, level: float = 5.0,
                     rule: str = "first") -> Crossing:
    """Injected S/sqrt(B) at which the mean Z_after first reaches ``level`` (5 sigma), linearly
    interpolated, with the band from Z_after +- std (low from the upper curve). NaN if the scan
    never gets there."""
    return crossing(x, z_after_mean, z_after_std, level, rule=rule)


class SculptingCheck(NamedTuple):
    eps_b_sr: float  # background efficiency of the cut in the signal region
    eps_b_sb: float  # ... in the sidebands
    ratio: float  # eps_b_sr / eps_b_sb; 1 means the cut does not prefer SR background
    ratio_err: float  # binomial (statistical) uncertainty of the ratio


def sculpting_check(scores_sr_bkg, scores_sb_bkg, threshold: float) -> SculptingCheck:
    """Background efficiencies of the cut ``score > threshold`` in SR and SB, and their ratio.

    A CWoLa classifier that learned the dijet mass (or over-fitted SR fluctuations) passes SR
    background more often than SB background (ratio > 1): the cut sculpts the background and a
    sideband-based background estimate would be biased.
    """
    e_sr = signal_efficiency(scores_sr_bkg, threshold)
    e_sb = signal_efficiency(scores_sb_bkg, threshold)
    n_sr, n_sb = np.size(scores_sr_bkg), np.size(scores_sb_bkg)
    if e_sb <= 0:
        return SculptingCheck(e_sr, e_sb, np.nan, np.nan)
    ratio = e_sr / e_sb
    rel2 = (1 - e_sb) / (n_sb * e_sb) + ((1 - e_sr) / (n_sr * e_sr) if e_sr > 0 else 0.0)
    return SculptingCheck(e_sr, e_sb, float(ratio), float(ratio * np.sqrt(rel2)))
