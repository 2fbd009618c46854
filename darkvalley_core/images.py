"""Jet images: preprocessing and pixelation of the two leading jets, batch-vectorised.

Physics (arXiv:2312.06152 sec. 3; authors' code ``r10222035/data_augmentation``; the standard
jet-image recipe of arXiv:1511.05190). Per jet, on its constituents (pT, eta, phi):

1. **wrap**: phi is measured from the jet axis and wrapped to [-pi, pi], so a jet never
   straddles +-pi;
2. **centre**: the pT-weighted centroid moves to (0, 0);
3. **rotate**: the principal (major) axis of the pT-weighted second-moment tensor
   ``S = sum_i pT_i (x_i, y_i)^T (x_i, y_i)`` is turned onto the **x = eta' axis**;
4. **flip**: x and/or y change sign so that the quadrant with the largest summed pT is
   **x > 0, y > 0**;
5. **pixelate**: summed pT in ``res x res`` pixels over the window [-1, 1) x [-1, 1) in
   (eta', phi'); constituents outside are dropped.

Array conventions (fixed, relied upon by the augmentation and the network):

- an image is ``img[i, j]`` with ``i`` the **eta' (x) bin** (axis -2, rows) and ``j`` the
  **phi' (y) bin** (axis -1, columns), both increasing with the coordinate; pixel (i, j) covers
  ``x in [-1 + i d, -1 + (i+1) d)``, ``y in [-1 + j d, -1 + (j+1) d)``, ``d = 2 / res``. This is the
  authors' layout (``hpT[event, eta_bin, phi_bin]``);
- so the principal axis lies along image axis -2 (index i: vertical in ``matplotlib.imshow``
  or a plotly heatmap of ``img``), and the brightest quadrant is towards high i and high j
  (``i >= res/2, j >= res/2`` for even res; for odd res the middle row/column straddles 0);
- a quadrant is half-open: "x > 0" versus "x <= 0" (same for y); ties between quadrant sums go to
  the first of (++, +-, -+, --).

Normalisation: "raw" (summed pT in GeV) or "event" (EN, arXiv:2312.06152): both images of an
event standardised with the mean and population std of its 2 res^2 pixels, the std floored at
``EN_STD_FLOOR`` = 1e-3 GeV.

Data contract: the constituents of all jets are flat arrays ``pt, eta, phi`` (GeV, -, rad; phi
in (-pi, pi]; any finite phi, e.g. fastjet's [0, 2 pi), works) plus ``offsets`` (int64,
n_jets + 1); jet ``j`` owns ``offsets[j]:offsets[j+1]``; in an event file jets are event-major
(jet 2i leading, 2i+1 subleading of event i).

Speed: every step is a segment reduction (``np.add.reduceat`` over jet boundaries) or an
element-wise pass over the flat constituents; pixelation is one unbuffered scatter-add
(``np.add.at``, which has a fast path since numpy 1.25 and measured 2x (25x25) to 12x (75x75)
faster here than ``np.bincount``, with no float64 temporary) over the flat pixel indices of all
constituents of a chunk of jets. The only Python loop is over chunks of ~64k constituents,
sized so the temporaries stay in cache; none over jets or constituents.
Computation is float32 by default (``dtype=np.float64`` for bit-level comparisons with a
float64 per-jet reference); images are always float32.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, InvalidFileError

#: resolutions used in the papers; any int in [MIN_RESOLUTION, MAX_RESOLUTION] is accepted too
OFFICIAL_RESOLUTIONS = (25, 50, 75)
MIN_RESOLUTION = 8
MAX_RESOLUTION = 128
#: half-width of the image window in eta' and phi' (window [-1, 1) x [-1, 1))
WINDOW = 1.0
#: floor on the per-event pixel standard deviation in event normalisation [GeV]; a real event's
#: pixel std is tens of GeV, so the floor only acts on (pathological) all-empty images, which
#: then stay all-zero instead of becoming NaN.
EN_STD_FLOOR = 1e-3
NORMALISATIONS = ("raw", "event")
#: constituents per internal chunk (keeps ~20 temporaries of float32 inside L2/L3 cache)
CHUNK_CONSTITUENTS = 1 << 16

_TWO_PI = 2.0 * np.pi


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def check_resolution(resolution) -> int:
    """Return ``resolution`` as int; ConfigError unless an int in [8, 128].

    25, 50 and 75 are the papers' resolutions (25 is the default and trained best); others in
    [8, 128] are allowed for exploration.
    """
    if isinstance(resolution, (bool, np.bool_)) or not isinstance(resolution, (int, np.integer)):
        raise ConfigError(
            f"image resolution must be an integer number of pixels, got {resolution!r}; "
            f"use one of {OFFICIAL_RESOLUTIONS}"
        )
    res = int(resolution)
    if not MIN_RESOLUTION <= res <= MAX_RESOLUTION:
        raise ConfigError(
            f"unsupported image resolution {res}: use {OFFICIAL_RESOLUTIONS} (papers) or any "
            f"integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}]"
        )
    return res


def check_offsets(offsets, n_constituents: int) -> np.ndarray:
    """Validate jet boundaries: 1-D integers, offsets[0] = 0, non-decreasing, end = n."""
    off = np.asarray(offsets)
    if off.ndim != 1 or len(off) < 1 or not np.issubdtype(off.dtype, np.integer):
        raise ConfigError(
            f"offsets must be a 1-D integer array of length n_jets + 1, got shape {off.shape} "
            f"dtype {off.dtype}"
        )
    off = off.astype(np.int64, copy=False)
    if off[0] != 0 or off[-1] != n_constituents:
        raise ConfigError(
            f"offsets must start at 0 and end at the number of constituents ({n_constituents}), "
            f"got {off[0]} ... {off[-1]}"
        )
    if len(off) > 1 and np.any(off[1:] < off[:-1]):
        j = int(np.argmax(off[1:] < off[:-1]))
        raise ConfigError(f"offsets must be non-decreasing; they decrease at jet {j}")
    return off


def check_constituents(pt, eta, phi, offsets, *, dtype=np.float32, allow_empty=False):
    """Validate the flat constituent arrays of a set of jets and cast them to ``dtype``.

    Raises ConfigError for mismatched lengths, bad offsets, NaN/inf, negative pT, and (unless
    ``allow_empty``) a jet with no constituents or zero summed pT, naming the first such jet.
    Returns ``(pt, eta, phi, offsets)`` (no copy when the dtypes already match).
    """
    dtype = _check_dtype(dtype)
    arrays = []
    for name, a in (("pt", pt), ("eta", eta), ("phi", phi)):
        a = np.asarray(a)
        if a.ndim != 1:
            raise ConfigError(f"{name} must be a flat 1-D array, got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ConfigError(f"{name} must be a float array, got dtype {a.dtype}")
        arrays.append(np.ascontiguousarray(a, dtype=dtype))
    pt, eta, phi = arrays
    if not len(pt) == len(eta) == len(phi):
        raise ConfigError(
            f"pt, eta, phi must have the same length, got {len(pt)}, {len(eta)}, {len(phi)}"
        )
    off = check_offsets(offsets, len(pt))
    for name, a in (("pt", pt), ("eta", eta), ("phi", phi)):
        if not np.isfinite(a).all():
            bad = int(np.argmin(np.isfinite(a)))
            jet = int(np.searchsorted(off, bad, side="right") - 1)
            raise ConfigError(
                f"{name} contains NaN or inf (constituent {bad}, jet {jet}); clean the input "
                f"before making images"
            )
    if len(pt) and pt.min() < 0:
        bad = int(np.argmin(pt))
        jet = int(np.searchsorted(off, bad, side="right") - 1)
        raise ConfigError(f"negative constituent pT {pt[bad]} GeV (constituent {bad}, jet {jet})")
    if not allow_empty:
        counts = np.diff(off)
        if np.any(counts == 0):
            j = int(np.argmax(counts == 0))
            raise ConfigError(
                f"jet {j} has no constituents; a jet image needs at least one (event {j // 2}, "
                f"{'leading' if j % 2 == 0 else 'subleading'} jet)"
            )
        if len(counts):
            total = _segment_sum(pt, off[:-1], counts)
            if np.any(total <= 0):
                j = int(np.argmax(total <= 0))
                raise ConfigError(f"jet {j} has zero summed pT; its centroid is undefined")
    return pt, eta, phi, off


def _check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ConfigError(f"compute dtype must be float32 or float64, got {dt}")
    return dt


# --------------------------------------------------------------------------------------------
# segment helpers
# --------------------------------------------------------------------------------------------
def _segment_sum(a: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of ``a`` over consecutive segments (``starts``, ``counts``); empty segments give 0."""
    if len(starts) == 0:
        return np.zeros(0, a.dtype)
    if counts.all():
        return np.add.reduceat(a, starts)
    out = np.zeros(len(starts), a.dtype)
    nz = counts > 0
    if nz.any():
        out[nz] = np.add.reduceat(a, starts[nz])
    return out


