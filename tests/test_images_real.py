"""Jet images of REAL jets: the 'tiny' Pythia samples of ID-10 and QCD (session fixture).

Checks the preprocessing conventions of darkvalley_core.images on detector-level jets, the
augmentations' invariants and reproducibility, the fast average images of image_plots, and one
physics fact that holds with a wide margin on a few hundred events: ID-10 dark jets are broader
than QCD jets.
"""

from __future__ import annotations

import numpy as np
import pytest

from darkvalley_core import augment as aug
from darkvalley_core import images as im
from darkvalley_core.image_plots import average_images, mean_radius, pixel_centres
from darkvalley_core.storage import read_events


@pytest.fixture(scope="module")
def samples(tiny_samples):
    sig, bkg = (read_events(p) for p in tiny_samples)
    assert len(sig) > 100 and len(bkg) > 100
    return {"signal": sig, "background": bkg}


def arrays(sample):
    c = sample.constituents
    return c["pt"], c["eta"], c["phi"], c["offsets"]


def segment_sum(a, off):
    return np.add.reduceat(np.asarray(a, np.float64), off[:-1])


def image_moments(imgs):
    """Per image: total, pT-weighted centroid (cx, cy) and central second moments."""
    res = imgs.shape[-1]
    c = pixel_centres(res)
    x, y = c[:, None], c[None, :]
    a = imgs.astype(np.float64)
    tot = a.sum(axis=(1, 2))
    cx = (a * x).sum(axis=(1, 2)) / tot
    cy = (a * y).sum(axis=(1, 2)) / tot
    ixx = (a * x * x).sum(axis=(1, 2)) / tot - cx**2
    iyy = (a * y * y).sum(axis=(1, 2)) / tot - cy**2
    ixy = (a * x * y).sum(axis=(1, 2)) / tot - cx * cy
    return tot, cx, cy, ixx, iyy, ixy


