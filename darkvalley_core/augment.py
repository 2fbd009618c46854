"""Physics-inspired augmentation of dijet events: pT smearing, jet rotation, "+n" copies.

After Z.-E. Chen, C.-W. Chiang, F.-Y. Hsieh, arXiv:2412.00198 (and Dillon et al.,
arXiv:2301.04660 for physics augmentations); defaults follow the authors' code
(``r10222035/data_augmentation``, ``Sample/pT_smearing_jet_rotation.py``).

- **pT smearing**: every constituent pT' ~ N(pT, f(pT)) with
  ``lecture``: f = sqrt(0.052 pT^2 + 1.502 pT) (as printed and used literally; default) or
  ``delphes``: f = sqrt(0.05^2 pT^2 + 1.50^2 pT) (the Delphes CMS calorimeter term it resembles),
  pT and f in GeV. pT' <= 0 is set to 0, i.e. the constituent is dropped. The centroid and axes
  move, so the jet is preprocessed again (``smear_and_preprocess``).
- **rotation**: after preprocessing, every jet is turned about its centre (0, 0) by its own
  angle uniform in [-max_angle, max_angle) (default pi): x' = x cos a - y sin a,
  y' = x sin a + y cos a. pT and the distance to the centre of every constituent are kept.
- **combined**: smear, preprocess, rotate.
- **"+n"**: every training event is kept (copy 0, never altered) and n augmented copies
  (copies 1..n) are added; only the training split is augmented (split first).

Reproducibility: copy k of event e is a pure function of (seed, event id e, k) and the event's
constituents, whatever the batching or order. Random numbers come from a counter-based
generator (SplitMix64 mixing of a key derived from (seed, stream, event id, copy) plus the
constituent's position in the event), evaluated vectorised over all constituents of a batch;
uniforms use 32 (normals, Box-Muller, so |z| <= 6.8) or 53 (angles) bits. Copy 0 is exactly
``images.jet_images``.

Public API:
``smear_width``, ``smear_pt``, ``smear_and_preprocess``, ``rotate``, ``combined``, ``augment``
(one random version with a numpy Generator); ``augmented_images`` and ``rotation_angles``
(reproducible copies); ``AugmentedBatches`` (a "+n" set made on the fly, batch by batch, so
memory does not grow with n); ``torch_rotate_pixelate`` (rotation + pixelation on a torch
device). Constituent arrays follow the data contract of ``darkvalley_core.images``.
"""

from __future__ import annotations

import numpy as np

from . import images as _im
from .errors import ConfigError

METHODS = ("none", "smear", "rotate", "combined")
SMEAR_FORMULAS = ("lecture", "delphes")

_STREAM_SMEAR = 0x736D656172  # "smear"
_STREAM_ROTATE = 0x726F74617465  # "rotate"
_STREAM_SHUFFLE = 0x73687566666C65  # "shuffle"

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)