def _chunks(offsets: np.ndarray, target: int | None = None):
    """Jet ranges [j0, j1) holding about ``target`` constituents each (at least one jet)."""
    target = CHUNK_CONSTITUENTS if target is None else target
    n_jets = len(offsets) - 1
    if n_jets <= 0:
        return []
    total = int(offsets[-1])
    marks = np.arange(target, total, target, dtype=np.int64)
    cuts = np.searchsorted(offsets, marks, side="left")
    bounds = np.unique(np.concatenate(([0], cuts, [n_jets])))
    bounds = bounds[(bounds >= 0) & (bounds <= n_jets)]
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------
def _wrap(a: np.ndarray) -> None:
    """Wrap angles to [-pi, pi] in place: a -= 2 pi rint(a / 2 pi) (exact no-op inside)."""
    dt = a.dtype.type
    t = a * dt(1.0 / _TWO_PI)
    np.rint(t, out=t)
    t *= dt(_TWO_PI)
    a -= t


def _preprocess_chunk(pt, eta, phi, counts, starts):
    """Preprocess the jets of one chunk (validated arrays, local ``starts``); returns (x, y).

    Empty jets and zero-pT jets are tolerated (their centroid is taken as 0); see ``preprocess``.
    """
    nonempty = counts > 0
    # 1. wrap phi relative to a reference in the jet (its first constituent): any constituent of a
    #    jet narrower than pi in phi gives the same unwrapped coordinates
    ref = np.zeros(len(counts), pt.dtype)
    ref[nonempty] = phi[starts[nonempty]]
    y = phi - np.repeat(ref, counts)
    _wrap(y)
    # 2. centre on the pT-weighted centroid
    ptsum = _segment_sum(pt, starts, counts)
    inv = np.zeros_like(ptsum)
    np.divide(1, ptsum, out=inv, where=ptsum > 0)
    eta_c = _segment_sum(pt * eta, starts, counts) * inv
    phi_c = _segment_sum(pt * y, starts, counts) * inv
    x = eta - np.repeat(eta_c, counts)
    y -= np.repeat(phi_c, counts)
    _wrap(y)  # re-wrap about the pT-weighted axis
    # 3. principal axis of the pT-weighted second-moment tensor onto the x (eta') axis
    px = pt * x
    sxx = _segment_sum(px * x, starts, counts)
    sxy = _segment_sum(px * y, starts, counts)
    syy = _segment_sum(pt * y * y, starts, counts)
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # angle of the major axis from x
    c = np.repeat(np.cos(theta).astype(pt.dtype, copy=False), counts)
    s = np.repeat(np.sin(theta).astype(pt.dtype, copy=False), counts)
    xr = x * c
    xr += y * s  # rotate by -theta: x' = x cos + y sin, y' = -x sin + y cos
    y *= c
    x *= s
    y -= x
    x = xr
    # 4. flip so the quadrant with the largest summed pT is x > 0, y > 0
    xpos = x > 0
    ypos = y > 0
    # (pt * mask, not np.where: ~10x faster here)
    a = _segment_sum(pt * xpos, starts, counts)  # x > 0
    b = _segment_sum(pt * ypos, starts, counts)  # y > 0
    xpos &= ypos
    pp = _segment_sum(pt * xpos, starts, counts)  # ++
    quads = np.stack([pp, a - pp, b - pp, ptsum - a - b + pp], axis=1)  # ++, +-, -+, --
    best = np.argmax(quads, axis=1)
    fx = np.where(best >= 2, -1, 1).astype(pt.dtype)
    fy = np.where((best == 1) | (best == 3), -1, 1).astype(pt.dtype)
    if (fx < 0).any():
        x *= np.repeat(fx, counts)
    if (fy < 0).any():
        y *= np.repeat(fy, counts)
    return x, y


