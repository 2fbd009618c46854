"""Tests of the parametric detector simulation modelled on the Delphes CMS card.

Statistical checks draw many seeded single-particle events in one batch and compare with the card's
numbers; tolerances are a few standard errors, so they are fast and fail only on real changes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkvalley_core.detector import (
    CMS,
    DetectorCard,
    ecal_resolution,
    hcal_resolution,
    propagate_to_calorimeter,
    simulate_detector,
    track_efficiency,
    track_resolution,
)
from darkvalley_core.errors import ConfigError
from darkvalley_core.particles import EFlowBatch, ParticleBatch

MASS = {11: 0.000511, 13: 0.105658, 22: 0.0, 111: 0.134977, 130: 0.497611, 211: 0.13957,
        310: 0.497611, 321: 0.493677, 2112: 0.939565, 2212: 0.938272, 3122: 1.115683}
N_DRAWS = 20000


def make_batch(events) -> ParticleBatch:
    """ParticleBatch from a list of events, each a list of (pt, eta, phi, pid, charge)."""
    rows = [p for ev in events for p in ev]
    pt, eta, phi, pid, charge = (np.array([r[i] for r in rows], dtype=float).reshape(-1)
                                 for i in range(5))
    mass = np.array([MASS.get(abs(int(p)), 0.0) for p in pid])
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    offsets = np.concatenate([[0], np.cumsum([len(ev) for ev in events])]).astype(np.int64)
    return ParticleBatch(px=px, py=py, pz=pz, e=np.sqrt(px**2 + py**2 + pz**2 + mass**2),
                         pid=pid.astype(np.int32), charge=charge.astype(np.float32),
                         offsets=offsets)


def repeated(particle, n=N_DRAWS) -> ParticleBatch:
    """n events holding the same single particle (pt, eta, phi, pid, charge)."""
    one = make_batch([[particle]])
    return ParticleBatch(*(np.repeat(a, n) for a in (one.px, one.py, one.pz, one.e, one.pid,
                                                     one.charge)),
                         offsets=np.arange(n + 1, dtype=np.int64))


def per_event(out: EFlowBatch, values, kinds=(0, 1, 2)):
    sel = np.isin(out.kind, kinds)
    return np.bincount(out.event_index()[sel], weights=np.asarray(values)[sel],
                       minlength=out.n_events)


def random_batch(n_events=20, n_per=100, seed=0, eta_max=5.0) -> ParticleBatch:
    r = np.random.default_rng(seed)
    n = n_events * n_per
    kinds = np.array([(211, 1), (-211, -1), (22, 0), (2112, 0), (130, 0), (11, -1), (13, -1)])
    pick = kinds[r.choice(len(kinds), n, p=[0.3, 0.3, 0.25, 0.06, 0.05, 0.02, 0.02])]
    pt = r.exponential(5.0, n) + 0.2
    rows = list(zip(pt, r.uniform(-eta_max, eta_max, n), r.uniform(-np.pi, np.pi, n),
                    pick[:, 0], pick[:, 1]))
    return make_batch([rows[i * n_per:(i + 1) * n_per] for i in range(n_events)])


def lognormal_tail(mean, sigma, x):
    """P(X > x) for the log-normal with this mean and standard deviation."""
    b = math.sqrt(math.log1p((sigma / mean) ** 2))
    a = math.log(mean) - 0.5 * b * b
    return 0.5 * math.erfc((math.log(x) - a) / (b * math.sqrt(2.0)))


# ---- the card's numbers ---------------------------------------------------------------------

def test_card_resolution_numbers():
    assert hcal_resolution(0.0, 1000.0) / 1000.0 == pytest.approx(0.0689, abs=2e-4)
    assert ecal_resolution(0.0, 100.0) == pytest.approx(math.sqrt(0.8**2 + 0.11**2 * 100 + 0.16))
    assert ecal_resolution(2.0, 10.0) == pytest.approx(2.16 * math.sqrt(0.08**2 + 0.121 + 0.16))
    assert ecal_resolution(3.5, 10.0) == pytest.approx(math.sqrt(1.07**2 + 2.08**2 * 10))
    assert hcal_resolution(3.5, 100.0) == pytest.approx(math.sqrt(13.0**2 + 2.7**2 * 100))
    sp = np.zeros(1, dtype=int)
    assert track_resolution(np.array([100.0]), np.array([0.2]), sp)[0] == pytest.approx(
        math.hypot(0.06, 0.13))
    assert track_resolution(np.array([2000.0]), np.array([2.0]), sp)[0] == 1.0  # capped
    effs = track_efficiency(np.array([0.05, 0.5, 5.0, 0.5, 5.0, 5.0]),
                            np.array([0.0, 1.0, 1.5, 2.0, 2.5, 2.6]), np.zeros(6, dtype=int))
    np.testing.assert_allclose(effs, [0.0, 0.70, 0.95, 0.60, 0.85, 0.0])


def test_card_validation():
    assert CMS == DetectorCard()
    with pytest.raises(ConfigError):
        DetectorCard(bz=-1.0)
    with pytest.raises(ConfigError):
        DetectorCard(hadron_eff=((0.7,), (0.6,)))
    with pytest.raises(ConfigError):
        DetectorCard(hcal_endcap_eta_edges=(2.0, 1.9))
    with pytest.raises(ConfigError):
        DetectorCard(ecal_energy_min=float("nan"))


# ---- smearing -------------------------------------------------------------------------------

def test_neutral_hadron_smearing_mean_and_width():
    out = simulate_detector(repeated((1000.0, 0.04, 0.03, 2112, 0)), np.random.default_rng(1))
    assert np.array_equal(out.kind, np.full(N_DRAWS, EFlowBatch.NEUTRAL_HADRON))
    assert np.array_equal(np.diff(out.offsets), np.ones(N_DRAWS))
    e = out.e
    sigma = hcal_resolution(0.0435, 1000.0)  # at the cell centre
    assert sigma / 1000.0 == pytest.approx(0.069, abs=1e-3)
    assert e.mean() == pytest.approx(1000.0, abs=5 * sigma / math.sqrt(N_DRAWS))
    assert e.std() == pytest.approx(sigma, abs=5 * sigma / math.sqrt(2 * N_DRAWS))
    assert e.min() > 0
    # uniformly placed inside the HCAL cell (0, 0.087] x (0, 5 deg]
    assert out.eta.min() >= 0.0 and out.eta.max() <= 0.087
    assert out.phi.min() >= 0.0 and out.phi.max() <= math.radians(5.0)
    assert out.eta.std() == pytest.approx(0.087 / math.sqrt(12), rel=0.05)


def test_photon_smearing_and_kind():
    out = simulate_detector(repeated((100.0, 0.01, 0.3, 22, 0)), np.random.default_rng(2))
    assert np.array_equal(out.kind, np.full(N_DRAWS, EFlowBatch.PHOTON))
    sigma = ecal_resolution(0.0087, 100.0)
    assert sigma / 100.0 == pytest.approx(0.0142, abs=2e-4)
    assert out.e.mean() == pytest.approx(100.0, abs=5 * sigma / math.sqrt(N_DRAWS))
    assert out.e.std() == pytest.approx(sigma, abs=5 * sigma / math.sqrt(2 * N_DRAWS))


def test_muon_track_smearing_no_calorimeter():
    out = simulate_detector(repeated((100.0, 0.2, 1.0, 13, -1)), np.random.default_rng(3))
    assert set(out.kind.tolist()) == {EFlowBatch.TRACK}  # muons leave no calorimeter energy
    frac = len(out) / N_DRAWS
    assert frac == pytest.approx(0.99, abs=5 * math.sqrt(0.99 * 0.01 / N_DRAWS))
    sigma = 100.0 * math.hypot(0.01, 0.01)
    n = len(out)
    assert out.pt.mean() == pytest.approx(100.0, abs=5 * sigma / math.sqrt(n))
    assert out.pt.std() == pytest.approx(sigma, abs=5 * sigma / math.sqrt(2 * n))
    np.testing.assert_allclose(out.eta, 0.2)  # tracks keep their vertex direction
    np.testing.assert_allclose(out.phi, 1.0)


def test_k0s_splits_between_ecal_and_hcal():
    out = simulate_detector(repeated((100.0, 0.01, 0.3, 310, 0), 5000), np.random.default_rng(4))
    e_true = 100.0 * math.cosh(0.01)
    for kind, frac, res in ((1, 0.3, ecal_resolution), (2, 0.7, hcal_resolution)):
        e = out.e[out.kind == kind]
        assert len(e) == 5000
        sigma = res(0.0087 if kind == 1 else 0.0435, frac * e_true)
        assert e.mean() == pytest.approx(frac * e_true, abs=5 * sigma / math.sqrt(len(e)))


# ---- energy flow ----------------------------------------------------------------------------

@pytest.mark.parametrize("particle", [(500.0, 0.3, 0.5, 211, 1), (50.0, 0.3, 0.5, -11, -1)])
def test_charged_energy_not_counted_twice(particle):
    batch = repeated(particle, 10000)
    out = simulate_detector(batch, np.random.default_rng(5))
    total = per_event(out, out.e)
    e_true = batch.e[0]
    assert total.mean() == pytest.approx(e_true, rel=0.01)
    assert total.max() < 1.5 * e_true  # double counting would give ~2
    n_tracks = per_event(out, np.ones(len(out)), kinds=(0,))
    assert n_tracks.max() == 1


def test_energy_response_close_to_one():
    batch = random_batch(n_events=40, n_per=200, seed=7, eta_max=2.4)
    out = simulate_detector(batch, np.random.default_rng(7))
    # soft charged hadrons are biased up a little by the energy flow (as in Delphes)
    assert out.e.sum() / batch.e.sum() == pytest.approx(1.0, abs=0.03)


def test_same_cell_merges_other_cells_and_events_do_not():
    events = [
        [(100.0, 0.010, 0.01, 2112, 0), (100.0, 0.020, 0.02, 2112, 0)],  # same HCAL cell
        [(100.0, 0.010, 0.01, 2112, 0), (100.0, 0.300, 0.02, 2112, 0)],  # two cells
        [(100.0, 0.015, 0.015, 2112, 0)],  # same cell as event 0, other event
    ]
    out = simulate_detector(make_batch(events), np.random.default_rng(8))
    assert np.diff(out.offsets).tolist() == [1, 2, 1]
    assert out.e[0] == pytest.approx(200.0, abs=5 * hcal_resolution(0.0435, 200.0))


def test_untracked_charged_hadron_comes_back_as_neutral():
    # beyond |eta| = 2.5 there are no tracks: the pion's HCAL energy is a neutral hadron
    out = simulate_detector(repeated((50.0, 3.2, 0.0, 211, 1), 2000), np.random.default_rng(9))
    assert set(out.kind.tolist()) == {EFlowBatch.NEUTRAL_HADRON}
    assert out.e.mean() == pytest.approx(50.0 * math.cosh(3.2), rel=0.03)


# ---- tracking ---------------------------------------------------------------------------------

@pytest.mark.parametrize("eta, expected", [(0.4, 0.95), (2.0, 0.85), (2.9, 0.0)])
def test_tracking_efficiency_5gev_pions(eta, expected):
    out = simulate_detector(repeated((5.0, eta, 0.5, 211, 1)), np.random.default_rng(10))
    frac = np.count_nonzero(out.kind == EFlowBatch.TRACK) / N_DRAWS
    se = math.sqrt(max(expected * (1 - expected), 1e-4) / N_DRAWS)
    assert frac == pytest.approx(expected, abs=5 * se)


def test_soft_tracks_bend_and_low_pt_never_reach_barrel():
    pt = np.array([2.0, 2.0, 1000.0, 0.5, 0.5, 3.0])
    eta = np.array([0.0, 0.0, 0.0, 0.3, -0.3, 0.5])
    phi = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 2.0])
    q = np.array([1.0, -1.0, 1.0, 1.0, -1.0, 0.0])
    eta_hit, phi_hit, reached = propagate_to_calorimeter(pt, eta, phi, q)
    assert reached.all()
    shift = math.asin(0.735 / 2.0)
    assert phi_hit[0] == pytest.approx(-shift, abs=1e-3)
    assert phi_hit[1] == pytest.approx(+shift, abs=1e-3)
    assert eta_hit[0] == pytest.approx(0.0) and eta_hit[1] == pytest.approx(0.0)
    assert abs(phi_hit[2] - 1.0) < 1e-3  # stiff track: vertex direction
    assert eta_hit[3] >= 1.58 and eta_hit[4] <= -1.58  # spiral to the endcaps
    assert (eta_hit[5], phi_hit[5]) == (0.5, 2.0)  # neutral: straight line
    # a pT = 0.5 GeV charged particle with pz = 0 loops forever and never reaches anything
    assert not propagate_to_calorimeter(np.array([0.5]), np.array([0.0]), np.array([0.0]),
                                        np.array([1.0]))[2][0]


# ---- thresholds and inputs --------------------------------------------------------------------

@pytest.mark.parametrize("pid, energy, eta_c, res, e_min, n_sigma, max_pass", [
    (22, 0.3, 0.0087, ecal_resolution, 0.5, 2.0, 0.1),  # ECAL: E > 0.5 and E > 2 sigma
    (2112, 1.5, 0.0435, hcal_resolution, 1.0, 1.0, 0.3),  # HCAL: E > 1 and E > 1 sigma
])
def test_thresholds_drop_soft_deposits(pid, energy, eta_c, res, e_min, n_sigma, max_pass):
    batch = repeated((energy, 0.005, 0.001, pid, 0))
    out = simulate_detector(batch, np.random.default_rng(11))
    # smallest energy that passes E > E_min and E > n sigma(E)
    grid = np.linspace(0.01, 10.0, 200001)
    e_cut = grid[(grid > e_min) & (grid > n_sigma * res(eta_c, grid))][0]
    mean = float(batch.e[0])
    p_pass = lognormal_tail(mean, float(res(eta_c, mean)), e_cut)
    assert p_pass < max_pass  # dropped in most events (the noise term lets a few through)
    frac = len(out) / N_DRAWS
    assert frac == pytest.approx(p_pass, abs=5 * math.sqrt(p_pass * (1 - p_pass) / N_DRAWS))
    assert (out.e >= e_cut - 1e-3).all()


def test_invisible_particles_give_nothing():
    events = [
        [(50.0, 0.1, 0.1, 12, 0), (50.0, -1.0, 2.0, -14, 0), (30.0, 0.5, -1.0, 16, 0)],
        [(300.0, 0.1, 0.1, 4900211, 0), (200.0, 1.0, 1.0, -4900101, 0),
         (100.0, 0.0, 0.0, 4900111, 0), (80.0, 0.2, 0.3, 4999999, 1)],
        [(50.0, 0.1, 0.1, 12, 0), (40.0, 0.5, 0.5, 22, 0), (60.0, 0.1, 0.1, 4900113, 0)],
    ]
    out = simulate_detector(make_batch(events), np.random.default_rng(12))
    assert np.diff(out.offsets).tolist() == [0, 0, 1]
    assert out.kind.tolist() == [EFlowBatch.PHOTON]
    only_invisible = simulate_detector(make_batch(events[:2]), np.random.default_rng(12))
    assert len(only_invisible) == 0 and only_invisible.offsets.tolist() == [0, 0, 0]


def test_reproducible_from_seed():
    batch = random_batch(seed=3)
    a = simulate_detector(batch, np.random.default_rng(42))
    b = simulate_detector(batch, np.random.default_rng(42))
    c = simulate_detector(batch, np.random.default_rng(43))
    for name in ("pt", "eta", "phi", "kind", "offsets"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert len(a) != len(c) or not np.array_equal(a.pt, c.pt)


def test_output_structure():
    batch = random_batch(seed=5)
    out = simulate_detector(batch, np.random.default_rng(5))
    assert out.n_events == batch.n_events
    assert out.offsets[0] == 0 and out.offsets[-1] == len(out)
    assert out.pt.dtype == np.float64 and out.kind.dtype == np.int8
    assert out.offsets.dtype == np.int64
    assert (out.pt > 0).all() and np.isfinite(out.eta).all()
    assert (np.abs(out.phi) <= np.pi).all() and (np.abs(out.eta) <= 5.0).all()
    assert set(np.unique(out.kind).tolist()) == {0, 1, 2}
    # per event: tracks, then photons, then neutral hadrons
    ev = out.event_index()
    assert (np.diff(ev * 3 + out.kind) >= 0).all()


def test_empty_events():
    out = simulate_detector(make_batch([[], [(50.0, 0.1, 0.1, 22, 0)], [], [],
                                        [(50.0, -0.1, 1.0, 22, 0)], []]),
                            np.random.default_rng(13))
    assert np.diff(out.offsets).tolist() == [0, 1, 0, 0, 1, 0]
    empty = ParticleBatch(*(np.zeros(0) for _ in range(4)), pid=np.zeros(0, dtype=np.int32),
                          charge=np.zeros(0, dtype=np.float32),
                          offsets=np.zeros(4, dtype=np.int64))
    out = simulate_detector(empty, np.random.default_rng(0))
    assert len(out) == 0 and out.offsets.tolist() == [0, 0, 0, 0]
    empty.offsets = np.zeros(1, dtype=np.int64)
    assert simulate_detector(empty, np.random.default_rng(0)).n_events == 0


def _bad(batch: ParticleBatch, **changes) -> ParticleBatch:
    fields = dict(px=batch.px, py=batch.py, pz=batch.pz, e=batch.e, pid=batch.pid,
                  charge=batch.charge, offsets=batch.offsets)
    fields.update(changes)
    return ParticleBatch(**fields)


def test_bad_input_raises_config_error():
    good = make_batch([[(10.0, 0.1, 0.1, 211, 1), (5.0, 0.2, 0.3, 22, 0)]])
    nan_px = good.px.copy()
    nan_px[1] = np.nan
    inf_e = good.e.copy()
    inf_e[0] = np.inf
    cases = [
        _bad(good, px=good.px[:1]),  # mismatched lengths
        _bad(good, pid=good.pid[:1]),
        _bad(good, px=nan_px),
        _bad(good, e=inf_e),
        _bad(good, e=-good.e),
        _bad(good, offsets=np.array([0, 1], dtype=np.int64)),  # does not cover all particles
        _bad(good, offsets=np.array([0, 2, 1, 2], dtype=np.int64)),  # decreasing
        _bad(good, offsets=np.zeros(0, dtype=np.int64)),
        _bad(good, pid=good.pid.astype(float)),
        _bad(good, px=good.px.reshape(2, 1)),
    ]
    for batch in cases:
        with pytest.raises(ConfigError):
            simulate_detector(batch, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        simulate_detector(good, 42)
    with pytest.raises(ConfigError):
        simulate_detector(good, np.random.default_rng(0), card="CMS")
    with pytest.raises(ConfigError):
        simulate_detector("particles", np.random.default_rng(0))


def test_eta_cell_lookup_equals_binary_search():
    """The grid lookup of the calorimeter eta bin is exactly Delphes's lower_bound search,
    also on and next to every edge and far outside the calorimeters."""
    from darkvalley_core.detector import _eta_bin_index, _geometries

    rng = np.random.default_rng(7)
    for geo in _geometries(CMS):
        edges = geo.edges
        eta = np.concatenate([
            rng.uniform(-6.0, 6.0, 200_000), edges, np.nextafter(edges, np.inf),
            np.nextafter(edges, -np.inf), [-np.inf, np.inf, -1e9, 1e9, 0.0, -0.0]])
        np.testing.assert_array_equal(_eta_bin_index(geo, eta),
                                      np.searchsorted(edges, eta, side="left"))
