"""The model-agnostic trainer: learning, early stopping, reproducibility, precision, checkpoints.

All fits use a tiny network on 12x12 images so the whole file runs in seconds on two cores.
"""

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from darkvalley_core.errors import ConfigError, InvalidFileError
from darkvalley_core.models import CNNConfig, DijetCNN
from darkvalley_core.significance import roc_auc
from darkvalley_core.trainer import (
    TrainConfig,
    array_batches,
    fit,
    load_checkpoint,
    predict,
    resolve_precision,
    save_checkpoint,
    select_device,
)

RES = 12
TINY = CNNConfig(resolution=RES, conv_channels=(8, 8, 16, 16), conv_kernels=(3, 3, 3, 3),
                 dense_units=(16, 16, 16))
FAST = dict(lr=3e-3, batch_size=64, device="cpu", precision="fp32", num_threads=2)


def planted(n, seed, plant=True):
    """Exponential pixel noise; 'signal' (label 1) leading jets carry a bright 2x2 blob."""
    rng = np.random.default_rng(seed)
    x = rng.exponential(1.0, (n, 2, RES, RES)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    if plant:
        x[y == 1, 0, 3:5, 6:8] += 3.0
    return x, y


@pytest.fixture(scope="module")
def data():
    return planted(800, 0), planted(400, 1), planted(1000, 2)


def test_learns_a_planted_difference(data):
    (xt, yt), (xv, yv), (xs, ys) = data
    records = []
    model = DijetCNN(TINY, seed=0)
    result = fit(model, array_batches(xt, yt), array_batches(xv, yv),
                 TrainConfig(max_epochs=4, patience=4, **FAST), callback=records.append)
    assert roc_auc(predict(model, xs), ys) > 0.8
    assert [r["epoch"] for r in records] == list(range(result.epochs_run))
    assert set(records[0]) >= {"epoch", "train_loss", "val_loss", "val_auc", "best_epoch",
                               "elapsed_s"}
    assert records[-1]["val_auc"] > 0.8 and records[-1]["val_loss"] < records[0]["val_loss"] + 0.1
    assert result.device == "cpu" and result.precision == "fp32" and not result.cancelled


def test_no_signal_gives_no_discrimination(data):
    xt, yt = planted(800, 10, plant=False)
    xv, yv = planted(400, 11, plant=False)
    xs, ys = planted(1000, 12, plant=False)
    model = DijetCNN(TINY, seed=0)
    fit(model, array_batches(xt, yt), array_batches(xv, yv),
        TrainConfig(max_epochs=3, patience=3, **FAST))
    assert abs(roc_auc(predict(model, xs), ys) - 0.5) < 0.08  # ~4 standard errors


def test_early_stopping_restores_the_best_epoch(data):
    (xt, yt), _, _ = data
    # Validation = the training images with flipped labels: once the network learns, the
    # validation loss only grows, so training stops `patience` epochs after the best one.
    snapshots = {}
    model = DijetCNN(TINY, seed=0)

    def keep(record):
        snapshots[record["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    result = fit(model, array_batches(xt, yt), array_batches(xt, 1 - yt),
                 TrainConfig(max_epochs=30, patience=2, **FAST), callback=keep)
    best = result.best_epoch
    assert result.stopped_early and best <= 5 and result.epochs_run == best + 3
    losses = [r["val_loss"] for r in result.history]
    assert losses[best] == min(losses) == result.best_val_loss
    assert all(r["best_epoch"] == best for r in result.history[best:])
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[best][k]), k
    last = result.epochs_run - 1
    assert not all(torch.equal(v, snapshots[last][k]) for k, v in model.state_dict().items())


def test_same_seed_same_weights(data):
    (xt, yt), (xv, yv), _ = data
    cfg = TrainConfig(max_epochs=1, patience=1, **FAST)
    small = (xt[:256], yt[:256])
    states = []
    for seed in (5, 5, 6):
        model = DijetCNN(CNNConfig.from_dict({**TINY.to_dict(), "dropout": 0.35}), seed=1)
        fit(model, array_batches(*small), array_batches(xv, yv),
            TrainConfig(**{**cfg.to_dict(), "seed": seed}))
        states.append(model.state_dict())
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    assert not all(torch.equal(v, states[2][k]) for k, v in states[0].items())


def test_fit_leaves_global_state_alone(data):
    (xt, yt), (xv, yv), _ = data
    torch.manual_seed(123)
    rng, threads = torch.random.get_rng_state(), torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    fit(DijetCNN(TINY, seed=0), array_batches(xt[:64], yt[:64]), array_batches(xv, yv),
        TrainConfig(**{**FAST, "num_threads": 1}, max_epochs=1))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det


def test_bf16_and_fp32_reach_the_same_auc(data):
    (xt, yt), (xv, yv), (xs, ys) = data
    aucs = {}
    for precision in ("fp32", "bf16"):
        model = DijetCNN(TINY, seed=0)
        result = fit(model, array_batches(xt, yt), array_batches(xv, yv),
                     TrainConfig(max_epochs=3, patience=3, **{**FAST, "precision": precision}))
        assert result.precision == precision
        aucs[precision] = roc_auc(predict(model, xs), ys)
    assert aucs["bf16"] > 0.8 and abs(aucs["bf16"] - aucs["fp32"]) < 0.03


def test_per_epoch_batches_weights_and_cancellation(data):
    (xt, yt), (xv, yv), _ = data
    seen = []

    def train_batches(epoch):  # fresh "augmented" batches each epoch, with weights
        seen.append(epoch)
        rng = np.random.default_rng(epoch)
        for i in range(0, 256, 64):
            x = xt[i : i + 64] + rng.normal(0, 0.1, xt[i : i + 64].shape).astype(np.float32)
            yield torch.from_numpy(x), yt[i : i + 64], np.full(64, 2.0, np.float32)

    result = fit(DijetCNN(TINY, seed=0), train_batches, [(xv, yv, None)],
                 TrainConfig(max_epochs=2, patience=2, **FAST))
    assert seen == [0, 1] and result.epochs_run == 2
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 6  # cancel during the second epoch

    result = fit(DijetCNN(TINY, seed=0), train_batches, array_batches(xv, yv),
                 TrainConfig(max_epochs=50, patience=50, **FAST), should_stop=should_stop)
    assert result.cancelled and result.epochs_run == 1 and result.best_epoch == 0


def test_paper_network_trains_in_bf16_channels_last():
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, (96, 2, 25, 25)).astype(np.float32)
    y = (np.arange(96) % 2).astype(np.float32)
    model = DijetCNN(CNNConfig.paper_final(), seed=0)
    before = model.classifier[-1].weight.detach().clone()
    result = fit(model, array_batches(x, y), array_batches(x[:32], y[:32]),
                 TrainConfig(max_epochs=1, batch_size=32, device="cpu", precision="bf16"))
    assert result.precision == "bf16" and math.isfinite(result.history[0]["train_loss"])
    conv = model.jet_cnn.feature_extractor[1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(model.classifier[-1].weight.detach().cpu(), before)
    assert model.classifier[-1].weight.dtype == torch.float32  # autocast keeps fp32 master weights


def test_generic_model_without_loss_method(data):
    (xt, yt), (xv, yv), (xs, ys) = data
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * RES * RES, 1), nn.Flatten(0), nn.Sigmoid())
    fit(model, array_batches(xt, yt), array_batches(xv, yv), TrainConfig(max_epochs=3, **FAST))
    assert roc_auc(predict(model, xs), ys) > 0.8
    assert np.all(np.isfinite(predict(model, xs, output="log_score")))


