"""Shared fixtures: one tiny real signal sample and one tiny real QCD sample per test session,
generated with Pythia through the full pipeline into a temporary cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Tests never touch the user's cache; each session gets a fresh one.
_SESSION_CACHE = None


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    global _SESSION_CACHE
    _SESSION_CACHE = tmp_path_factory.mktemp("cache")
    os.environ["DARKVALLEY_CACHE"] = str(_SESSION_CACHE)
    return _SESSION_CACHE


@pytest.fixture(scope="session")
def tiny_samples(session_cache):
    """(signal path, background path) of the 'tiny' preset for ID-10, seed 0, in the session
    cache, exactly where the app looks for them."""
    from darkvalley_core.generation import generate, preset_configs

    sig_cfg, bkg_cfg = preset_configs("tiny", "ID-10", seed=0)
    # Small chunks so the parallel path is exercised and both workers get work.
    return generate(sig_cfg, n_jobs=2), generate(bkg_cfg, n_jobs=2)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DARKVALLEY_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def cache_with_samples(tiny_samples, monkeypatch):
    monkeypatch.setenv("DARKVALLEY_CACHE", str(_SESSION_CACHE))
    return tiny_samples
