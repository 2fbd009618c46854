"""Training studies end to end on CPU with real tiny samples, and CWoLa on planted images."""

import json

import numpy as np
import pytest

from darkvalley_core.errors import DarkValleyError
from darkvalley_core.training import StudyConfig, results_table, run_study

FAST = dict(preset="tiny", runs=1, max_epochs=2, patience=2, batch_size=64)


@pytest.mark.parametrize("kwargs", [dict(method="dark"), dict(augment="flip"),
                                    dict(resolution=33.5), dict(runs=0), dict(eps_b=(1.5,)),
                                    dict(benchmark="ID-3"), dict(injection=-1)])
def test_impossible_settings(kwargs):
    with pytest.raises(DarkValleyError):
        StudyConfig(**kwargs)


def test_cwola_study_is_reproducible(cache_with_samples):
    cfg = StudyConfig(method="cwola", injection=5.0, augment="rotation", copies=1, **FAST)
    a = run_study(cfg)
    b = run_study(cfg)
    assert a["runs"][0]["auc"] == b["runs"][0]["auc"]
    assert json.dumps(a["summary"]) == json.dumps(b["summary"])  # NaN-aware equality
    run = a["runs"][0]
    assert 0.0 <= run["auc"] <= 1.0
    wp = run["working_points"]["0.1"]
    # ideal significance is the formula of the paper
    assert wp["z_ideal"] == pytest.approx(5.0 * wp["eps_s"] / np.sqrt(0.1))
    assert a["counts"]["S_SR"] == a["plan"]["s_sr"]
    rows = results_table(a)
    assert {r["eps_b"] for r in rows} == {0.1, 0.01, 0.001}
    assert a["device"] == "cpu"


def test_supervised_study_uses_balanced_pure_samples(cache_with_samples):
    """Pure signal vs pure background in the SR, balanced; no injection, so no Z numbers.
    (The physics check of the supervised AUC runs on the demo preset: see the README.)"""
    res = run_study(StudyConfig(method="supervised", **FAST))
    assert res["counts"]["signal"] == res["counts"]["background"] > 0
    assert res["plan"] is None
    assert "z_ideal" not in res["runs"][0]["working_points"]["0.1"]
    assert 0.0 <= res["runs"][0]["auc"] <= 1.0


def test_transfer_learning_pretrains_once_and_freezes(cache_with_samples):
    cfg = StudyConfig(method="transfer", injection=3.0, **FAST)
    first = run_study(cfg)
    assert first["pretrained"] and "pretrain-ID-10" in first["pretrained"]
    from pathlib import Path
    ckpt = Path(first["pretrained"])
    mtime = ckpt.stat().st_mtime_ns
    second = run_study(cfg)
    assert ckpt.stat().st_mtime_ns == mtime  # reused, not retrained
    assert json.dumps(second["summary"]) == json.dumps(first["summary"])


def test_cwola_learns_a_planted_difference_and_not_noise():
    """CWoLa theorem in miniature: SR = background + signal, SB = background only. Trained on
    SR-vs-SB labels, the network separates *signal* from background (true-label AUC), and it
    tells held-out SR from SB apart. With no signal in the SR there is nothing to learn:
    held-out SR and SB look the same to it (AUC near 0.5)."""
    from darkvalley_core.models import CNNConfig, DijetCNN
    from darkvalley_core.significance import roc_auc
    from darkvalley_core.trainer import TrainConfig, array_batches, fit, predict

    rng = np.random.default_rng(0)

    def images(n, signal):
        x = rng.exponential(1.0, size=(n, 2, 25, 25)).astype(np.float32)
        if signal:
            x[:, :, 10:15, 10:15] += 3.0  # a brighter core: the planted signal
        return x

    def mixed(n_b, n_s):
        sr = np.concatenate([images(n_b, False), images(n_s, True)])
        sb = images(n_b + n_s, False)
        x = np.concatenate([sr, sb])
        y = np.concatenate([np.ones(len(sr)), np.zeros(len(sb))]).astype(np.float32)
        perm = rng.permutation(len(x))
        return x[perm], y[perm]

    def cwola(n_signal_in_sr):
        x, y = mixed(1500, n_signal_in_sr)
        n_val = len(x) // 5
        model = DijetCNN(CNNConfig(resolution=25), seed=1)
        fit(model, array_batches(x[n_val:], y[n_val:]), array_batches(x[:n_val], y[:n_val]),
            TrainConfig(max_epochs=4, patience=4, batch_size=128, seed=1))
        test_s, test_b = images(400, True), images(400, False)
        true_auc = roc_auc(predict(model, np.concatenate([test_s, test_b])),
                           np.r_[np.ones(400), np.zeros(400)])
        hx, hy = mixed(800, n_signal_in_sr // 2)
        region_auc = roc_auc(predict(model, hx), hy)
        return true_auc, region_auc

    true_auc, region_auc = cwola(600)
    assert true_auc > 0.8
    assert region_auc > 0.58  # at most 0.5 + (signal fraction in the SR) / 2 = 0.64
    _, region_auc_no_signal = cwola(0)
    assert abs(region_auc_no_signal - 0.5) < 0.05