NAMES = ["signal", "background"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("res", [25, 75])
def test_pixel_sums_are_the_in_window_pt(samples, name, res):
    pt, eta, phi, off = arrays(samples[name])
    p, x, y = im.preprocess(pt, eta, phi, off)
    imgs = im.jet_images(pt, eta, phi, off, res).reshape(-1, res, res)
    inside = (x >= -1) & (x < 1) & (y >= -1) & (y < 1)
    expected = segment_sum(p * inside, off)
    np.testing.assert_allclose(imgs.sum(axis=(1, 2), dtype=np.float64), expected, rtol=2e-6)
    assert (imgs >= 0).all()
    if name == "signal":  # a few wide dark jets lose constituents outside the window
        assert (expected < segment_sum(p, off) * (1 - 1e-5)).any()


@pytest.mark.parametrize("name", NAMES)
def test_centroid_lands_at_the_image_centre(samples, name):
    pt, eta, phi, off = arrays(samples[name])
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    total = segment_sum(p, off)
    assert np.abs(segment_sum(p * x, off) / total).max() < 1e-9
    assert np.abs(segment_sum(p * y, off) / total).max() < 1e-9
    uncropped = segment_sum((np.abs(x) >= 1) | (np.abs(y) >= 1), off) == 0
    for res in (25, 50, 75):
        imgs = im.jet_images(pt, eta, phi, off, res).reshape(-1, res, res)
        _, cx, cy, *_ = image_moments(imgs)
        half_pixel = 1.0 / res  # pixelation moves a constituent by at most half a pixel
        assert np.abs(cx[uncropped]).max() <= half_pixel + 1e-5
        assert np.abs(cy[uncropped]).max() <= half_pixel + 1e-5
        # the few cropped jets (signal) stay within a pixel
        assert np.abs(cx).max() <= 2 * half_pixel and np.abs(cy).max() <= 2 * half_pixel


@pytest.mark.parametrize("name", NAMES)
def test_principal_axis_is_along_eta_prime(samples, name):
    pt, eta, phi, off = arrays(samples[name])
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    sxx, syy, sxy = (segment_sum(p * a * b, off) for a, b in ((x, x), (y, y), (x, y)))
    assert (sxx >= syy).all()  # major axis along x = eta' (image axis -2, the rows)
    assert np.abs(sxy / sxx).max() < 1e-9
    # on the pixelated images: most jets keep the major axis along eta', at a small angle
    for res, min_fraction in ((25, 0.95), (75, 0.98)):
        imgs = im.jet_images(pt, eta, phi, off, res).reshape(-1, res, res)
        _, _, _, ixx, iyy, ixy = image_moments(imgs)
        assert (ixx >= iyy).mean() >= min_fraction
        assert np.median(np.abs(0.5 * np.arctan2(2 * ixy, ixx - iyy))) < 0.05


@pytest.mark.parametrize("name", NAMES)
def test_brightest_quadrant_is_top_right(samples, name):
    pt, eta, phi, off = arrays(samples[name])
    p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    quads = np.stack([segment_sum(p * m, off) for m in
                      ((x > 0) & (y > 0), (x > 0) & (y <= 0), (x <= 0) & (y > 0),
                       (x <= 0) & (y <= 0))], axis=1)
    assert (quads.argmax(axis=1) == 0).all()
    res = 50  # even: the pixel edges at 0 are the quadrant edges
    imgs = im.jet_images(pt, eta, phi, off, res).reshape(-1, res, res).astype(np.float64)
    h = res // 2
    iq = np.stack([imgs[:, h:, h:].sum((1, 2)), imgs[:, h:, :h].sum((1, 2)),
                   imgs[:, :h, h:].sum((1, 2)), imgs[:, :h, :h].sum((1, 2))], axis=1)
    assert (iq.argmax(axis=1) == 0).all()  # high eta' index and high phi' index


@pytest.mark.parametrize("name", NAMES)
def test_rotation_keeps_pt_and_distance_from_the_centre(samples, name):
    pt, eta, phi, off = arrays(samples[name])
    p0, x0, y0 = im.preprocess(pt, eta, phi, off, dtype=np.float64)
    p1, x1, y1, off1 = aug.augment(pt, eta, phi, off, "rotate", np.random.default_rng(5),
                                   dtype=np.float64)
    np.testing.assert_array_equal(off1, off)
    np.testing.assert_array_equal(p1, p0)
    np.testing.assert_allclose(np.hypot(x1, y1), np.hypot(x0, y0), rtol=1e-12, atol=1e-12)
    assert np.abs(x1 - x0).max() > 0.1  # it did rotate
    # images: a jet inside the unit circle keeps all its pT in the window whatever the angle
    n = len(off) // 2
    ids = np.arange(n)
    orig = aug.augmented_images(pt, eta, phi, off, ids, 0, "rotate", 25, seed=3)
    rot = aug.augmented_images(pt, eta, phi, off, ids, 1, "rotate", 25, seed=3)
    in_circle = (segment_sum(np.hypot(x0, y0) >= 0.999, off) == 0).reshape(-1)
    s0 = orig.reshape(-1, 25, 25).sum(axis=(1, 2), dtype=np.float64)
    s1 = rot.reshape(-1, 25, 25).sum(axis=(1, 2), dtype=np.float64)
    assert in_circle.mean() > 0.9
    np.testing.assert_allclose(s1[in_circle], s0[in_circle], rtol=2e-6)
    assert not np.array_equal(orig, rot)


@pytest.mark.parametrize("method", ["rotate", "smear", "combined"])
def test_same_seed_same_images_different_seed_different(samples, method):
    pt, eta, phi, off = im.select_events(*arrays(samples["signal"]), np.arange(60))
    ids = np.arange(60)

    def make(seed, copy=1):
        return aug.augmented_images(pt, eta, phi, off, ids, copy, method, 25, seed=seed)

    a, b, c = make(11), make(11), make(12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a - c).sum(axis=(1, 2, 3)).min() > 0  # every event changes
    np.testing.assert_array_equal(make(11, copy=0), make(12, copy=0))  # copy 0: the original
    np.testing.assert_array_equal(make(11, copy=0), im.jet_images(pt, eta, phi, off, 25))


@pytest.mark.parametrize("normalise", ["raw", "event"])
@pytest.mark.parametrize("res", [25, 75])
def test_fast_average_equals_the_mean_of_jet_images(samples, normalise, res):
    for sample in samples.values():
        a = arrays(sample)
        dense = im.jet_images(*a, res, normalise).astype(np.float64)
        avg, n = average_images(*a, res, normalise)
        assert n == len(sample)
        scale = np.abs(dense.mean(0)).max()
        np.testing.assert_allclose(avg, dense.mean(0), atol=1e-6 * scale)
        part, n50 = average_images(*a, res, normalise, max_events=50)
        assert n50 == 50
        np.testing.assert_allclose(part, dense[:50].mean(0), atol=1e-6 * scale)


def test_dark_jets_are_broader_than_qcd_jets(samples):
    """ID-10 dark showers spread the jet pT further from the axis than QCD (m_jet ~ 300 vs
    ~100 GeV here): the pT-weighted mean radius differs by many standard errors."""
    radius = {}
    for name, sample in samples.items():
        pt, eta, phi, off = arrays(sample)
        p, x, y = im.preprocess(pt, eta, phi, off, dtype=np.float64)
        r = segment_sum(p * np.hypot(x, y), off) / segment_sum(p, off)
        radius[name] = r.reshape(-1, 2)
    for jet in (0, 1):
        s, b = radius["signal"][:, jet], radius["background"][:, jet]
        se = np.hypot(s.std() / np.sqrt(len(s)), b.std() / np.sqrt(len(b)))
        assert s.mean() - b.mean() > 4 * se, (jet, s.mean(), b.mean(), se)
    # the same on the average images (what the page shows)
    avg = {name: average_images(*arrays(sample), 25)[0] for name, sample in samples.items()}
    for jet in (0, 1):
        assert mean_radius(avg["signal"][jet]) > 1.25 * mean_radius(avg["background"][jet])
