"""Physics augmentations (darkvalley_core.augment): smearing, rotation, reproducible "+n" copies."""

from __future__ import annotations

import numpy as np
import pytest

from darkvalley_core import augment as au
from darkvalley_core import images as im
from darkvalley_core.errors import ConfigError


@pytest.fixture(scope="module")
def events():
    """40 synthetic events (80 jets, float32), like an event file's constituents."""
    return im.synthetic_jets(80, np.random.default_rng(21))


def slice_events(ev, first, last):
    pt, eta, phi, off = ev
    a, b = off[2 * first], off[2 * last]
    return pt[a:b], eta[a:b], phi[a:b], off[2 * first : 2 * last + 1] - a


# -------------------------------------------------------------------------------- rotation
def test_rotation_keeps_pt_and_radius_one_angle_per_jet(events):
    pt, eta, phi, off = events
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    xr, yr = au.rotate(x, y, off, np.random.default_rng(0), max_angle=np.pi)
    np.testing.assert_allclose(np.hypot(xr, yr), np.hypot(x, y), rtol=1e-12, atol=1e-14)
    # the angle of every constituent changes by the same amount within a jet
    d = np.angle(np.exp(1j * (np.arctan2(yr, xr) - np.arctan2(y, x))))
    far = np.hypot(x, y) > 1e-3
    jet = np.repeat(np.arange(len(off) - 1), np.diff(off))
    first = d[off[:-1]]
    dd = np.angle(np.exp(1j * (d - first[jet])))
    assert np.abs(dd[far]).max() < 1e-9
    # and rotated images keep the in-window pT of constituents well inside
    p32, x32, y32 = im.preprocess(pt, eta, phi, off)
    xr32, yr32 = au.rotate(x32, y32, off, angles=np.full(len(off) - 1, 0.7))
    assert xr32.dtype == np.float32
    np.testing.assert_allclose(np.hypot(xr32, yr32), np.hypot(x32, y32), rtol=1e-5, atol=1e-6)


def test_rotation_angles_uniform_in_range():
    keys = au.event_keys(3, np.arange(20000), 1, 99)
    ang = au.keyed_angles(keys, 0.5).ravel()
    assert ang.min() >= -0.5 and ang.max() < 0.5
    # uniform: mean 0, variance a^2 / 3 (5 standard errors)
    n = len(ang)
    assert abs(ang.mean()) < 5 * 0.5 / np.sqrt(3 * n)
    assert abs(ang.var() - 0.25 / 3) < 5 * 0.25 * np.sqrt(4 / 45 / n)


def test_rotation_zero_range_is_identity_and_errors(events):
    pt, eta, phi, off = events
    ids = np.arange(40)
    a = au.augmented_images(pt, eta, phi, off, ids, 2, method="rotate", max_angle=0.0)
    np.testing.assert_array_equal(a, im.jet_images(pt, eta, phi, off))
    with pytest.raises(ConfigError, match="Generator"):
        au.rotate(np.zeros(3), np.zeros(3), np.array([0, 3]))
    with pytest.raises(ConfigError, match="angles"):
        au.rotate(np.zeros(3), np.zeros(3), np.array([0, 3]), angles=np.zeros(2))
    with pytest.raises(ConfigError, match="max_angle"):
        au.rotate(np.zeros(3), np.zeros(3), np.array([0, 3]), np.random.default_rng(), -1)


# -------------------------------------------------------------------------------- smearing
@pytest.mark.parametrize("formula", ["lecture", "delphes"])
def test_smearing_mean_and_width(formula):
    n = 100_000
    pt0 = 400.0
    f = {"lecture": np.sqrt(0.052 * pt0**2 + 1.502 * pt0),
         "delphes": np.sqrt(0.05**2 * pt0**2 + 1.50**2 * pt0)}[formula]
    assert au.smear_width(np.array([pt0]), formula)[0] == pytest.approx(f, rel=1e-12)
    pt = np.full(n, pt0)
    zeros = np.zeros(n)
    off = np.arange(0, n + 1, 100)
    sm, _, _, _ = au.smear_pt(pt, zeros, zeros, off, np.random.default_rng(1), formula,
                              dtype=np.float64)
    assert len(sm) == n  # 400 GeV never goes negative (> 4 sigma)
    assert abs(sm.mean() - pt0) < 5 * f / np.sqrt(n)
    assert abs(sm.std() - f) < 5 * f / np.sqrt(2 * n)
    # the reproducible (counter-based) normals have the same law
    z = au.keyed_normals(au.event_keys(7, np.arange(1000), 1, 1), np.full(1000, 100))
    sk, *_ = au.smear_pt(pt, zeros, zeros, off, formula=formula, normals=z, dtype=np.float64)
    assert abs(sk.mean() - pt0) < 5 * f / np.sqrt(n)
    assert abs(sk.std() - f) < 5 * f / np.sqrt(2 * n)


