"""Real Pythia through the whole pipeline, on tiny samples."""

import hashlib

import numpy as np
import pytest

from darkvalley_core.errors import ConfigError, UnknownBenchmarkError
from darkvalley_core.generation import GenerationConfig, generate, summarise_file
from darkvalley_core.storage import read_events


def test_signal_sample_physics(tiny_samples):
    sig = read_events(tiny_samples[0])
    mjj = sig.events["mjj"]
    assert sig.process == "signal" and sig.benchmark == "ID-10"
    assert len(mjj) > 100
    # The Z' (5.5 TeV) peak: reconstructed m_jj sits near but below the pole (out-of-cone
    # radiation, dark-meson decay products outside R = 0.8).
    hist, edges = np.histogram(mjj, bins=np.arange(3000, 7001, 250))
    peak = edges[np.argmax(hist)]
    assert 4500 <= peak < 5500
    assert 4700 < np.median(mjj) < 5500
    assert np.mean(mjj > 5600) < 0.1
    # Most selected signal lands in the SR; the SR efficiency is in the papers' ballpark.
    s = summarise_file(sig)
    assert 0.2 < s["efficiency_sr"] < 0.8
    assert s["cutflow"]["generated"] == sig.n_generated == 400


def test_background_sample_physics(tiny_samples):
    bkg = read_events(tiny_samples[1])
    assert bkg.process == "background"
    # Pythia's cross-section for the generator cuts: a few pb, with a small error.
    assert 1.0 < bkg.sigma_pb < 50.0
    assert bkg.attrs["sigma_err_pb"] < 0.2 * bkg.sigma_pb
    np.testing.assert_allclose(bkg.events["weight"], bkg.sigma_pb / bkg.n_generated)
    # QCD m_jj falls steeply: more events in the lower than in the upper sideband.
    mjj = bkg.events["mjj"]
    assert np.sum((mjj > 4400) & (mjj < 4700)) > np.sum((mjj > 5500) & (mjj < 5800))
    # Both jets pass the selection.
    assert np.all(bkg.events["jet_pt"] > 750) and np.all(np.abs(bkg.events["jet_eta"]) < 2.0)
    assert np.all(bkg.events["n_constituents"] >= 5)


def test_jet_response_is_close_to_one(tiny_samples):
    """The jets' constituents add back up to the jet, and the leading-jet pT sits where the
    parton pT would put it (m_jj / 2 for central dijets)."""
    sample = read_events(tiny_samples[1])
    const, ev = sample.constituents, sample.events
    jet = np.repeat(np.arange(2 * len(sample)), np.diff(const["offsets"]))
    px = np.bincount(jet, const["pt"] * np.cos(const["phi"]))
    py = np.bincount(jet, const["pt"] * np.sin(const["phi"]))
    np.testing.assert_allclose(np.hypot(px, py), ev["jet_pt"].ravel(), rtol=2e-4)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_any_number_of_workers_gives_identical_files(tmp_path, session_cache):
    cfg = GenerationConfig("signal", 60, benchmark="DD-20", seed=5, chunk_size=20)
    one = generate(cfg, n_jobs=1, out=tmp_path / "one.h5")
    two = generate(cfg, n_jobs=2, out=tmp_path / "two.h5")
    assert _digest(one) == _digest(two)
    other = generate(GenerationConfig("signal", 60, benchmark="DD-20", seed=6, chunk_size=20),
                     out=tmp_path / "other.h5")
    assert not np.array_equal(read_events(one).events["mjj"], read_events(other).events["mjj"])


def test_cache_reuses_an_existing_sample(tiny_samples):
    from darkvalley_core.generation import preset_configs

    sig_cfg, _ = preset_configs("tiny", "ID-10", seed=0)
    before = tiny_samples[0].stat().st_mtime_ns
    assert generate(sig_cfg) == tiny_samples[0]
    assert tiny_samples[0].stat().st_mtime_ns == before


@pytest.mark.parametrize("kwargs, error", [
    (dict(process="signal", n_events=0, benchmark="ID-10"), ConfigError),
    (dict(process="signal", n_events=10, benchmark="ID-7"), UnknownBenchmarkError),
    (dict(process="signal", n_events=10, benchmark="ID-10", seed=-1), ConfigError),
    (dict(process="dark", n_events=10), ConfigError),
])
def test_impossible_settings(kwargs, error):
    with pytest.raises(error):
        GenerationConfig(**kwargs)
