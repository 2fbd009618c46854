import math

import numpy as np
import pytest

from darkvalley_core.benchmarks import (BENCHMARKS, dark_meson_ids, get_benchmark,
                                        vector_to_pion_pairs)
from darkvalley_core.errors import UnknownBenchmarkError


def test_fourteen_benchmarks_with_the_papers_names():
    assert len(BENCHMARKS) == 14
    assert set(BENCHMARKS) == {f"{m}-{l}" for m in ("ID", "DD") for l in (1, 5, 10, 20, 30, 40, 50)}


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_mass_relations(name):
    b = get_benchmark(name)
    r = 1.0 if b.decay_mode == "ID" else 1.8
    assert b.m_pi == pytest.approx(r * b.lambda_d)
    assert b.m_rho / b.lambda_d == pytest.approx(math.sqrt(5.76 + 1.5 * r * r))
    assert b.m_quark_constituent == pytest.approx(b.lambda_d * (1 + (r / 5.5) ** 2))
    # ID: rho -> pi pi open; DD: closed (m_rho < 2 m_pi), so vectors go to d d-bar.
    assert b.rho_to_pions_open == (b.decay_mode == "ID")


def test_published_values_for_id10():
    b = get_benchmark("ID-10")
    assert b.m_pi == 10.0
    assert b.m_rho == pytest.approx(26.944, abs=1e-3)
    assert b.m_quark_constituent == pytest.approx(10.3306, abs=1e-4)


def test_unknown_benchmark_is_a_clear_error():
    with pytest.raises(UnknownBenchmarkError, match="ID-10"):
        get_benchmark("ID-11")
    assert get_benchmark(" id-5 ").name == "ID-5"


def test_vector_decays_conserve_flavour_into_different_pions():
    for vec in dark_meson_ids(3):
        pairs = vector_to_pion_pairs(vec)
        assert len(pairs) == 3
        for a, b in pairs:
            assert a != b
            # net flavour content of the pair equals the vector's (diagonal: neutral pair)
            if (vec // 100) % 10 == (vec // 10) % 10:
                assert a == -b


@pytest.mark.parametrize("name", ["ID-10", "DD-50"])
def test_settings_decay_every_dark_meson_and_set_lambda(name):
    lines = get_benchmark(name).pythia_settings()
    assert "HiddenValley:setLambda = on" in lines
    for pid in dark_meson_ids(1) + dark_meson_ids(3):
        assert f"{pid}:mayDecay = on" in lines
        assert any(l.startswith(f"{pid}:oneChannel") for l in lines)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_pythia_accepts_every_setting(name):
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in get_benchmark(name).pythia_settings():
        assert pythia.readString(line), line
    assert pythia.particleData.m0(4900111) == pytest.approx(get_benchmark(name).m_pi)


@pytest.mark.parametrize("name", ["ID-10", "DD-50", "ID-1"])
def test_no_dark_particle_reaches_the_detector(name):
    """With every dark meson decaying, the final state is Standard-Model only and carries
    (nearly) the full 13 TeV; a stable invisible dark meson would take away energy."""
    from darkvalley_core.generation import final_state_particles, new_pythia

    pythia = new_pythia(get_benchmark(name).pythia_settings(), seed=11)
    particles = final_state_particles(pythia, 15)
    assert particles.n_events == 15
    assert not np.any((np.abs(particles.pid) >= 4900000) & (np.abs(particles.pid) < 5000000))
    e_sum = np.add.reduceat(particles.e, particles.offsets[:-1])
    np.testing.assert_allclose(e_sum, 13000.0, rtol=1e-6)
    nu = np.isin(np.abs(particles.pid), [12, 14, 16])
    visible = np.add.reduceat(np.where(nu, 0.0, particles.e), particles.offsets[:-1])
    assert np.median(visible / e_sum) > 0.97
