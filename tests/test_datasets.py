"""Signal injection, resampling and splits, on the real tiny samples."""

import math

import numpy as np
import pytest

from darkvalley_core import datasets as ds
from darkvalley_core.errors import ConfigError, InsufficientEventsError
from darkvalley_core.storage import read_events


@pytest.fixture(scope="module")
def samples(tiny_samples):
    return read_events(tiny_samples[0]), read_events(tiny_samples[1])


def test_expected_background_is_sigma_times_efficiency_times_lumi(samples):
    _, bkg = samples
    b_sr, b_sb = ds.expected_background(bkg, 10.0)
    n_sr = np.count_nonzero(bkg.events["region"] == 1)
    assert b_sr == pytest.approx(bkg.sigma_pb * 1000 * n_sr / bkg.n_generated * 10.0)
    # doubling the luminosity doubles the counts
    assert ds.expected_background(bkg, 20.0)[1] == pytest.approx(2 * b_sb)
    with pytest.raises(ConfigError):
        ds.expected_background(bkg, 0.0)


def test_injection_counts_follow_the_formula(samples):
    sig, bkg = samples
    plan = ds.plan_injection(sig, bkg, injection=4.0, luminosity_fb=0.05)
    eff_sr = np.count_nonzero(sig.events["region"] == 1) / sig.n_generated
    eff_sb = np.count_nonzero(sig.events["region"] == 2) / sig.n_generated
    s_sr = 4.0 * math.sqrt(plan.b_sr_expected)
    assert plan.s_sr == round(s_sr)
    assert plan.s_sb == round(s_sr * eff_sb / eff_sr)
    assert plan.b_sr == round(plan.b_sr_expected)
    assert ds.plan_injection(sig, bkg, 0.0, 0.05).s_sr == 0
    with pytest.raises(ConfigError):
        ds.plan_injection(sig, bkg, -1.0, 0.05)


def test_pools_are_disjoint_and_fixed(samples):
    sig, bkg = samples
    p1, p2 = ds.make_pools(sig, bkg), ds.make_pools(sig, bkg)
    for name in p1.sizes():
        np.testing.assert_array_equal(getattr(p1, name), getattr(p2, name))
    assert not set(p1.sig_sr_data) & set(p1.sig_sr_test)
    assert not set(p1.bkg_sr_data) & set(p1.bkg_sr_test)
    assert np.all(bkg.events["region"][p1.bkg_sr_test] == 1)
    assert np.all(sig.events["region"][p1.sig_sb] == 2)


def test_cwola_dataset_draws_without_replacement_and_splits_cleanly(samples):
    sig, bkg = samples
    pools = ds.make_pools(sig, bkg)
    ts = ds.cwola_dataset(sig, bkg, pools, injection=2.0, luminosity_fb=0.05, seed=3)
    everything = ds._concat(ts.train, ts.validation)
    keys = everything.keys()
    assert len(np.unique(keys)) == len(keys)  # no event twice
    assert not set(ts.train.keys()) & set(ts.validation.keys())  # nothing crosses the split
    # labels: SR = 1, SB = 0; truth marks the injected signal
    region_of = np.where(everything.source == ds.SIGNAL,
                         sig.events["region"][np.where(everything.source == ds.SIGNAL,
                                                       everything.row, 0)],
                         bkg.events["region"][np.where(everything.source == ds.BACKGROUND,
                                                       everything.row, 0)])
    np.testing.assert_array_equal(everything.label, (region_of == 1).astype(np.float32))
    assert int((everything.truth == 1).sum()) == ts.plan.s_sr + ts.plan.s_sb
    assert len(everything) == ts.plan.b_sr + ts.plan.b_sb + ts.plan.s_sr + ts.plan.s_sb
    # validation is 20% of each label
    for lab in (0, 1):
        n = np.count_nonzero(everything.label == lab)
        assert np.count_nonzero(ts.validation.label == lab) == round(0.2 * n)
    # test samples never appear in the data
    sig_rows = everything.row[everything.source == ds.SIGNAL]
    assert not set(sig_rows) & set(ts.test_signal_sr)
    # a new repetition draws afresh
    other = ds.cwola_dataset(sig, bkg, pools, injection=2.0, luminosity_fb=0.05, seed=4)
    assert set(other.train.keys()) != set(ts.train.keys())


def test_too_small_pools_say_how_many_events_are_missing(samples):
    sig, bkg = samples
    pools = ds.make_pools(sig, bkg)
    with pytest.raises(InsufficientEventsError, match=r"missing"):
        ds.cwola_dataset(sig, bkg, pools, injection=2.0, luminosity_fb=100.0, seed=0)


def test_constituents_follow_the_event_order(samples):
    sig, bkg = samples
    events = ds.LabelledEvents(source=np.array([1, 0, 1], np.int16), row=np.array([5, 2, 0]),
                               label=np.zeros(3, np.float32), truth=np.zeros(3, np.int8))
    pt, eta, phi, off = ds.constituents_of({ds.SIGNAL: sig, ds.BACKGROUND: bkg}, events)
    for k, (src, row) in enumerate([(bkg, 5), (sig, 2), (bkg, 0)]):
        c = src.constituents
        for j in range(2):
            a, b = c["offsets"][2 * row + j], c["offsets"][2 * row + j + 1]
            np.testing.assert_array_equal(pt[off[2 * k + j]:off[2 * k + j + 1]], c["pt"][a:b])