def test_keyed_normals_are_standard_normal():
    from scipy import stats

    z = au.keyed_normals(au.event_keys(11, np.arange(2000), 3, 5), np.full(2000, 100))
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(len(z)) and abs(z.std() - 1) < 5 / np.sqrt(2 * len(z))


def test_smearing_drops_negative_pt_and_fixes_offsets():
    n_jets, per = 400, 50
    pt = np.full(n_jets * per, 1.0)  # f(1 GeV) = 1.2466 GeV: P(pT' <= 0) = Phi(-1 / 1.2466)
    eta = np.arange(n_jets * per, dtype=float)  # tags, to follow the survivors
    off = np.arange(0, n_jets * per + 1, per)
    sm, e, ph, o = au.smear_pt(pt, eta, np.zeros_like(eta), off, np.random.default_rng(2),
                               dtype=np.float64)
    from scipy.stats import norm

    p_drop = norm.cdf(-1 / np.sqrt(0.052 + 1.502))
    frac = 1 - len(sm) / len(pt)
    assert abs(frac - p_drop) < 5 * np.sqrt(p_drop * (1 - p_drop) / len(pt))
    assert np.all(sm > 0)
    assert o[0] == 0 and o[-1] == len(sm) and np.all(np.diff(o) >= 0)
    # each survivor stays in its own jet
    jet_new = np.repeat(np.arange(n_jets), np.diff(o))
    np.testing.assert_array_equal(e.astype(int) // per, jet_new)


def test_smear_then_preprocess_recentres(events):
    pt, eta, phi, off = events
    p, x, y, o = au.smear_and_preprocess(pt, eta, phi, off, np.random.default_rng(3),
                                         dtype=np.float64)
    s = np.add.reduceat(p, o[:-1])
    assert np.abs(np.add.reduceat(p * x, o[:-1]) / s).max() < 1e-9
    assert np.abs(np.add.reduceat(p * y, o[:-1]) / s).max() < 1e-9
    assert not np.allclose(p.sum(), pt.sum(), rtol=1e-6)


def test_combined_without_rotation_range_equals_smearing(events):
    pt, eta, phi, off = events
    ids = np.arange(40) + 1000
    a = au.augmented_images(pt, eta, phi, off, ids, 3, method="combined", seed=4, max_angle=0.0)
    b = au.augmented_images(pt, eta, phi, off, ids, 3, method="smear", seed=4)
    np.testing.assert_array_equal(a, b)
    c = au.augmented_images(pt, eta, phi, off, ids, 3, method="combined", seed=4)
    assert not np.array_equal(a, c)


# -------------------------------------------------------------------------------- "+n" copies
@pytest.mark.parametrize("method", ["smear", "rotate", "combined"])
def test_same_seed_same_images_different_seed_different(events, method):
    pt, eta, phi, off = events
    ids = np.arange(40)
    a = au.augmented_images(pt, eta, phi, off, ids, 1, method=method, seed=5)
    b = au.augmented_images(pt, eta, phi, off, ids, 1, method=method, seed=5)
    c = au.augmented_images(pt, eta, phi, off, ids, 1, method=method, seed=6)
    d = au.augmented_images(pt, eta, phi, off, ids, 2, method=method, seed=5)
    np.testing.assert_array_equal(a, b)
    for other in (c, d):
        differs = np.any(a != other, axis=(1, 2, 3))
        assert differs.all()  # every event changes with the seed and with the copy number


@pytest.mark.parametrize("method", ["none", "smear", "rotate", "combined"])
def test_copy_zero_is_the_original(events, method):
    pt, eta, phi, off = events
    a = au.augmented_images(pt, eta, phi, off, np.arange(40), 0, method=method, seed=7,
                            normalise="event")
    np.testing.assert_array_equal(a, im.jet_images(pt, eta, phi, off, normalise="event"))


@pytest.mark.parametrize("method", ["smear", "rotate", "combined"])
def test_copy_independent_of_batching(events, method):
    pt, eta, phi, off = events
    ids = np.arange(40) * 3 + 11
    copies = np.arange(40) % 4
    whole = au.augmented_images(pt, eta, phi, off, ids, copies, method=method, seed=8)
    parts = [au.augmented_images(*slice_events(events, a, b), ids[a:b], copies[a:b],
                                 method=method, seed=8) for a, b in ((0, 7), (7, 8), (8, 40))]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    # the batch generator gives the same images, whatever its batch size and order
    ds = au.AugmentedBatches(pt, eta, phi, off, np.zeros(40), n_copies=3, method=method,
                             seed=8, event_ids=ids, batch_size=13)
    items = np.arange(40) * 4 + copies
    got, _, _ = ds.batch(items[::-1])
    np.testing.assert_array_equal(got[::-1], whole)


def test_augmented_batches_pass(events):
    pt, eta, phi, off = events
    labels = (np.arange(40) % 2).astype(np.float32)
    weights = np.linspace(0.5, 2.0, 40)
    kw = dict(n_copies=5, method="rotate", seed=9, resolution=25)
    ds = au.AugmentedBatches(pt, eta, phi, off, labels, weights, batch_size=64, **kw)
    assert ds.n_items == 240 and len(ds) == 4
    order = ds.order(0)
    batches = list(ds)
    assert ds.epoch == 1 and not np.array_equal(ds.order(), order)  # next pass reshuffles
    imgs = np.concatenate([b[0] for b in batches])
    lab = np.concatenate([b[1] for b in batches])
    w = np.concatenate([b[2] for b in batches])
    assert imgs.shape == (240, 2, 25, 25) and imgs.dtype == np.float32 and w.dtype == np.float32
    assert sorted(order.tolist()) == list(range(240))  # every (event, copy) exactly once
    ev = order // 6
    np.testing.assert_array_equal(lab, labels[ev])
    np.testing.assert_allclose(w, weights[ev].astype(np.float32))
    # same images from a second generator with another batch size and no shuffling
    ds2 = au.AugmentedBatches(pt, eta, phi, off, labels, batch_size=100, shuffle=False, **kw)
    imgs2 = np.concatenate([b[0] for b in ds2])
    np.testing.assert_array_equal(imgs2[order], imgs)
    # originals are among them; rotation keeps the total in-window pT roughly (edges aside)
    np.testing.assert_array_equal(imgs2[::6], im.jet_images(pt, eta, phi, off))
    assert len(list(au.AugmentedBatches(pt, eta, phi, off, labels, batch_size=64,
                                        drop_last=True, **kw))) == 3


def test_augmented_batches_event_normalised(events):
    pt, eta, phi, off = events
    ds = au.AugmentedBatches(pt, eta, phi, off, np.zeros(40), n_copies=2, method="combined",
                             normalise="event", resolution=50, batch_size=50, seed=1)
    imgs, _, _ = next(iter(ds))
    flat = imgs.reshape(len(imgs), -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(flat.std(1), 1, rtol=1e-4)


def test_bad_options(events):
    pt, eta, phi, off = events
    ids = np.arange(40)
    with pytest.raises(ConfigError, match="augmentation"):
        au.augmented_images(pt, eta, phi, off, ids, 1, method="flip")
    with pytest.raises(ConfigError, match="formula"):
        au.augmented_images(pt, eta, phi, off, ids, 1, method="smear", formula="cms")
    with pytest.raises(ConfigError, match="seed"):
        au.augmented_images(pt, eta, phi, off, ids, 1, seed=-1)
    with pytest.raises(ConfigError, match="copy_index"):
        au.augmented_images(pt, eta, phi, off, ids, -1)
    with pytest.raises(ConfigError, match="event_ids"):
        au.augmented_images(pt, eta, phi, off, ids[:-1], 1)
    with pytest.raises(ConfigError, match="resolution"):
        au.augmented_images(pt, eta, phi, off, ids, 1, resolution=200)
    bad = pt.copy()
    bad[5] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        au.augmented_images(bad, eta, phi, off, ids, 1)
    with pytest.raises(ConfigError, match="n_copies"):
        au.AugmentedBatches(pt, eta, phi, off, np.zeros(40), n_copies=-1)
    with pytest.raises(ConfigError, match="batch_size"):
        au.AugmentedBatches(pt, eta, phi, off, np.zeros(40), batch_size=0)
    with pytest.raises(ConfigError, match="labels"):
        au.AugmentedBatches(pt, eta, phi, off, np.zeros(39))
    empty = np.insert(off, 3, off[2])[:-1]
    with pytest.raises(ConfigError, match="jet 2 has no constituents"):
        au.augmented_images(pt[: empty[-1]], eta[: empty[-1]], phi[: empty[-1]], empty,
                            ids, 1)


def test_jet_emptied_by_smearing_gives_empty_image():
    # a jet of soft constituents: with enough copies one loses all of them; no crash
    pt = np.array([0.2, 0.2, 500.0, 400.0])  # leading jet soft: f(0.2 GeV) = 0.55 GeV
    eta = np.array([0.0, 0.1, 0.0, 0.1])
    phi = np.array([0.0, 0.0, 0.0, 0.1])
    imgs = au.augmented_images(np.tile(pt, 50), np.tile(eta, 50), np.tile(phi, 50),
                               np.arange(0, 201, 2), np.arange(50), 1, method="combined")
    tot = imgs.sum(axis=(2, 3))
    assert (tot[:, 0] == 0).any() and np.isfinite(imgs).all()
    assert (tot[:, 1] > 0).all()


def test_torch_rotate_pixelate_matches_numpy(events):
    torch = pytest.importorskip("torch")
    pt, eta, phi, off = events
    p, x, y = im.preprocess(pt, eta, phi, off)
    ids, copies = np.arange(40) + 500, np.arange(40) % 3
    ang = au.rotation_angles(12, ids, copies)
    assert ang.shape == (40, 2) and not ang[copies == 0].any()
    ref = au.augmented_images(pt, eta, phi, off, ids, copies, "rotate", seed=12).reshape(-1, 25, 25)
    np.testing.assert_array_equal(ref, im.pixelate(p, *au.rotate(x, y, off, angles=ang.ravel()),
                                                   off, 25))
    got = au.torch_rotate_pixelate(torch.from_numpy(p), torch.from_numpy(x), torch.from_numpy(y),
                                   torch.from_numpy(off), torch.from_numpy(ang.ravel()), 25).numpy()
    close = np.all(np.isclose(got, ref, rtol=1e-5, atol=1e-3), axis=(1, 2))
    assert close.mean() > 0.95  # float rounding at pixel edges may move a constituent
    np.testing.assert_allclose(got.sum(), ref.sum(), rtol=1e-4)


def test_one_shot_augment_with_generator(events):
    pt, eta, phi, off = events
    rng = np.random.default_rng(13)
    p, x, y, o = au.augment(pt, eta, phi, off, "rotate", rng)
    np.testing.assert_array_equal(o, off)
    np.testing.assert_array_equal(p, pt)  # rotation never touches pT
    p2, x2, y2, o2 = au.combined(pt, eta, phi, off, rng)
    assert o2[-1] == len(p2) <= len(pt) and not np.array_equal(p2, pt[: len(p2)])
    imgs = im.pixelate(p2, x2, y2, o2, 25)
    assert imgs.shape == (80, 25, 25) and np.isfinite(imgs).all()
    p3, x3, y3, o3 = au.augment(pt, eta, phi, off, "none")
    np.testing.assert_array_equal(im.pixelate(p3, x3, y3, o3, 25).reshape(40, 2, 25, 25),
                                  im.jet_images(pt, eta, phi, off))