def _preprocess_validated(pt, eta, phi, off):
    x = np.empty_like(pt)
    y = np.empty_like(pt)
    for j0, j1 in _chunks(off):
        c0, c1 = off[j0], off[j1]
        counts = np.diff(off[j0 : j1 + 1])
        starts = off[j0:j1] - c0
        x[c0:c1], y[c0:c1] = _preprocess_chunk(pt[c0:c1], eta[c0:c1], phi[c0:c1], counts, starts)
    return x, y


def preprocess(pt, eta, phi, offsets, *, dtype=np.float32):
    """Move every jet to its jet-image frame (steps 1-4 of the module docstring).

    Parameters
    ----------
    pt, eta, phi : (n,) float arrays, flat constituents [GeV, -, rad]; phi in (-pi, pi] (any
        finite value is wrapped)
    offsets : (n_jets + 1,) int, jet ``j`` owns ``offsets[j]:offsets[j+1]``
    dtype : compute and output precision, float32 (default, fast) or float64

    Returns
    -------
    pt, x, y : (n,) arrays of ``dtype``; pt unchanged; x = eta', y = phi' in the jet frame:
        pT-weighted centroid at (0, 0), principal axis along x, brightest quadrant x > 0, y > 0.

    Phi is first unwrapped about the jet's first constituent, then measured from the
    pT-weighted centroid and wrapped to [-pi, pi] again, so the frame is exact for every jet
    whose constituents span less than pi in phi (all anti-kT R = 0.8 jets).
    Raises ConfigError for NaN/inf, negative pT, an empty jet (naming it) or bad offsets.
    """
    pt, eta, phi, off = check_constituents(pt, eta, phi, offsets, dtype=dtype)
    x, y = _preprocess_validated(pt, eta, phi, off)
    return pt, x, y