def test_predict_inputs_and_log_score(data):
    _, _, (xs, ys) = data
    model = DijetCNN(TINY, seed=0)
    a = predict(model, xs, batch_size=300)
    b = predict(model, [(xs[:500], ys[:500]), (torch.from_numpy(xs[500:]), ys[500:])])
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.shape == (1000,) and a.dtype == np.float64 and ((a >= 0) & (a <= 1)).all()
    np.testing.assert_allclose(np.exp(predict(model, xs, output="log_score")), a, rtol=1e-5)
    with pytest.raises(ConfigError):
        predict(model, xs, output="logit")


def test_select_device_and_precision():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            select_device("cuda")
        if not torch.backends.mps.is_available():
            assert select_device("auto") == torch.device("cpu")
            with pytest.raises(ConfigError, match="mps"):
                select_device("mps")
    with pytest.raises(ConfigError):
        select_device("tpu")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_train_config_validation():
    TrainConfig()
    for bad in (dict(lr=0), dict(batch_size=0), dict(patience=0), dict(device="gpu"),
                dict(precision="fp16"), dict(seed=-1), dict(num_threads=0), dict(max_epochs=1.5)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    with pytest.raises(ConfigError):
        fit(DijetCNN(TINY), [(np.zeros((2, 2, RES, RES)), np.zeros(2))], [], TrainConfig(**FAST))
    with pytest.raises(ConfigError, match="no events"):
        fit(DijetCNN(TINY), lambda e: [], lambda e: [], TrainConfig(**FAST))


def test_checkpoint_round_trip(tmp_path, data):
    _, _, (xs, _) = data
    model = DijetCNN(TINY, seed=0).to(memory_format=torch.channels_last)
    path = save_checkpoint(model, tmp_path / "sub" / "model.pt")
    assert os.listdir(tmp_path / "sub") == ["model.pt"]  # no temporary file left behind
    other = load_checkpoint(DijetCNN(TINY, seed=1), path)
    np.testing.assert_allclose(predict(other, xs[:50]), predict(model, xs[:50]), rtol=1e-5)
    for k, v in other.state_dict().items():
        assert torch.equal(v, model.state_dict()[k].contiguous()), k


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_checkpoints_raise_invalid_file_error(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04not a checkpoint at all" * 10)
    with pytest.raises(InvalidFileError, match="garbage.pt"):
        load_checkpoint(DijetCNN(TINY), garbage)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(DijetCNN(TINY), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(InvalidFileError, match="truncated.pt"):
        load_checkpoint(DijetCNN(TINY), truncated)
    pickled = tmp_path / "pickled.pt"  # arbitrary objects are refused by weights_only=True
    torch.save({"w": torch.zeros(1), "obj": math.gcd}, pickled)
    with pytest.raises(InvalidFileError, match="pickled.pt"):
        load_checkpoint(DijetCNN(TINY), pickled)
    foreign = tmp_path / "foreign.pt"
    save_checkpoint(nn.Linear(2, 2), foreign)
    with pytest.raises(InvalidFileError, match="different network"):
        load_checkpoint(DijetCNN(TINY), foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(DijetCNN(TINY), tmp_path / "missing.pt")
