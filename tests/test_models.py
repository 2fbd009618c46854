"""The shared-CNN dijet model (arXiv:2312.06152): shapes, symmetry, parts, loss, FLOPs."""

import numpy as np
import pytest
import torch
from torch import nn

from darkvalley_core.errors import ConfigError
from darkvalley_core.models import (
    CNNConfig,
    DijetCNN,
    JetCNN,
    event_bce_loss,
    flops_per_event,
    freeze_feature_extractor,
    reinitialise_classifier,
)
from darkvalley_core.trainer import TrainConfig, array_batches, fit

TINY = CNNConfig(resolution=12, conv_channels=(4, 4, 8, 8), conv_kernels=(3, 3, 3, 3),
                 dense_units=(8, 8, 8))


def events(n, res, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, res, res, generator=g) * torch.rand(n, 2, 1, 1, generator=g) * 50


def test_paper_network_layout():
    m = DijetCNN()
    fe, cl = m.feature_extractor, m.classifier
    assert isinstance(fe[0], nn.BatchNorm2d) and fe[0].num_features == 1
    convs = [l for l in fe if isinstance(l, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [
        (64, (5, 5)), (64, (5, 5)), (128, (3, 3)), (128, (3, 3))]
    assert sum(isinstance(l, nn.MaxPool2d) for l in fe) == 3
    dense = [l for l in cl if isinstance(l, nn.Linear)]
    assert [d.out_features for d in dense] == [128, 128, 128, 1]
    assert dense[0].in_features == 128 * 3 * 3  # 25 -> 12 -> 6 -> 3
    assert not any(isinstance(l, nn.Dropout) for l in m.modules())
    final = DijetCNN(CNNConfig.paper_final())
    drops = [l for l in final.modules() if isinstance(l, nn.Dropout)]
    assert len(drops) == 7 and all(d.p == 0.35 for d in drops)  # after every block
    # one shared network: parameters are not duplicated per jet
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in m.jet_cnn.parameters())


@pytest.mark.parametrize("res", [25, 50, 75])
def test_works_at_paper_resolutions(res):
    m = DijetCNN(CNNConfig(resolution=res), seed=0)
    x = events(3, res)
    out = m(x)
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert m.jet_scores(x).shape == (3, 2) and m.jet_logits(x).shape == (3, 2)


def test_output_is_product_of_jet_scores_in_unit_interval():
    m = DijetCNN(seed=1)
    x = events(8, 25)
    for mode in (True, False):
        m.train(mode)
        torch.manual_seed(0)
        scores, logits = m(x, return_logits=True)
        assert ((scores >= 0) & (scores <= 1)).all()
        js = torch.sigmoid(logits.float())
        torch.testing.assert_close(scores, js[:, 0] * js[:, 1])
    m.eval()
    js = m.jet_scores(x)
    torch.testing.assert_close(m(x), js[:, 0] * js[:, 1])
    torch.testing.assert_close(m.log_scores(x).exp(), m(x))


def test_swapping_jets_does_not_change_the_event_score():
    m = DijetCNN(seed=2)
    x = events(16, 25)
    swapped = x.flip(1)
    m.eval()
    torch.testing.assert_close(m(swapped), m(x))
    torch.testing.assert_close(m.jet_scores(swapped), m.jet_scores(x).flip(1))
    # training mode: both jets share one batch-norm pass, so the statistics are the same too
    m.train()
    torch.testing.assert_close(m(swapped), m(x), rtol=1e-5, atol=1e-6)


def test_jet_images_are_classified_independently():
    m = DijetCNN(seed=3).eval()
    x = events(4, 25)
    y = x.clone()
    y[0, 1] = 0.0  # change one jet of one event
    a, b = m.jet_logits(x), m.jet_logits(y)
    torch.testing.assert_close(a[1:], b[1:])
    torch.testing.assert_close(a[0, 0], b[0, 0])
    assert a[0, 1] != b[0, 1]


def test_channels_last_and_bf16_autocast():
    m = DijetCNN(seed=4).eval()
    x = events(8, 25)
    ref = m(x)
    m_cl = m.to(memory_format=torch.channels_last)
    torch.testing.assert_close(m_cl(x.contiguous(memory_format=torch.channels_last)), ref,
                               rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, logits = m_cl(x, return_logits=True)
    assert logits.dtype == torch.bfloat16 and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, ref, atol=0.03, rtol=0)


def test_event_bce_loss_equals_torch_bce_on_the_product():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 2, generator=g) * 3
    y = (torch.rand(64, generator=g) > 0.5).float()
    w = torch.rand(64, generator=g) + 0.5
    p = torch.sigmoid(logits[:, 0]) * torch.sigmoid(logits[:, 1])
    torch.testing.assert_close(event_bce_loss(logits, y), nn.functional.binary_cross_entropy(p, y))
    ref_w = (w * nn.functional.binary_cross_entropy(p, y, reduction="none")).sum() / w.sum()
    torch.testing.assert_close(event_bce_loss(logits, y, w), ref_w)
    # soft labels too
    ys = torch.rand(64, generator=g)
    torch.testing.assert_close(event_bce_loss(logits, ys),
                               nn.functional.binary_cross_entropy(p, ys))