# --------------------------------------------------------------------------------------------
# pixelation
# --------------------------------------------------------------------------------------------
def _pixelate_chunk(pt, x, y, counts, res, buf, j0):
    """Add the constituents of jets j0, j0+1, ... (this chunk) into ``buf``.

    ``buf`` is the flat float32 image buffer of all jets, (n_jets * res^2 + 1,): its last entry
    is a trash bin that receives the out-of-window constituents.
    """
    nj = len(counts)
    npix = res * res
    trash = len(buf) - 1
    h = pt.dtype.type(0.5 * res / WINDOW)
    u = x * h
    u += h  # u = (x + 1) res / 2: row coordinate in pixels
    v = y * h
    v += h
    iu = np.floor(u, out=u).astype(np.intp)
    iv = np.floor(v, out=v).astype(np.intp)
    # out of window: a negative index is a huge unsigned one
    bad = iu.view(np.uintp) >= res
    bad |= iv.view(np.uintp) >= res
    iu *= res
    iu += iv
    iu += np.repeat(np.arange(j0 * npix, (j0 + nj) * npix, npix, dtype=np.intp), counts)
    iu[bad] = trash
    # unbuffered scatter-add, in constituent order (deterministic); fast in numpy >= 1.25
    np.add.at(buf, iu, pt if pt.dtype == np.float32 else pt.astype(np.float32))


