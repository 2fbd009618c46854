"""Jet-image figures and colour scales (darkvalley_core.image_plots), on small arrays."""

import numpy as np
import pytest

from darkvalley_core import image_plots as ip
from darkvalley_core.errors import ConfigError
from darkvalley_core.images import synthetic_jets


def heatmaps(fig):
    return [t for t in fig.data if t.type == "heatmap"]


def test_pixel_centres_span_the_window():
    c = ip.pixel_centres(25)
    assert len(c) == 25
    assert c[0] == pytest.approx(-1 + 1 / 25) and c[-1] == pytest.approx(1 - 1 / 25)
    with pytest.raises(ConfigError):
        ip.pixel_centres(3)


def test_log_colour_scale_of_non_negative_images():
    img = np.array([[0.0, 1e-9], [10.0, 1000.0]])
    (z,), s = ip.colour_scale([img], log=True)
    assert np.isnan(z[0, 0])  # empty pixel: blank
    assert z[0, 1] == pytest.approx(np.log10(1000.0) - ip.LOG_DECADES)  # clipped to the floor
    assert z[1, 1] == pytest.approx(3.0) and z[1, 0] == pytest.approx(1.0)
    assert (s["cmin"], s["cmax"]) == pytest.approx((-1.0, 3.0))
    assert s["ticktext"] == ["0.1", "1", "10", "100", "1000"]


def test_symmetric_log_scale_for_a_difference():
    d = np.array([[-100.0, -1.0], [0.0, 50.0]])
    (z,), s = ip.colour_scale([d], log=True, signed=True, symmetric=True)
    assert z[1, 0] == 0 and z[0, 0] == -s["cmax"] == s["cmin"]  # |-100| is the largest
    assert np.all(np.diff(z.ravel()[[0, 1, 2, 3]]) > 0)  # monotone
    assert "0" in s["ticktext"] and s["cmid"] == 0
    # an EN-like image (mostly positive, slightly negative background): not symmetric
    (z,), s = ip.colour_scale([np.array([[-0.05, 0.0], [1.0, 20.0]])], log=True)
    assert s["cmin"] == pytest.approx(z[0, 0]) and s["cmax"] == pytest.approx(z[1, 1])
    assert s["cmin"] > -s["cmax"] / 2


def test_event_and_augmentation_figures():
    rng = np.random.default_rng(0)
    imgs = rng.exponential(1.0, (4, 2, 25, 25)) * (rng.uniform(size=(4, 2, 25, 25)) < 0.2)
    fig = ip.event_figure(imgs[0])
    hm = heatmaps(fig)
    assert len(hm) == 2 and {h.coloraxis for h in hm} == {"coloraxis"}
    # eta' horizontal, phi' vertical: z is the transposed image
    np.testing.assert_array_equal(np.asarray(hm[0].customdata), imgs[0, 0].T)
    np.testing.assert_allclose(np.asarray(hm[0].x), ip.pixel_centres(25))
    assert tuple(fig.layout.xaxis.range) == (-1, 1) and tuple(fig.layout.yaxis.range) == (-1, 1)
    aug = ip.augmentation_figure(imgs)
    assert len(heatmaps(aug)) == 8
    assert [a.text for a in aug.layout.annotations][:4] == ["original", "copy 1", "copy 2",
                                                             "copy 3"]
    linear = ip.event_figure(imgs[0], log=False, normalise="event")
    np.testing.assert_array_equal(np.asarray(heatmaps(linear)[0].z), imgs[0, 0].T)
    assert "<html" in ip.figure_html(fig)[:200].lower()


def test_average_figure_with_one_or_two_samples():
    rng = np.random.default_rng(1)
    s, b = rng.exponential(1.0, (2, 2, 25, 25))
    fig = ip.average_figure(s, b, n_signal=10, n_background=20)
    hm = heatmaps(fig)
    assert len(hm) == 6 and sorted({h.coloraxis for h in hm}) == ["coloraxis", "coloraxis2"]
    np.testing.assert_allclose(np.asarray(hm[2].customdata), (s[0] - b[0]).T)
    assert "signal (10 events)" in [a.text for a in fig.layout.annotations]
    only = ip.average_figure(s, None)
    assert len(heatmaps(only)) == 2
    radial = ip.radial_figure(s, None)
    assert len(radial.data) == 2


def test_radial_profile_and_mean_radius():
    img = np.zeros((25, 25))
    img[12, 12] = 5.0  # the centre pixel
    r, f = ip.radial_profile(img)
    assert f[0] == 1.0 and f[-1] == 1.0 and r[0] == 0
    assert ip.mean_radius(img) == 0.0
    img[24, 12] = 5.0  # a pixel at r = 0.96
    assert ip.mean_radius(img) == pytest.approx(0.48)
    r, f = ip.radial_profile(img)
    assert np.all(np.diff(f) >= 0) and f[0] == 0.5 and f[-1] == 1.0


def test_average_images_edge_cases():
    pt, eta, phi, off = synthetic_jets(10, np.random.default_rng(2))
    avg, n = ip.average_images(pt, eta, phi, off, 25, max_events=0)
    assert n == 0 and avg.shape == (2, 25, 25) and not avg.any()
    avg, n = ip.average_images(pt, eta, phi, off, 25, max_events=100)
    assert n == 5
    with pytest.raises(ConfigError, match="two jets per event"):
        ip.average_images(pt, eta, phi, off[:-1][:10], 25)
    with pytest.raises(ConfigError, match="normalisation"):
        ip.average_images(pt, eta, phi, off, 25, normalise="max")