def test_event_bce_loss_is_stable_for_extreme_logits():
    logits = torch.tensor([[40.0, 40.0], [-60.0, -60.0], [60.0, -60.0], [0.0, 90.0]],
                          requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    loss = event_bce_loss(logits, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # confidently wrong events cost about their logit: -log(1 - p) ~ -log(2 e^-40) = 40 - ln 2
    per = [event_bce_loss(logits[i : i + 1].detach(), y[i : i + 1]).item() for i in range(4)]
    assert per[0] == pytest.approx(40 - np.log(2), rel=1e-5)
    assert per[1] == pytest.approx(120, rel=1e-5)
    with pytest.raises(ConfigError):
        event_bce_loss(torch.zeros(3, 1), torch.zeros(3))


def test_flops_per_event_hand_count():
    per_jet = (2 * 25 * 25 * 64 * 1 * 25 + 2 * 12 * 12 * 64 * 64 * 25 + 2 * 6 * 6 * 128 * 64 * 9
               + 2 * 3 * 3 * 128 * 128 * 9 + 2 * (1152 * 128 + 128 * 128 + 128 * 128 + 128))
    assert flops_per_event(CNNConfig()) == 2 * per_jet == 79_629_056
    # the first conv scales with pixels; deeper layers follow the pooled sizes
    assert flops_per_event(CNNConfig(resolution=50)) > 4 * flops_per_event(CNNConfig()) * 0.9


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_freezing_really_freezes_theta():
    m = DijetCNN(TINY, seed=5)
    # give the batch-norm non-trivial running statistics first
    m.train()
    with torch.no_grad():
        m(events(32, 12, seed=9))
    freeze_feature_extractor(m)
    before_fe, before_cl = _state(m.feature_extractor), _state(m.classifier)
    x = events(64, 12, seed=6).numpy()
    y = (np.arange(64) % 2).astype(np.float32)
    fit(m, array_batches(x, y), array_batches(x, y),
        TrainConfig(lr=1e-2, batch_size=16, max_epochs=2, patience=5, precision="fp32"))
    after_fe, after_cl = _state(m.feature_extractor), _state(m.classifier)
    for k in before_fe:  # weights, biases and running statistics
        torch.testing.assert_close(after_fe[k].cpu(), before_fe[k], rtol=0, atol=0)
    assert any(not torch.equal(after_cl[k].cpu(), before_cl[k]) for k in before_cl)
    assert all(not p.requires_grad for p in m.feature_extractor.parameters())
    freeze_feature_extractor(m, frozen=False)
    assert all(p.requires_grad for p in m.feature_extractor.parameters())
    m.train()
    assert m.feature_extractor[0].training


def test_reinitialise_classifier_resets_theta_only():
    m = DijetCNN(TINY, seed=7)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1)  # "trained"
    fe, cl = _state(m.feature_extractor), _state(m.classifier)
    rng_before = torch.random.get_rng_state()
    reinitialise_classifier(m, seed=11)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    first = _state(m.classifier)
    assert all(not torch.equal(first[k], cl[k]) for k in cl)
    assert all(torch.equal(v, fe[k]) for k, v in _state(m.feature_extractor).items())
    reinitialise_classifier(m, seed=11)
    assert all(torch.equal(v, first[k]) for k, v in _state(m.classifier).items())
    reinitialise_classifier(m, seed=12)
    assert not torch.equal(_state(m.classifier)["1.weight"], first["1.weight"])
    # biases start at zero (Keras-style initialisation)
    assert all(torch.count_nonzero(l.bias) == 0 for l in m.classifier if isinstance(l, nn.Linear))
    with pytest.raises(ConfigError):
        reinitialise_classifier(nn.Linear(2, 2), seed=0)


def test_seeded_construction_is_reproducible():
    a, b, c = DijetCNN(TINY, seed=3), DijetCNN(TINY, seed=3), DijetCNN(TINY, seed=4)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.state_dict()["jet_cnn.classifier.1.weight"],
                           c.state_dict()["jet_cnn.classifier.1.weight"])


def test_config_and_input_validation():
    with pytest.raises(ConfigError, match="too small"):
        CNNConfig(resolution=4)
    with pytest.raises(ConfigError):
        CNNConfig(dropout=1.0)
    with pytest.raises(ConfigError):
        CNNConfig(conv_channels=(64, 64), conv_kernels=(5, 5, 3, 3))
    with pytest.raises(ConfigError):
        CNNConfig(resolution=25.0)
    cfg = CNNConfig.paper_final(resolution=50)
    assert CNNConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        CNNConfig.from_dict({"resolutoin": 25})
    m = DijetCNN()
    with pytest.raises(ConfigError, match=r"\(B, 2, 25, 25\)"):
        m(torch.zeros(2, 25, 25))
    with pytest.raises(ConfigError):
        m(torch.zeros(2, 2, 50, 50))
    with pytest.raises(ConfigError):
        JetCNN("paper")