def _new_image_buffer(n_jets, res):
    return np.zeros(n_jets * res * res + 1, np.float32)


def _as_images(buf, n_jets, res):
    return buf[:-1].reshape(n_jets, res, res)


def _pixelate_validated(pt, x, y, off, res):
    n_jets = len(off) - 1
    buf = _new_image_buffer(n_jets, res)
    for j0, j1 in _chunks(off):
        c0, c1 = off[j0], off[j1]
        counts = np.diff(off[j0 : j1 + 1])
        _pixelate_chunk(pt[c0:c1], x[c0:c1], y[c0:c1], counts, res, buf, j0)
    return _as_images(buf, n_jets, res)


def pixelate(pt, x, y, offsets, resolution=25):
    """Pixelate preprocessed jets: summed pT per pixel over [-1, 1) x [-1, 1) in (x, y).

    Parameters
    ----------
    pt, x, y : (n,) flat constituents in the jet frame (output of ``preprocess``) [GeV, -, -]
    offsets : (n_jets + 1,) int jet boundaries
    resolution : pixels per side; 25, 50, 75 (papers) or any int in [8, 128]

    Returns
    -------
    images : float32 (n_jets, res, res), ``images[j, i, k]`` = summed pT [GeV] of jet j's
        constituents with x in bin i, y in bin k; constituents outside the window are dropped.
        An empty jet gives an all-zero image.
    """
    res = check_resolution(resolution)
    arrays = []
    for name, a in (("pt", pt), ("x", x), ("y", y)):
        a = np.asarray(a)
        if a.ndim != 1:
            raise ConfigError(f"{name} must be a flat 1-D array, got shape {a.shape}")
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float64)
        arrays.append(a)
    dt = np.result_type(*arrays)
    pt, x, y = (np.ascontiguousarray(a, dtype=dt) for a in arrays)
    if not len(pt) == len(x) == len(y):
        raise ConfigError(f"pt, x, y must have the same length, got {len(pt)}, {len(x)}, {len(y)}")
    off = check_offsets(offsets, len(pt))
    for name, a in (("pt", pt), ("x", x), ("y", y)):
        if not np.isfinite(a).all():
            raise ConfigError(f"{name} contains NaN or inf; clean the input before pixelating")
    return _pixelate_validated(pt, x, y, off, res)


# --------------------------------------------------------------------------------------------
# event images
# --------------------------------------------------------------------------------------------
def check_normalise(normalise) -> str:
    if normalise not in NORMALISATIONS:
        raise ConfigError(f"unknown normalisation {normalise!r}; choose one of {NORMALISATIONS}")
    return normalise