# --------------------------------------------------------------------------------------------
# counter-based random numbers
# --------------------------------------------------------------------------------------------
def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (a bijection of uint64), in place on a uint64 array."""
    z ^= z >> _U64(30)
    z *= _M1
    z ^= z >> _U64(27)
    z *= _M2
    z ^= z >> _U64(31)
    return z


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_seed(seed) -> int:
    if not _is_int(seed):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if seed < 0 or seed >= 2**63:
        raise ConfigError(f"seed must be a non-negative integer below 2**63, got {seed}")
    return int(seed)


def event_keys(seed: int, event_ids, copies, stream: int) -> np.ndarray:
    """uint64 key per (event, copy) for one random stream; a pure function of its inputs."""
    ids = np.asarray(event_ids, dtype=np.int64).view(np.uint64)
    cps = np.broadcast_to(np.asarray(copies, dtype=np.int64), ids.shape).view(np.uint64)
    base = _mix64(np.array([(_check_seed(seed) * 0x9E3779B1 + stream) % 2**64], np.uint64))
    k = _mix64(ids ^ base)
    k += cps * _GOLDEN
    return _mix64(k)


def _uniform_bits(keys_per_item: np.ndarray, counter: np.ndarray) -> np.ndarray:
    z = counter.astype(np.uint64)
    z += _U64(1)
    z *= _GOLDEN
    z += keys_per_item
    return _mix64(z)


def keyed_normals(keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Standard normals, one per position 0..counts[e]-1 of every event e (Box-Muller), float64.

    Value at position p of event e depends only on (keys[e], p).
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.arange(n, dtype=np.int64) - starts
    z = _uniform_bits(np.repeat(keys, counts), pos)
    u1 = ((z >> _U64(32)).astype(np.float64) + 0.5) * 2.0**-32  # (0, 1)
    u2 = (z & _U64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32  # [0, 1)
    np.log(u1, out=u1)
    u1 *= -2.0
    np.sqrt(u1, out=u1)
    u2 *= 2.0 * np.pi
    np.cos(u2, out=u2)
    u1 *= u2
    return u1


def keyed_angles(keys: np.ndarray, max_angle: float, per_event: int = 2) -> np.ndarray:
    """Angles uniform in [-max_angle, max_angle), ``per_event`` per key; shape (n, per_event)."""
    n = len(keys)
    pos = np.tile(np.arange(per_event, dtype=np.int64), n)
    z = _uniform_bits(np.repeat(keys, per_event), pos)
    u = (z >> _U64(11)).astype(np.float64) * 2.0**-53
    return ((2.0 * u - 1.0) * max_angle).reshape(n, per_event)


# --------------------------------------------------------------------------------------------
# the three augmentations
# --------------------------------------------------------------------------------------------
def check_formula(formula) -> str:
    if formula not in SMEAR_FORMULAS:
        raise ConfigError(
            f"unknown pT-smearing formula {formula!r}; choose one of {SMEAR_FORMULAS}"
        )
    return formula


def check_method(method) -> str:
    if method not in METHODS:
        raise ConfigError(f"unknown augmentation {method!r}; choose one of {METHODS}")
    return method


def _check_max_angle(max_angle) -> float:
    a = float(max_angle)
    if not np.isfinite(a) or a < 0:
        raise ConfigError(f"max_angle must be a finite angle >= 0 rad, got {max_angle!r}")
    return a


def smear_width(pt, formula="lecture") -> np.ndarray:
    """Gaussian width f(pT) [GeV] of the pT smearing (arXiv:2412.00198), same dtype as pt.

    lecture: sqrt(0.052 pT^2 + 1.502 pT); delphes: sqrt(0.05^2 pT^2 + 1.50^2 pT).
    """
    check_formula(formula)
    pt = np.asarray(pt)
    dt = pt.dtype.type if pt.dtype in (np.float32, np.float64) else np.float64
    a, b = (0.052, 1.502) if formula == "lecture" else (0.05**2, 1.50**2)
    w = pt * dt(a)
    w += dt(b)
    w *= pt
    return np.sqrt(w, out=w)


def _smear_validated(pt, eta, phi, off, normals, formula, untouched=None):
    """Smear with the given normals; ``untouched`` (bool per constituent) keeps pT and presence."""
    new = smear_width(pt, formula)
    new *= normals  # float64 normals -> cast back into pt's dtype
    new += pt
    keep = new > 0
    if untouched is not None:
        keep |= untouched
    counts = _im._segment_sum(keep.astype(np.int64), off[:-1], np.diff(off))
    off_new = np.zeros_like(off)
    np.cumsum(counts, out=off_new[1:])
    return new[keep], eta[keep], phi[keep], off_new


def smear_pt(pt, eta, phi, offsets, rng=None, formula="lecture", *, normals=None, dtype=np.float32):
    """Smear every constituent pT by N(0, f(pT)) and drop those with pT' <= 0.

    Parameters
    ----------
    pt, eta, phi, offsets : flat constituents and jet boundaries (see ``darkvalley_core.images``)
    rng : numpy Generator drawing the normals, or None when ``normals`` is given
    formula : "lecture" (default, literal) or "delphes"; see ``smear_width``
    normals : optional (n,) standard normals to use instead of ``rng`` (reproducible streams)

    Returns
    -------
    pt, eta, phi, offsets : new flat arrays (``dtype``) without the dropped constituents, and the
        new int64 offsets. A jet may end up empty; ``preprocess`` would then raise, while the
        augmentation pipeline turns it into an empty image. Redo the preprocessing afterwards
        (``smear_and_preprocess``).
    """
    check_formula(formula)
    pt, eta, phi, off = _im.check_constituents(pt, eta, phi, offsets, dtype=dtype, allow_empty=True)
    normals = _normals_arg(rng, normals, len(pt))
    return _smear_validated(pt, eta, phi, off, normals, formula)


def _normals_arg(rng, normals, n):
    if normals is not None:
        z = np.asarray(normals, dtype=np.float64)
        if z.shape != (n,):
            raise ConfigError(f"normals must have shape ({n},), got {z.shape}")
        return z
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("give a numpy Generator (rng=np.random.default_rng(seed)) or normals=")
    return rng.standard_normal(n)


def smear_and_preprocess(pt, eta, phi, offsets, rng=None, formula="lecture", *, normals=None,
                         dtype=np.float32):
    """pT smearing followed by the jet-image preprocessing; returns (pt, x, y, offsets).

    Jets left empty by the smearing keep zero constituents (an all-zero image).
    """
    p, e, f, off = smear_pt(pt, eta, phi, offsets, rng, formula, normals=normals, dtype=dtype)
    x, y = _im._preprocess_validated(p, e, f, off)
    return p, x, y, off


def _rotate_validated(x, y, off, angles):
    counts = np.diff(off)
    c = np.repeat(np.cos(angles).astype(x.dtype), counts)
    s = np.repeat(np.sin(angles).astype(x.dtype), counts)
    xr = x * c
    xr -= y * s
    yr = x * s
    yr += y * c
    return xr, yr


def rotate(x, y, offsets, rng=None, max_angle=np.pi, *, angles=None):
    """Rotate every preprocessed jet about its centre by one angle per jet.

    Parameters
    ----------
    x, y : (n,) float jet-frame coordinates (output of ``preprocess``)
    offsets : (n_jets + 1,) int jet boundaries
    rng : numpy Generator drawing angles uniform in [-max_angle, max_angle] (default pi), or None
        when ``angles`` (n_jets,) [rad] are given

    Returns
    -------
    x', y' : new arrays, x' = x cos a - y sin a, y' = x sin a + y cos a (a = the jet's angle).
    """
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y, dtype=x.dtype)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"x and y must be flat arrays of equal length, got {x.shape}, {y.shape}")
    off = _im.check_offsets(offsets, len(x))
    n_jets = len(off) - 1
    if angles is None:
        a = _check_max_angle(max_angle)
        if not isinstance(rng, np.random.Generator):
            raise ConfigError("give a numpy Generator (rng=np.random.default_rng(seed)) or angles=")
        angles = rng.uniform(-a, a, size=n_jets)
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (n_jets,) or not np.isfinite(angles).all():
        raise ConfigError(f"angles must be {n_jets} finite numbers (one per jet)")
    return _rotate_validated(x, y, off, angles)


def augment(pt, eta, phi, offsets, method="rotate", rng=None, formula="lecture",
            max_angle=np.pi, *, dtype=np.float32):
    """One augmented version of every jet: "none", "smear", "rotate" or "combined".

    Returns (pt, x, y, offsets) in the jet frame, ready for ``images.pixelate``. ``rng`` is a
    numpy Generator (ignored for "none").
    """
    method = check_method(method)
    check_formula(formula)
    a = _check_max_angle(max_angle)
    if method in ("smear", "combined"):
        p, x, y, off = smear_and_preprocess(pt, eta, phi, offsets, rng, formula, dtype=dtype)
    else:
        p, e, f, off = _im.check_constituents(pt, eta, phi, offsets, dtype=dtype)
        x, y = _im._preprocess_validated(p, e, f, off)
    if method in ("rotate", "combined"):
        x, y = rotate(x, y, off, rng, a)
    return p, x, y, off


def combined(pt, eta, phi, offsets, rng, formula="lecture", max_angle=np.pi, *,
             dtype=np.float32):
    """Combined augmentation: smear, preprocess, rotate; returns (pt, x, y, offsets)."""
    return augment(pt, eta, phi, offsets, "combined", rng, formula, max_angle, dtype=dtype)


# --------------------------------------------------------------------------------------------
# reproducible "+n" copies
# --------------------------------------------------------------------------------------------
def rotation_angles(seed, event_ids, copy_index, max_angle=np.pi) -> np.ndarray:
    """The rotation angles [rad] of copy ``copy_index`` of each event, (n_events, 2) float64.

    Exactly the angles ``augmented_images`` / ``AugmentedBatches`` use for "rotate" and
    "combined" (column 0 leading jet, 1 subleading; 0 for copy 0): hand them to
    ``torch_rotate_pixelate`` to make the same images on a GPU.
    """
    a = _check_max_angle(max_angle)
    ids = np.atleast_1d(np.asarray(event_ids, dtype=np.int64))
    cps = np.broadcast_to(np.asarray(copy_index, dtype=np.int64), ids.shape)
    if (cps < 0).any():
        raise ConfigError("copy_index must be >= 0 (0 = the original event)")
    ang = keyed_angles(event_keys(_check_seed(seed), ids, cps, _STREAM_ROTATE), a)
    ang *= (cps > 0)[:, None]
    return ang


def _check_events(off, event_ids, copy_index):
    n_jets = len(off) - 1
    if n_jets % 2:
        raise ConfigError(f"augmented images need two jets per event, got {n_jets} jets")
    n_events = n_jets // 2
    ids = np.asarray(event_ids)
    if ids.shape != (n_events,) or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"event_ids must be {n_events} integers (one per event), got {ids.shape}")
    cps = np.asarray(copy_index)
    if not np.issubdtype(cps.dtype, np.integer) or cps.ndim > 1 or (
        cps.ndim == 1 and cps.shape != (n_events,)
    ):
        raise ConfigError("copy_index must be an integer or one integer per event")
    if (cps < 0).any():
        raise ConfigError("copy_index must be >= 0 (0 = the original event)")
    cps = np.broadcast_to(cps.astype(np.int64), (n_events,))
    return ids.astype(np.int64), cps


def _augment_events(pt, eta, phi, off, ids, cps, method, seed, formula, max_angle, pre=None):
    """Keyed augmentation of whole events (validated inputs); returns (pt, x, y, offsets).

    ``pre`` = (x, y) already preprocessed, usable when method is "none" or "rotate".
    """
    active = cps > 0
    if method in ("smear", "combined") and active.any():
        ev_counts = off[2::2] - off[:-1:2]
        z = keyed_normals(event_keys(seed, ids, cps, _STREAM_SMEAR), ev_counts)
        untouched = np.repeat(~active, ev_counts)
        z[untouched] = 0.0  # copy 0 stays exact (pT + f * 0 = pT, nothing dropped)
        pt, eta, phi, off = _smear_validated(pt, eta, phi, off, z, formula, untouched)
        pre = None
    if pre is None:
        x, y = _im._preprocess_validated(pt, eta, phi, off)
    else:
        x, y = pre
    if method in ("rotate", "combined") and active.any():
        ang = rotation_angles(seed, ids, cps, max_angle).reshape(-1)  # copy 0: angle 0, exact
        x, y = _rotate_validated(x, y, off, ang)
    return pt, x, y, off


def augmented_images(pt, eta, phi, offsets, event_ids, copy_index, method="rotate",
                     resolution=25, seed=0, normalise="raw", formula="lecture",
                     max_angle=np.pi, *, dtype=np.float32):
    """Images of copy ``copy_index`` of each event, reproducible from ``seed``.

    Parameters
    ----------
    pt, eta, phi, offsets : constituents of the two leading jets of n_events events (event-major)
    event_ids : (n_events,) int, a unique id per event (e.g. its row in the event file); copy k
        of event e is the same image whatever batch it is produced in
    copy_index : int or (n_events,) ints; 0 = the original (identical to ``jet_images``),
        k >= 1 = the k-th augmented copy
    method : "none", "smear", "rotate" (default) or "combined"
    resolution, normalise : as in ``images.jet_images``
    seed : non-negative int; formula: "lecture" | "delphes"; max_angle [rad]

    Returns
    -------
    float32 (n_events, 2, res, res)
    """
    res = _im.check_resolution(resolution)
    normalise = _im.check_normalise(normalise)
    method = check_method(method)
    check_formula(formula)
    a = _check_max_angle(max_angle)
    seed = _check_seed(seed)
    pt, eta, phi, off = _im.check_constituents(pt, eta, phi, offsets, dtype=dtype)
    ids, cps = _check_events(off, event_ids, copy_index)
    p, x, y, o = _augment_events(pt, eta, phi, off, ids, cps, method, seed, formula, a)
    imgs = _im._pixelate_validated(p, x, y, o, res).reshape(len(ids), 2, res, res)
    if normalise == "event":
        _im.event_normalise(imgs, out=imgs)
    return imgs


class AugmentedBatches:
    """Batches of a "+n" augmented training set, made on the fly (arXiv:2412.00198).

    The set holds, for every event, the original (copy 0) and ``n_copies`` augmented copies;
    each pass yields ``(images, labels, weights)``: float32 (B, 2, res, res), labels (B,) and
    float32 weights (B,) of the items' events (copies inherit both). Items are shuffled per pass
    (``shuffle=True``; the order of pass ``epoch`` is fixed by ``seed``), but each image depends
    only on (seed, event id, copy), never on the batching. Only one batch of images exists at a
    time, so memory does not grow with n; for "rotate" and "none" the preprocessing is done once
    in the constructor and batches only rotate and pixelate.

    Parameters
    ----------
    pt, eta, phi, offsets : constituents of the training events' two leading jets (event-major)
    labels : (n_events,) per-event labels; weights : (n_events,) or None (ones)
    n_copies : n of "+n" (0 gives the plain, un-augmented set)
    method, resolution, normalise, seed, formula, max_angle : as in ``augmented_images``
    batch_size : items per batch; drop_last : skip a final short batch
    event_ids : (n_events,) unique ids (default 0..n_events-1); pass the file rows so an event
        keeps its copies whatever subset it is in
    """

    def __init__(self, pt, eta, phi, offsets, labels, weights=None, *, n_copies=5,
                 method="rotate", resolution=25, normalise="raw", batch_size=512, seed=0,
                 event_ids=None, shuffle=True, drop_last=False, formula="lecture",
                 max_angle=np.pi):
        self.resolution = _im.check_resolution(resolution)
        self.normalise = _im.check_normalise(normalise)
        self.method = check_method(method)
        self.formula = check_formula(formula)
        self.max_angle = _check_max_angle(max_angle)
        self.seed = _check_seed(seed)
        if not _is_int(n_copies) or n_copies < 0:
            raise ConfigError(f"n_copies must be an integer >= 0, got {n_copies!r}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.n_copies = int(n_copies)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.pt, self.eta, self.phi, self.offsets = _im.check_constituents(pt, eta, phi, offsets)
        n_jets = len(self.offsets) - 1
        if n_jets % 2 or n_jets == 0:
            raise ConfigError(f"need two jets per event and at least one event, got {n_jets} jets")
        self.n_events = n_jets // 2
        if event_ids is None:
            event_ids = np.arange(self.n_events, dtype=np.int64)
        self.event_ids, _ = _check_events(self.offsets, event_ids, 0)
        self.labels = np.asarray(labels)
        if self.labels.shape[:1] != (self.n_events,):
            raise ConfigError(f"labels must have one entry per event ({self.n_events})")
        if weights is None:
            weights = np.ones(self.n_events, np.float32)
        self.weights = np.asarray(weights, dtype=np.float32)
        if self.weights.shape != (self.n_events,) or not np.isfinite(self.weights).all():
            raise ConfigError(f"weights must be {self.n_events} finite numbers (one per event)")
        self._pre = None
        if self.method in ("none", "rotate"):  # preprocessing is the same for every copy
            self._pre = _im._preprocess_validated(self.pt, self.eta, self.phi, self.offsets)
        self.epoch = 0

    @property
    def n_items(self) -> int:
        """Events in one pass: n_events x (n_copies + 1)."""
        return self.n_events * (self.n_copies + 1)

    def __len__(self) -> int:
        n, b = self.n_items, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffling of the next pass (passes advance it by one automatically)."""
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Item numbers of a pass in yield order; item = event * (n_copies + 1) + copy."""
        n = self.n_items
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        e = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed, _STREAM_SHUFFLE, e]).permutation(n)

    def batch(self, items) -> tuple:
        """(images, labels, weights) of the given item numbers (any subset, any order)."""
        items = np.asarray(items, dtype=np.int64)
        events, copies = np.divmod(items, self.n_copies + 1)
        idx, off = _im.gather_events(self.offsets, events)
        pt = self.pt[idx]
        pre = None if self._pre is None else (self._pre[0][idx], self._pre[1][idx])
        eta = phi = None
        if pre is None:
            eta, phi = self.eta[idx], self.phi[idx]
        p, x, y, o = _augment_events(pt, eta, phi, off, self.event_ids[events], copies,
                                     self.method, self.seed, self.formula, self.max_angle, pre)
        res = self.resolution
        imgs = _im._pixelate_validated(p, x, y, o, res).reshape(len(items), 2, res, res)
        if self.normalise == "event":
            _im.event_normalise(imgs, out=imgs)
        return imgs, self.labels[events], self.weights[events]

    def __iter__(self):
        order = self.order()
        self.epoch += 1
        b = self.batch_size
        stop = len(self) * b
        for i in range(0, min(stop, len(order)), b):
            yield self.batch(order[i : i + b])


# --------------------------------------------------------------------------------------------
# torch: rotate and pixelate on the training device
# --------------------------------------------------------------------------------------------
def torch_rotate_pixelate(pt, x, y, offsets, angles, resolution=25):
    """Rotate preprocessed jets by ``angles`` and pixelate them with torch (GPU-friendly).

    pt, x, y : (n,) float torch tensors on one device (jet frame, as from ``preprocess``)
    offsets : (n_jets + 1,) int64 tensor; angles : (n_jets,) float tensor [rad]
    Returns float32 (n_jets, res, res) on the same device, equal to
    ``pixelate(pt, *rotate(x, y, offsets, angles=angles), offsets, res)`` up to float rounding
    at pixel edges. Uses ``index_add_`` over flat pixel indices (one kernel for the batch).
    """
    import torch

    res = _im.check_resolution(resolution)
    dev = x.device
    counts = offsets[1:] - offsets[:-1]
    n_jets = counts.numel()
    jet = torch.repeat_interleave(torch.arange(n_jets, device=dev), counts)
    c = torch.cos(angles).to(x.dtype)[jet]
    s = torch.sin(angles).to(x.dtype)[jet]
    xr = x * c - y * s
    yr = x * s + y * c
    h = 0.5 * res / _im.WINDOW
    iu = torch.floor(xr * h + h).long()
    iv = torch.floor(yr * h + h).long()
    ok = (iu >= 0) & (iu < res) & (iv >= 0) & (iv < res)
    npix = res * res
    flat = torch.where(ok, jet * npix + iu * res + iv, torch.full_like(iu, n_jets * npix))
    out = torch.zeros(n_jets * npix + 1, dtype=torch.float32, device=dev)
    out.index_add_(0, flat, pt.to(torch.float32))
    return out[:-1].view(n_jets, res, res)


class DeviceAugmentedBatches(AugmentedBatches):
    """The "+n" set of ``AugmentedBatches`` (methods "none" and "rotate"), made on a torch device.

    The constituents are preprocessed once on the CPU and then live on the training device
    (pt, x, y and offsets as tensors, with the rotation angle of every (event, copy, jet) from
    ``rotation_angles``); each batch gathers its jets, rotates and pixelates them there with
    ``torch_rotate_pixelate``. On a GPU the training step therefore never waits for the CPU, and
    the memory of a "+n" set still does not grow with n. Same items, same order (same shuffling
    seed) and the same images as ``AugmentedBatches`` up to float rounding at pixel edges.
    pT smearing redoes the preprocessing for every copy, which is CPU code: "smear" and
    "combined" stay with ``AugmentedBatches``.

    Yields (images float32 (B, 2, res, res), labels (B,), None) as tensors on ``device``;
    the item numbering, shuffling and iteration are those of ``AugmentedBatches``.
    """

    def __init__(self, pt, eta, phi, offsets, labels, *, n_copies=5, method="rotate",
                 resolution=25, normalise="raw", batch_size=512, seed=0, event_ids=None,
                 shuffle=True, max_angle=np.pi, device="cpu"):
        import torch

        if check_method(method) not in ("none", "rotate"):
            raise ConfigError(f"augmentation {method!r} is made on the CPU; use AugmentedBatches")
        self.resolution = _im.check_resolution(resolution)
        self.normalise = _im.check_normalise(normalise)
        self.seed = _check_seed(seed)
        self.n_copies = int(n_copies) if method == "rotate" else 0
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = False
        pt, eta, phi, off = _im.check_constituents(pt, eta, phi, offsets)
        n_jets = len(off) - 1
        if n_jets % 2 or n_jets == 0:
            raise ConfigError(f"need two jets per event and at least one event, got {n_jets} jets")
        self.n_events = n_jets // 2
        ids = np.arange(self.n_events, dtype=np.int64) if event_ids is None else event_ids
        ids, _ = _check_events(off, ids, 0)
        x, y = _im._preprocess_validated(pt, eta, phi, off)
        p = pt
        self.device = torch.device(device)
        to = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt,  # noqa: E731
                                           device=self.device)
        self.pt, self.x, self.y = to(p, torch.float32), to(x, torch.float32), to(y, torch.float32)
        self.offsets = to(off, torch.int64)
        self.labels = to(np.asarray(labels), torch.float32)
        angles = np.stack([rotation_angles(self.seed, ids, k, max_angle)
                           for k in range(self.n_copies + 1)], axis=1)  # (events, copies+1, 2)
        self.angles = to(angles, torch.float32)
        self.epoch = 0

    def batch(self, items):
        import torch

        items = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device)
        events = torch.div(items, self.n_copies + 1, rounding_mode="floor")
        copies = items - events * (self.n_copies + 1)
        jets = torch.stack([2 * events, 2 * events + 1], dim=1).reshape(-1)
        starts = self.offsets[jets]
        counts = self.offsets[jets + 1] - starts
        new_off = torch.zeros(jets.numel() + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(counts, 0, out=new_off[1:])
        idx = torch.arange(int(new_off[-1]), device=self.device) + \
            torch.repeat_interleave(starts - new_off[:-1], counts)
        angles = self.angles[events, copies].reshape(-1)
        res = self.resolution
        imgs = torch_rotate_pixelate(self.pt[idx], self.x[idx], self.y[idx], new_off, angles,
                                     res).view(len(items), 2, res, res)
        if self.normalise == "event":
            flat = imgs.reshape(len(items), -1).double()
            mean = flat.mean(dim=1)
            std = flat.std(dim=1, unbiased=False).clamp_min(_im.EN_STD_FLOOR)
            imgs = ((flat - mean[:, None]) / std[:, None]).float().view_as(imgs)
        return imgs, self.labels[events], None
