"""Real Pythia through the whole pipeline, on tiny samples."""

import hashlib
from pathlib import Path

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


# ---- Pythia: batches, charges, the shared MPI initialisation ---------------------------------

def _qcd_settings():
    from darkvalley_core.benchmarks import background_settings

    return background_settings(600.0, 3500.0)


def test_final_state_conserves_four_momentum_across_batches(session_cache):
    """Events read in several nextBatch calls come back whole: the final state of every event
    carries the beams' four-momentum (0, 0, 0, 13 TeV), and each particle its Pythia charge."""
    from darkvalley_core.generation import (PYTHIA_BATCH_EVENTS, final_state_particles,
                                            new_pythia)
    from darkvalley_core.jets import stdout_to_stderr

    n = PYTHIA_BATCH_EVENTS + 7
    with stdout_to_stderr():
        pythia = new_pythia(_qcd_settings(), seed=3)
        particles = final_state_particles(pythia, n)
    assert particles.n_events == n
    evt = particles.event_index()
    for component, total in ((particles.px, 0.0), (particles.py, 0.0), (particles.pz, 0.0),
                             (particles.e, 13000.0)):
        np.testing.assert_allclose(np.bincount(evt, weights=component, minlength=n), total,
                                   atol=1e-6 * 13000.0)
    unique, first = np.unique(particles.pid, return_index=True)
    want = [pythia.particleData.charge(int(i)) for i in unique]
    np.testing.assert_array_equal(particles.charge[first], np.array(want, dtype=np.float32))
    assert {211, -211, 22, 2212}.issubset(set(unique.tolist()))


def test_charge_lookup_beyond_the_table():
    from darkvalley_core.generation import _charge_lookup, new_pythia
    from darkvalley_core.jets import stdout_to_stderr

    with stdout_to_stderr():
        pythia = new_pythia(_qcd_settings(), seed=4)
    ids = np.array([211, -211, -11, 22, 2212, -2212, 1000024, -1000024, 1000022, 4900101,
                    -4900101, 3122, 13])
    want = np.array([pythia.particleData.charge(int(i)) for i in ids], dtype=np.float32)
    np.testing.assert_array_equal(_charge_lookup(pythia, ids), want)
    assert want[6] == 1.0 and want[7] == -1.0  # charginos, from Pythia's particle data


def test_mpi_initialisation_is_made_once_and_read_by_every_generator(tmp_path, monkeypatch):
    from darkvalley_core.generation import mpi_init_file, new_pythia
    from darkvalley_core.jets import stdout_to_stderr

    monkeypatch.setenv("DARKVALLEY_CACHE", str(tmp_path))
    settings = _qcd_settings()
    path = mpi_init_file(settings)
    assert path.parent == tmp_path / "pythia"
    assert path.read_text().startswith("Init:reuseMPI")
    stamp = path.stat().st_mtime_ns
    with stdout_to_stderr():
        first = [new_pythia(settings, seed=8) for _ in range(2)]
        events = [p.nextBatch(2) for p in first]
    assert mpi_init_file(settings) == path and path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(events[0].prt.p.px[1].to_numpy(),
                                  events[1].prt.p.px[1].to_numpy())
    # the saved tables depend on the settings only: made again elsewhere, the same bytes
    monkeypatch.setenv("DARKVALLEY_CACHE", str(tmp_path / "other"))
    assert mpi_init_file(settings).read_bytes() == path.read_bytes()
    assert not list((tmp_path / "pythia").glob(".*tmp"))


def test_damaged_mpi_initialisation_is_made_again(tmp_path, monkeypatch):
    from darkvalley_core.generation import mpi_init_file, new_pythia
    from darkvalley_core.jets import stdout_to_stderr

    monkeypatch.setenv("DARKVALLEY_CACHE", str(tmp_path))
    settings = _qcd_settings()
    path = mpi_init_file(settings)
    good = path.read_bytes()
    path.write_bytes(b"\x00\x01 not a Pythia file")
    with stdout_to_stderr():
        pythia = new_pythia(settings, seed=8)
    assert pythia.nextBatch(1) is not None
    assert path.read_bytes() == good


def test_mpi_initialisation_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    from darkvalley_core.generation import mpi_init_file

    blocker = tmp_path / "a-file"
    blocker.write_text("the cache root is a file, so no folder can be made under it")
    monkeypatch.setenv("DARKVALLEY_CACHE", str(blocker))
    path = mpi_init_file(_qcd_settings())
    assert path.parent == Path(tempfile.gettempdir()) / "darkvalley-pythia"
    assert path.stat().st_size > 0


def test_a_chunk_of_several_batches_is_reproducible(session_cache):
    from darkvalley_core.generation import PYTHIA_BATCH_EVENTS, run_chunk

    cfg = GenerationConfig("background", 500, seed=9)
    n = 2 * PYTHIA_BATCH_EVENTS + 30
    calls = []
    first = run_chunk(cfg, 1, n, on_events=calls.append)
    again = run_chunk(cfg, 1, n)
    assert calls == [PYTHIA_BATCH_EVENTS, PYTHIA_BATCH_EVENTS, 30]
    assert first["cutflow"]["generated"] == n and len(first["dijets"]) > 0
    assert first["cutflow"] == again["cutflow"]
    for name in ("mjj", "jet_pt", "const_pt", "const_offsets", "event"):
        np.testing.assert_array_equal(getattr(first["dijets"], name),
                                      getattr(again["dijets"], name))
    # event numbers run through the chunk: chunk 1 starts at event chunk_size
    assert first["event_number"].min() >= cfg.chunk_size
    assert first["event_number"].max() < cfg.chunk_size + n