def event_normalise(images: np.ndarray, floor: float = EN_STD_FLOOR, *, out=None) -> np.ndarray:
    """Event normalisation (EN) of arXiv:2312.06152: ``(img - mean) / max(std, floor)``.

    ``images`` is float (n_events, 2, res, res); mean and (population) std are taken over all
    2 res^2 pixels of an event, accumulated in float64; ``floor`` [GeV] (default
    ``EN_STD_FLOOR`` = 1e-3) keeps an all-zero event finite. ``out=images`` works in place.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[1] != 2:
        raise ConfigError(f"event_normalise expects (n_events, 2, res, res), got {imgs.shape}")
    flat = imgs.reshape(len(imgs), -1)
    mean = flat.mean(axis=1, dtype=np.float64)
    std = flat.std(axis=1, dtype=np.float64)
    scale = 1.0 / np.maximum(std, floor)
    if out is None:
        out = np.empty(imgs.shape, np.float32)
    o = out.reshape(len(imgs), -1)
    np.subtract(flat, mean[:, None].astype(np.float32), out=o, casting="unsafe")
    o *= scale[:, None].astype(np.float32)
    return out


def _event_images_validated(pt, eta, phi, off, res, normalise):
    n_jets = len(off) - 1
    buf = _new_image_buffer(n_jets, res)
    for j0, j1 in _chunks(off):
        c0, c1 = off[j0], off[j1]
        counts = np.diff(off[j0 : j1 + 1])
        starts = off[j0:j1] - c0
        p = pt[c0:c1]
        x, y = _preprocess_chunk(p, eta[c0:c1], phi[c0:c1], counts, starts)
        _pixelate_chunk(p, x, y, counts, res, buf, j0)
    out = _as_images(buf, n_jets, res).reshape(n_jets // 2, 2, res, res)
    if normalise == "event":
        event_normalise(out, out=out)
    return out


def jet_images(pt, eta, phi, offsets, resolution=25, normalise="raw", *, dtype=np.float32):
    """The two jet images of every event (arXiv:2312.06152; preprocessing as in this module).

    Parameters
    ----------
    pt, eta, phi : (n,) flat constituents of the two leading jets of every event [GeV, -, rad]
    offsets : (2 n_events + 1,) int; event-major (jet 2i leading, 2i+1 subleading of event i)
    resolution : 25 (default), 50, 75, or any int in [8, 128]
    normalise : "raw" (pixel = summed pT in GeV; the network's input batch-norm does the rest)
        or "event" (EN: each event standardised with the mean and std of its 2 res^2 pixels,
        std floored at ``EN_STD_FLOOR`` = 1e-3 GeV)
    dtype : compute precision of the preprocessing (float32 default; images are float32)

    Returns
    -------
    images : float32 (n_events, 2, res, res); channel 0 leading jet, 1 subleading.

    Raises ConfigError for NaN/inf, negative pT, an empty jet (its index is named), an odd number
    of jets, an unknown normalisation or an unsupported resolution.
    """
    res = check_resolution(resolution)
    normalise = check_normalise(normalise)
    pt, eta, phi, off = check_constituents(pt, eta, phi, offsets, dtype=dtype)
    if (len(off) - 1) % 2:
        raise ConfigError(
            f"jet_images needs two jets per event (event-major), got {len(off) - 1} jets"
        )
    return _event_images_validated(pt, eta, phi, off, res, normalise)


def select_events(pt, eta, phi, offsets, events):
    """Constituents of the two jets of the chosen ``events`` (int indices, any order, repeats ok).

    Returns ``pt, eta, phi, offsets`` for the selection (event-major), without Python loops.
    """
    off = check_offsets(offsets, len(pt))
    if (len(off) - 1) % 2:
        raise ConfigError(f"need two jets per event (event-major), got {len(off) - 1} jets")
    ev = np.asarray(events)
    if ev.ndim != 1 or not np.issubdtype(ev.dtype, np.integer):
        raise ConfigError("events must be a 1-D array of integer event indices")
    n_events = (len(off) - 1) // 2
    if len(ev) and (ev.min() < 0 or ev.max() >= n_events):
        raise ConfigError(f"event indices must lie in [0, {n_events}), got {ev.min()}..{ev.max()}")
    idx, new_off = gather_events(off, ev.astype(np.int64))
    return np.asarray(pt)[idx], np.asarray(eta)[idx], np.asarray(phi)[idx], new_off


def gather_events(off: np.ndarray, events: np.ndarray):
    """Flat constituent indices and new offsets of the jets of ``events`` (in that order)."""
    jets = np.stack([2 * events, 2 * events + 1], axis=1).reshape(-1)
    starts = off[jets]
    counts = off[jets + 1] - starts
    new_off = np.zeros(len(jets) + 1, np.int64)
    np.cumsum(counts, out=new_off[1:])
    idx = np.arange(new_off[-1], dtype=np.int64)
    idx += np.repeat(starts - new_off[:-1], counts)
    return idx, new_off


def file_images(source, resolution=25, normalise="raw", events=None):
    """Jet images of an events file (path or ``storage.EventSample``), optionally of a subset.

    Raises InvalidFileError (from ``storage.read_events``, or when the sample was read without
    its constituents) and ConfigError as ``jet_images``.
    """
    from . import storage

    sample = source if hasattr(source, "constituents") else storage.read_events(source)
    const = sample.constituents
    if const is None:
        raise InvalidFileError(
            f"{getattr(sample, 'path', source)}: read without constituents; read it with "
            f"constituents=True to make jet images"
        )
    pt, eta, phi, off = const["pt"], const["eta"], const["phi"], const["offsets"]
    if events is not None:
        pt, eta, phi, off = select_events(pt, eta, phi, off, events)
    return jet_images(pt, eta, phi, off, resolution, normalise)


# --------------------------------------------------------------------------------------------
# toy jets for tests, benchmarks and demos
# --------------------------------------------------------------------------------------------
def synthetic_jets(n_jets, rng, *, n_min=50, n_max=150, jet_pt=1000.0, width=0.25,
                   eta_max=2.0, dtype=np.float32):
    """Toy jets: pT-ordered constituents in 1-3 Gaussian prongs around a random axis.

    Each jet has ``n_min..n_max`` constituents with pT fractions from a steep power law summing
    to ``jet_pt`` (GeV), soft constituents spread wider (sigma ~ width / sqrt(z / z_mean))
    than hard ones; axes uniform in |eta| < eta_max and phi; phi wrapped to (-pi, pi], so jets
    near +-pi straddle the boundary. Not physics: a fast stand-in for the event files.

    Returns ``pt, eta, phi, offsets`` (flat arrays of ``dtype``, offsets int64).
    """
    counts = rng.integers(n_min, n_max + 1, size=n_jets)
    off = np.zeros(n_jets + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    n = int(off[-1])
    jet = np.repeat(np.arange(n_jets), counts)
    z = rng.pareto(1.5, size=n) + 0.05
    zsum = np.add.reduceat(z, off[:-1])
    z /= np.repeat(zsum, counts)
    # sort constituents of every jet by decreasing pT (like detector output)
    order = np.lexsort((-z, jet))
    z = z[order]
    pt = jet_pt * z * np.repeat(rng.uniform(0.8, 1.2, n_jets), counts)
    # 1-3 prongs: constituent goes to prong k with prong offsets of ~0.3
    n_prong = rng.integers(1, 4, size=n_jets)
    prong = (rng.uniform(size=n) * np.repeat(n_prong, counts)).astype(np.int64)
    prong[off[:-1]] = 0  # leading constituent in the main prong
    pang = rng.uniform(0, _TWO_PI, size=(n_jets, 3))
    pdist = np.concatenate([np.zeros((n_jets, 1)), rng.uniform(0.1, 0.4, (n_jets, 2))], axis=1)
    dx = (pdist * np.cos(pang))[jet, prong]
    dy = (pdist * np.sin(pang))[jet, prong]
    zmean = np.repeat(1.0 / counts, counts)
    sig = width * np.minimum(1.0, np.sqrt(zmean / np.maximum(z, 1e-6)) * 0.3)
    aniso = np.repeat(rng.uniform(0.4, 1.0, n_jets), counts)
    dx = dx + sig * rng.standard_normal(n)
    dy = dy + sig * aniso * rng.standard_normal(n)
    eta0 = rng.uniform(-eta_max, eta_max, n_jets)
    phi0 = rng.uniform(-np.pi, np.pi, n_jets)
    eta = np.repeat(eta0, counts) + dx
    phi = np.repeat(phi0, counts) + dy
    phi = np.where(phi > np.pi, phi - _TWO_PI, phi)
    phi = np.where(phi <= -np.pi, phi + _TWO_PI, phi)
    return pt.astype(dtype), eta.astype(dtype), phi.astype(dtype), off
