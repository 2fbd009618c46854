import numpy as np
import pytest

from darkvalley_core.errors import ConfigError
from darkvalley_core.jets import (REGION_OUTSIDE, REGION_SB, REGION_SR, Selection,
                                  assign_regions, cluster_dijets, invariant_mass, selection_mask)
from darkvalley_core.particles import EFlowBatch


def make_eflow(events):
    """events: list of lists of (pt, eta, phi)."""
    counts = [len(e) for e in events]
    flat = np.array([p for e in events for p in e], dtype=float).reshape(-1, 3)
    return EFlowBatch(pt=flat[:, 0], eta=flat[:, 1], phi=flat[:, 2],
                      kind=np.zeros(len(flat), dtype=np.int8),
                      offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def four_vector(pt, eta, phi):
    pt, eta, phi = map(np.asarray, (pt, eta, phi))
    return np.array([(pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum(),
                     (pt * np.sinh(eta)).sum(), (pt * np.cosh(eta)).sum()])


def test_hand_made_dijet_event():
    rng = np.random.default_rng(1)
    # Two sprays of particles back to back in phi, one soft particle far from both.
    jet_a = [(300.0 + 50 * rng.random(), 0.5 + 0.1 * rng.normal(), 0.1 * rng.normal())
             for _ in range(12)]
    jet_b = [(200.0 + 50 * rng.random(), -0.4 + 0.1 * rng.normal(), np.pi - 0.05 * abs(rng.normal()))
             for _ in range(8)]
    stray = [(5.0, 3.0, 1.5)]
    empty_event = []
    one_jet = [(500.0, 0.0, 0.0)]
    eflow = make_eflow([jet_a + jet_b + stray, empty_event, one_jet])
    dj = cluster_dijets(eflow)
    # only the first event has two jets above 200 GeV
    assert list(dj.event) == [0]
    assert list(dj.n_jets) == [2, 0, 1]
    assert list(dj.n_constituents[0]) == [12, 8]
    a, b = np.array(jet_a), np.array(jet_b)
    pa, pb = four_vector(*a.T), four_vector(*b.T)
    assert dj.jet_pt[0, 0] == pytest.approx(np.hypot(*pa[:2]), rel=1e-9)
    assert dj.jet_pt[0, 1] == pytest.approx(np.hypot(*pb[:2]), rel=1e-9)
    total = pa + pb
    mjj = np.sqrt(total[3] ** 2 - (total[:3] ** 2).sum())
    assert dj.mjj[0] == pytest.approx(mjj, rel=1e-6)
    # constituents of the leading jet are exactly jet_a's particles (as float32)
    lead = slice(dj.const_offsets[0], dj.const_offsets[1])
    np.testing.assert_allclose(np.sort(dj.const_pt[lead]), np.sort(a[:, 0]).astype(np.float32))
    sub = slice(dj.const_offsets[1], dj.const_offsets[2])
    np.testing.assert_allclose(np.sort(dj.const_eta[sub]), np.sort(b[:, 1]).astype(np.float32),
                               rtol=1e-6)


def test_leading_jets_are_ordered_and_soft_jets_ignored():
    eflow = make_eflow([[(250.0, 1.0, 0.0), (900.0, -1.0, 2.0), (400.0, 0.0, -2.0),
                         (150.0, 2.0, 1.0)]])
    dj = cluster_dijets(eflow)
    np.testing.assert_allclose(dj.jet_pt[0], [900.0, 400.0])
    assert dj.n_jets[0] == 3  # the 150 GeV particle is below the 200 GeV jet threshold


def test_take_keeps_constituents_in_step():
    events = [[(300.0 + i, 0.1 * i, 0.0), (300.0, -1.0, 3.0), (10.0, -1.1, 3.05)] for i in range(5)]
    dj = cluster_dijets(make_eflow(events))
    sub = dj.take(np.array([False, True, False, True, False]))
    assert len(sub) == 2
    np.testing.assert_array_equal(np.diff(sub.const_offsets).reshape(-1, 2), sub.n_constituents)
    # leading jet: the 300 + 10 GeV pair; subleading: the lone (300 + i) GeV particle
    lone = sub.const_pt[sub.const_offsets[np.array([1, 3])]]
    np.testing.assert_allclose(lone, [301.0, 303.0])


def test_invariant_mass_of_back_to_back_massless_jets():
    pt = np.array([[1000.0, 1000.0]])
    m = invariant_mass(pt, np.zeros((1, 2)), np.array([[0.0, np.pi]]), np.zeros((1, 2)))
    assert m[0] == pytest.approx(2000.0)


def test_regions_and_their_edges():
    mjj = np.array([4299.9, 4300.0, 4400.0, 4699.9, 4700.0, 5499.9, 5500.0, 5799.9, 5800.0,
                    5899.9, 5900.0])
    narrow = assign_regions(mjj, "narrow")
    wide = assign_regions(mjj, "wide")
    S, B, O = REGION_SR, REGION_SB, REGION_OUTSIDE
    assert list(narrow) == [O, O, B, B, S, S, B, B, O, O, O]
    assert list(wide) == [O, B, B, B, S, S, B, B, B, B, O]
    with pytest.raises(ConfigError):
        assign_regions(mjj, "medium")


def test_selection_cutflow_is_cumulative():
    events = [
        [(800.0, 0.0, 0.0)] * 1 + [(200.0, 0.01 * i, 0.01) for i in range(5)]
        + [(800.0, 0.5, 3.0)] + [(10.0, 0.5 + 0.01 * i, 3.0) for i in range(5)],   # passes
        [(800.0, 2.5, 0.0), (800.0, 0.0, 3.0)],                                    # fails eta
        [(700.0, 0.0, 0.0), (800.0, 0.0, 3.0)],                                    # fails pT
    ]
    dj = cluster_dijets(make_eflow(events))
    steps = selection_mask(dj, Selection())
    final = list(steps.values())[-1]
    assert final.tolist() == [True, False, False]
    counts = [int(m.sum()) for m in steps.values()]
    assert counts == sorted(counts, reverse=True)


def _random_eflow(n_events=6, seed=3, n_noise=150):
    """Events of two hard sprays plus soft noise, as EFlow objects."""
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n_events):
        spray = [(rng.exponential(40.0) + 1.0, 0.6 * rng.normal() + c_eta,
                  0.3 * rng.normal() + c_phi)
                 for c_eta, c_phi in ((0.3, 0.0), (-0.5, 3.0)) for _ in range(60)]
        noise = [(rng.exponential(2.0), rng.uniform(-4, 4), rng.uniform(-np.pi, np.pi))
                 for _ in range(n_noise)]
        events.append([(pt, eta, np.angle(np.exp(1j * phi))) for pt, eta, phi in spray + noise])
    return make_eflow(events)


def test_fast_fastjet_path_equals_the_public_interface():
    """The direct call into fastjet's multi-event C++ gives what fastjet.ClusterSequence gives,
    also with the strategy it picks for dense (dark-jet-like) events."""
    from darkvalley_core.jets import (DENSE_EVENT_OBJECTS, _antikt_fastjet_awkward,
                                      _antikt_fastjet_ext)

    for n_noise in (150, DENSE_EVENT_OBJECTS):
        eflow = _random_eflow(n_noise=n_noise)
        _check_fast_path(eflow, _antikt_fastjet_ext, _antikt_fastjet_awkward)


def _check_fast_path(eflow, fast_path, public_path):
    px, py = eflow.pt * np.cos(eflow.phi), eflow.pt * np.sin(eflow.phi)
    pz, e = eflow.pt * np.sinh(eflow.eta), eflow.pt * np.cosh(eflow.eta)
    fast = fast_path(px, py, pz, e, eflow.offsets, 0.8, 20.0)
    public = public_path(px, py, pz, e, eflow.offsets, 0.8, 20.0)
    assert len(fast[0][4]) == eflow.n_events + 1 and fast[0][4][-1] >= 2 * eflow.n_events
    for got, want in zip(fast[0] + fast[1], public[0] + public[1]):
        np.testing.assert_array_equal(got, want)


def test_batches_of_events_concatenate_to_the_whole():
    """Clustering is per event, so clustering two halves and joining them changes nothing."""
    from darkvalley_core.jets import concat_dijets

    eflow = _random_eflow(n_events=7)
    half = 3
    cut = eflow.offsets[half]
    first = EFlowBatch(eflow.pt[:cut], eflow.eta[:cut], eflow.phi[:cut], eflow.kind[:cut],
                       eflow.offsets[:half + 1])
    second = EFlowBatch(eflow.pt[cut:], eflow.eta[cut:], eflow.phi[cut:], eflow.kind[cut:],
                        eflow.offsets[half:] - cut)
    whole = cluster_dijets(eflow)
    joined = concat_dijets([cluster_dijets(first), cluster_dijets(second)])
    assert len(whole) == 7
    for name in whole.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)
