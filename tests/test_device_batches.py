"""Images made on the training device (torch) equal the CPU ones; a study can use them."""

import numpy as np
import pytest
import torch

from darkvalley_core.augment import AugmentedBatches, DeviceAugmentedBatches
from darkvalley_core.errors import ConfigError
from darkvalley_core.storage import read_events


@pytest.mark.parametrize("normalise", ["raw", "event"])
def test_device_batches_match_cpu_batches(tiny_samples, normalise):
    sample = read_events(tiny_samples[0])
    c = sample.constituents
    n = len(sample)
    labels = (np.arange(n) % 2).astype(np.float32)
    kwargs = dict(n_copies=3, method="rotate", resolution=25, normalise=normalise,
                  batch_size=64, seed=7, event_ids=np.arange(n) * 2)
    cpu = AugmentedBatches(c["pt"], c["eta"], c["phi"], c["offsets"], labels, **kwargs)
    dev = DeviceAugmentedBatches(c["pt"], c["eta"], c["phi"], c["offsets"], labels,
                                 device="cpu", **kwargs)
    assert dev.n_items == cpu.n_items == 4 * n
    np.testing.assert_array_equal(dev.order(3), cpu.order(3))  # same shuffling
    items = cpu.order(0)[:200]
    a, la, _ = cpu.batch(items)
    b, lb, _ = dev.batch(items)
    assert isinstance(b, torch.Tensor) and b.shape == a.shape
    np.testing.assert_array_equal(la, lb.numpy())
    b = b.numpy()
    # identical up to float rounding that moves a constituent across a pixel edge
    same = np.isclose(a, b, rtol=1e-4, atol=1e-3).all(axis=(2, 3))
    assert same.mean() > 0.97
    if normalise == "raw":
        np.testing.assert_allclose(a.sum(axis=(2, 3)), b.sum(axis=(2, 3)), rtol=1e-3, atol=0.5)


def test_device_batches_refuse_smearing():
    with pytest.raises(ConfigError, match="CPU"):
        DeviceAugmentedBatches(np.ones(10), np.zeros(10), np.zeros(10), np.array([0, 5, 10]),
                               np.zeros(1), method="smear")


def test_study_with_images_made_on_the_device(cache_with_samples):
    from darkvalley_core.training import StudyConfig, run_study

    res = run_study(StudyConfig(method="cwola", preset="tiny", runs=1, max_epochs=2,
                                patience=2, batch_size=64, injection=5.0, augment="rotation",
                                copies=2, augment_on_device="yes"))
    assert 0.0 <= res["runs"][0]["auc"] <= 1.0
