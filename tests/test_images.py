"""Jet-image preprocessing and pixelation (darkvalley_core.images) on synthetic jets."""

from __future__ import annotations

import numpy as np
import pytest

from darkvalley_core import images as im
from darkvalley_core.errors import ConfigError, InvalidFileError


def blob_jets(n_jets, seed=0, phi0=None, eta0=None, n_const=60, spread=(0.05, 0.3)):
    """Gaussian blobs around random axes, elongated and tilted at random, float64."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(n_const // 2, n_const + 1, n_jets)
    off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = off[-1]
    jet = np.repeat(np.arange(n_jets), counts)
    a = rng.uniform(*spread, n_jets)[jet]
    b = a * rng.uniform(0.2, 0.7, n_jets)[jet]
    t = rng.uniform(0, np.pi, n_jets)[jet]
    u, v = a * rng.standard_normal(n), b * rng.standard_normal(n)
    u += 0.3 * a * np.abs(rng.standard_normal(n))  # asymmetric, so the brightest quadrant is clear
    deta = u * np.cos(t) - v * np.sin(t)
    dphi = u * np.sin(t) + v * np.cos(t)
    e0 = rng.uniform(-2, 2, n_jets) if eta0 is None else np.full(n_jets, eta0)
    p0 = rng.uniform(-np.pi, np.pi, n_jets) if phi0 is None else np.full(n_jets, phi0)
    eta = e0[jet] + deta
    phi = np.angle(np.exp(1j * (p0[jet] + dphi)))  # wrapped to (-pi, pi]
    pt = rng.exponential(20.0, n) + 0.5
    return pt, eta, phi, off


def moments(pt, x, y, off):
    s = np.add.reduceat(pt, off[:-1])
    cx = np.add.reduceat(pt * x, off[:-1]) / s
    cy = np.add.reduceat(pt * y, off[:-1]) / s
    sxx = np.add.reduceat(pt * x * x, off[:-1]) / s
    syy = np.add.reduceat(pt * y * y, off[:-1]) / s
    sxy = np.add.reduceat(pt * x * y, off[:-1]) / s
    return cx, cy, sxx, syy, sxy


def all_inside(x, y, off):
    """Jets whose constituents all lie inside the image window."""
    out = ((np.abs(x) >= 1) | (np.abs(y) >= 1)).astype(int)
    return np.add.reduceat(out, off[:-1]) == 0


@pytest.fixture(scope="module")
def jets():
    return blob_jets(300, seed=1)


def test_centroid_at_origin_and_image_centre(jets):
    pt, eta, phi, off = jets
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    cx, cy, *_ = moments(p, x, y, off)
    assert np.abs(cx).max() < 1e-9 and np.abs(cy).max() < 1e-9
    p32, x32, y32 = im.preprocess(pt, eta, phi, off)  # float32 default
    assert x32.dtype == np.float32
    cx32, cy32, *_ = moments(p32.astype(float), x32.astype(float), y32.astype(float), off)
    assert np.abs(cx32).max() < 2e-5 and np.abs(cy32).max() < 2e-5
    # image centroid (pixel centres) within half a pixel of the image centre, for jets fully inside
    res = 25
    img = im.pixelate(p, x, y, off, res)
    inside = all_inside(x, y, off)
    centres = -1 + (np.arange(res) + 0.5) * 2 / res
    tot = img.sum(axis=(1, 2))
    ix = (img.sum(axis=2) @ centres) / tot
    iy = (img.sum(axis=1) @ centres) / tot
    assert inside.sum() > 100
    assert np.abs(ix[inside]).max() <= 1 / res + 1e-6 and np.abs(iy[inside]).max() <= 1 / res + 1e-6


def test_principal_axis_along_x(jets):
    pt, eta, phi, off = jets
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    _, _, sxx, syy, sxy = moments(p, x, y, off)
    assert np.all(np.abs(sxy) < 1e-9 * (sxx + syy))  # tensor diagonal in (x, y)
    assert np.all(sxx >= syy)  # larger eigenvalue along x = eta' = image axis -2 (rows)
    # the image agrees: spread along axis -2 exceeds that along axis -1
    img = im.pixelate(p, x, y, off, 50).astype(float)
    c = -1 + (np.arange(50) + 0.5) / 25
    tot = img.sum(axis=(1, 2))
    vx = (img.sum(axis=2) @ c**2) / tot
    vy = (img.sum(axis=1) @ c**2) / tot
    clear = sxx > 2 * syy
    assert clear.sum() > 100 and np.all(vx[clear] > vy[clear])


def test_brightest_quadrant_is_x_pos_y_pos(jets):
    pt, eta, phi, off = jets
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    q = np.stack([np.add.reduceat(np.where(m, p, 0), off[:-1]) for m in
                  ((x > 0) & (y > 0), (x > 0) & (y <= 0), (x <= 0) & (y > 0), (x <= 0) & (y <= 0))])
    assert np.all(np.argmax(q, axis=0) == 0)
    img = im.pixelate(p, x, y, off, 24)  # even resolution: quadrants are whole pixel blocks
    quads = np.stack([img[:, 12:, 12:], img[:, 12:, :12], img[:, :12, 12:], img[:, :12, :12]])
    qs = quads.sum(axis=(2, 3))
    inside = all_inside(x, y, off)
    assert np.all(np.argmax(qs[:, inside], axis=0) == 0)


def test_pixel_sums_equal_in_window_pt():
    pt, eta, phi, off = blob_jets(200, seed=2, spread=(0.3, 0.9))  # wide: many outside
    p, x, y = im.preprocess(pt, eta, phi, off)
    for res in im.OFFICIAL_RESOLUTIONS:
        img = im.pixelate(p, x, y, off, res)
        assert img.shape == (200, res, res) and img.dtype == np.float32
        inwin = (x >= -1) & (x < 1) & (y >= -1) & (y < 1)
        assert (~inwin).sum() > 100
        expect = np.add.reduceat(np.where(inwin, p, 0).astype(np.float64), off[:-1])
        np.testing.assert_allclose(img.sum(axis=(1, 2), dtype=np.float64), expect, rtol=1e-5)


def test_pixel_index_convention():
    # one jet by hand: constituents at known (x, y) in the jet frame
    x = np.array([-1.0, -0.999, 0.0, 0.5, 0.999, 1.0, 0.2])
    y = np.array([0.0, -1.0, 0.0, -0.5, 0.999, 0.0, 1.5])
    pt = np.arange(1.0, 8.0)
    img = im.pixelate(pt, x, y, np.array([0, 7]), 8)[0]
    assert img[0, 4] == 1 and img[0, 0] == 2 and img[4, 4] == 3 and img[6, 2] == 4
    assert img[7, 7] == 5 and img.sum() == 15  # x = 1 and y = 1.5 are outside [-1, 1)


def test_straddling_jet_gets_compact_image_and_phi_shift_invariance():
    base = blob_jets(40, seed=3, phi0=0.0, eta0=0.5, spread=(0.1, 0.3))
    pt, eta, phi, off = base
    shifted = np.angle(np.exp(1j * (phi + np.pi - 0.03)))  # axis at pi - 0.03: straddles +-pi
    straddle = np.add.reduceat((shifted > 0).astype(int), off[:-1])
    assert np.all((straddle > 0) & (straddle < np.diff(off)))  # every jet has both signs of phi
    a = im.jet_images(pt, eta, phi, off, 25, dtype=np.float64)
    b = im.jet_images(pt, eta + 1.2, shifted, off, 25, dtype=np.float64)
    np.testing.assert_allclose(a, b, atol=1e-3)
    _, x, y = im.preprocess(pt, eta, shifted, off)
    assert np.abs(y).max() < 1.5 and np.abs(x).max() < 1.5


def test_constituent_order_does_not_matter(jets):
    pt, eta, phi, off = jets
    rng = np.random.default_rng(4)
    jet = np.repeat(np.arange(len(off) - 1), np.diff(off))
    perm = np.lexsort((rng.random(len(pt)), jet))
    a = im.jet_images(pt, eta, phi, off, 25, dtype=np.float64)
    b = im.jet_images(pt[perm], eta[perm], phi[perm], off, 25, dtype=np.float64)
    np.testing.assert_allclose(a, b, atol=1e-3)


def reference_jet_image(pt, eta, phi, res):
    """Per-jet float64 reference with eigh for the axis and histogram2d for the pixels."""
    dphi = np.angle(np.exp(1j * (phi - phi[0])))
    w = pt / pt.sum()
    x = eta - w @ eta
    y = np.angle(np.exp(1j * (dphi - w @ dphi)))
    _, vec = np.linalg.eigh([[pt @ (x * x), pt @ (x * y)], [pt @ (x * y), pt @ (y * y)]])
    t = np.arctan2(vec[1, 1], vec[0, 1])
    x, y = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    q = [pt[(x > 0) & (y > 0)].sum(), pt[(x > 0) & (y <= 0)].sum(),
         pt[(x <= 0) & (y > 0)].sum(), pt[(x <= 0) & (y <= 0)].sum()]
    k = int(np.argmax(q))
    x = -x if k >= 2 else x
    y = -y if k in (1, 3) else y
    return np.histogram2d(x, y, bins=res, range=[[-1, 1], [-1, 1]], weights=pt)[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_per_jet_reference(dtype):
    pt, eta, phi, off = im.synthetic_jets(200, np.random.default_rng(5), dtype=np.float64)
    img = im.jet_images(pt, eta, phi, off, 25, dtype=dtype).reshape(200, 25, 25)
    ref = np.stack([reference_jet_image(pt[a:b], eta[a:b], phi[a:b], 25)
                    for a, b in zip(off[:-1], off[1:])])
    close = np.all(np.isclose(img, ref, rtol=1e-5, atol=1e-3), axis=(1, 2))
    # float64: all equal; float32: a constituent within rounding of a pixel edge may move
    assert close.all() if dtype == np.float64 else close.mean() > 0.98


def test_jet_images_layout_and_event_normalisation():
    pt, eta, phi, off = im.synthetic_jets(20, np.random.default_rng(6))
    raw = im.jet_images(pt, eta, phi, off, 25)
    assert raw.shape == (10, 2, 25, 25) and raw.dtype == np.float32
    single = im.jet_images(pt[off[2]:off[4]], eta[off[2]:off[4]], phi[off[2]:off[4]],
                           off[2:5] - off[2], 25)
    np.testing.assert_array_equal(raw[1], single[0])  # event 1 = jets 2 (leading), 3
    en = im.jet_images(pt, eta, phi, off, 25, normalise="event")
    flat = en.reshape(10, -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=1), 1, rtol=1e-4)
    r = raw.reshape(10, -1).astype(np.float64)
    expect = (r - r.mean(1, keepdims=True)) / r.std(1, keepdims=True)
    np.testing.assert_allclose(flat, expect, atol=1e-4)


def test_event_normalisation_floor_keeps_empty_images_finite():
    # two constituents at x = -+1.5: centroid 0, both outside the window -> empty images
    pt = np.array([1.0, 1.0, 1.0, 1.0])
    eta = np.array([-1.5, 1.5, 0.3, 3.3])
    phi = np.zeros(4)
    en = im.jet_images(pt, eta, phi, np.array([0, 2, 4]), 25, normalise="event")
    assert np.isfinite(en).all() and not en.any()
    assert im.EN_STD_FLOOR == 1e-3


def test_inputs_not_modified(jets):
    pt, eta, phi, off = (a.copy() for a in jets)
    im.jet_images(pt, eta, phi, off)
    for a, b in zip((pt, eta, phi, off), jets):
        np.testing.assert_array_equal(a, b)


def test_empty_jet_is_named():
    pt, eta, phi, off = blob_jets(6, seed=7)
    off = np.insert(off, 4, off[3])  # jet 3 empty -> 7 jets
    off = np.append(off, off[-1])  # and a trailing empty jet -> 8 jets
    with pytest.raises(ConfigError, match="jet 3 has no constituents"):
        im.jet_images(pt, eta, phi, off)
    with pytest.raises(ConfigError, match="jet 3"):
        im.preprocess(pt, eta, phi, off)


@pytest.mark.parametrize("name", ["pt", "eta", "phi"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected(name, bad):
    arrays = dict(zip(("pt", "eta", "phi", "offsets"), blob_jets(4, seed=8)))
    arrays[name] = arrays[name].copy()
    arrays[name][7] = bad
    with pytest.raises(ConfigError, match=f"{name} contains NaN or inf"):
        im.jet_images(**arrays)


@pytest.mark.parametrize("res", [7, 129, 0, -25, 25.0, "25", True, None])
def test_unsupported_resolution(res):
    pt, eta, phi, off = blob_jets(2, seed=9)
    with pytest.raises(ConfigError, match="resolution"):
        im.jet_images(pt, eta, phi, off, res)


def test_other_bad_inputs():
    pt, eta, phi, off = blob_jets(4, seed=10)
    with pytest.raises(ConfigError, match="normalisation"):
        im.jet_images(pt, eta, phi, off, normalise="jet")
    with pytest.raises(ConfigError, match="two jets per event"):
        im.jet_images(pt[: off[3]], eta[: off[3]], phi[: off[3]], off[:4])
    with pytest.raises(ConfigError, match="offsets"):
        im.jet_images(pt, eta, phi, off[::-1])
    with pytest.raises(ConfigError, match="same length"):
        im.jet_images(pt, eta[:-1], phi, off)
    neg = pt.copy()
    neg[3] = -1
    with pytest.raises(ConfigError, match="negative"):
        im.jet_images(neg, eta, phi, off)
    with pytest.raises(ConfigError, match="dtype"):
        im.preprocess(pt, eta, phi, off, dtype=np.float16)
    assert im.jet_images(pt, eta, phi, off, 8).shape == (2, 2, 8, 8)  # small res is allowed
    assert im.jet_images(pt[:0], eta[:0], phi[:0], off[:1]).shape == (0, 2, 25, 25)


def test_select_events_and_file_errors(tmp_path):
    pt, eta, phi, off = im.synthetic_jets(10, np.random.default_rng(11))
    sel = im.select_events(pt, eta, phi, off, np.array([3, 0, 3]))
    a = im.jet_images(*sel)
    b = im.jet_images(pt, eta, phi, off)
    np.testing.assert_array_equal(a, b[[3, 0, 3]])
    with pytest.raises(ConfigError):
        im.select_events(pt, eta, phi, off, np.array([5]))
    with pytest.raises(InvalidFileError):
        im.file_images(tmp_path / "missing.h5")
    (tmp_path / "foreign.h5").write_bytes(b"not hdf5")
    with pytest.raises(InvalidFileError):
        im.file_images(tmp_path / "foreign.h5")


def test_phi_zero_to_two_pi_convention_gives_same_images(jets):
    pt, eta, phi, off = jets
    a = im.jet_images(pt, eta, phi, off, dtype=np.float64)
    b = im.jet_images(pt, eta, np.mod(phi, 2 * np.pi), off, dtype=np.float64)  # fastjet's phi
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_chunking_does_not_change_images(monkeypatch):
    pt, eta, phi, off = im.synthetic_jets(60, np.random.default_rng(12))
    a = im.jet_images(pt, eta, phi, off, 25)
    monkeypatch.setattr(im, "CHUNK_CONSTITUENTS", 301)  # many chunks, cut inside jets
    assert len(im._chunks(off)) > 10
    np.testing.assert_array_equal(im.jet_images(pt, eta, phi, off, 25), a)
