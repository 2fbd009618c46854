"""The shared-CNN dijet classifier of arXiv:2312.06152 (also used by arXiv:2412.00198).

One convolutional network, shared by both leading jets, maps a jet image to a score in [0, 1];
the event score is the product of the two jet scores (physics.md section 8). Per jet::

    BatchNorm2d(1)                                  \\
    Conv 64 5x5 (same) ReLU, MaxPool 2               |
    Conv 64 5x5 (same) ReLU, MaxPool 2               |  feature_extractor  (Theta)
    Conv 128 3x3 (same) ReLU, MaxPool 2              |
    Conv 128 3x3 (same) ReLU                        /
    Flatten; Dense 128 ReLU x3; Dense 1 (logit)        classifier         (theta)

The paper's final variant adds Dropout(0.35) after every block (``CNNConfig.paper_final()``).
Transfer learning moves Theta from a pre-trained model and retrains theta:
``freeze_feature_extractor(model)`` then ``reinitialise_classifier(model, seed)``.

Shapes: an event batch is ``x`` float32 (B, 2, res, res), jet 0 = leading jet. ``DijetCNN(x)``
returns event scores (B,); ``jet_logits(x)`` (B, 2). The network works in ``channels_last``
memory format and under ``torch.autocast(..., dtype=torch.bfloat16)``; losses are always
computed in float32 from the jet logits (``event_bce_loss``), never from the rounded product.

Choices (written down, see also the trainer):
- Both jets of a batch go through the network as one batch of 2B images, so the input
  batch-norm sees leading and sub-leading jets together: the event score is exactly symmetric
  under swapping the two jets in training and in evaluation mode, train and eval use the same
  pixel statistics, and it is one kernel call instead of two. (The authors' Keras code used two
  separate input batch-norms, one per jet position.)
- Weights start like Keras defaults (Glorot-uniform kernels, zero biases), as in the authors'
  TensorFlow code; batch-norm eps 1e-3 as Keras, momentum 0.1 (PyTorch's; Keras 0.99 would leave
  the running statistics far from the data in short trainings).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

__all__ = [
    "CNNConfig",
    "JetCNN",
    "DijetCNN",
    "event_bce_loss",
    "freeze_feature_extractor",
    "reinitialise_classifier",
    "flops_per_event",
    "n_parameters",
]

PAPER_RESOLUTIONS = (25, 50, 75)


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of the per-jet CNN (defaults: arXiv:2312.06152, section 8 of physics.md)."""

    resolution: int = 25  # image side in pixels; the paper used 25, 50, 75 (25 trained best)
    conv_channels: tuple[int, ...] = (64, 64, 128, 128)  # output channels of each conv layer
    conv_kernels: tuple[int, ...] = (5, 5, 3, 3)  # square kernel side of each conv layer ("same")
    pool_after: tuple[bool, ...] = (True, True, True, False)  # MaxPool 2x2 after these convs
    dense_units: tuple[int, ...] = (128, 128, 128)  # hidden dense layers (ReLU), then Dense 1
    dropout: float = 0.0  # after every block; 0.35 in the paper's final variant
    bn_eps: float = 1e-3  # input batch-norm epsilon (Keras default)
    bn_momentum: float = 0.1  # running-statistics update rate (PyTorch default)

    def __post_init__(self) -> None:
        for name in ("conv_channels", "conv_kernels", "pool_after", "dense_units"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ConfigError(f"CNNConfig.{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not isinstance(self.resolution, int) or isinstance(self.resolution, bool):
            raise ConfigError(f"CNNConfig.resolution must be an integer, got {self.resolution!r}")
        n = len(self.conv_channels)
        if n == 0:
            raise ConfigError("CNNConfig.conv_channels is empty: the network needs a conv layer")
        if len(self.conv_kernels) != n or len(self.pool_after) != n:
            raise ConfigError(
                f"CNNConfig: conv_channels ({n}), conv_kernels ({len(self.conv_kernels)}) and "
                f"pool_after ({len(self.pool_after)}) must have the same length"
            )
        if any(int(c) < 1 for c in self.conv_channels + self.conv_kernels):
            raise ConfigError("CNNConfig: conv channels and kernel sizes must be positive")
        if any(int(u) < 1 for u in self.dense_units):
            raise ConfigError("CNNConfig.dense_units must be positive")
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "conv_kernels", tuple(int(k) for k in self.conv_kernels))
        object.__setattr__(self, "pool_after", tuple(bool(p) for p in self.pool_after))
        object.__setattr__(self, "dense_units", tuple(int(u) for u in self.dense_units))
        if self.feature_side < 1:
            raise ConfigError(
                f"CNNConfig.resolution={self.resolution} is too small for "
                f"{sum(self.pool_after)} max-pools; use at least {2 ** sum(self.pool_after)} "
                f"(the paper used {PAPER_RESOLUTIONS})"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"CNNConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.bn_eps > 0 or not 0.0 < self.bn_momentum <= 1.0:
            raise ConfigError("CNNConfig: bn_eps must be > 0 and bn_momentum in (0, 1]")

    @classmethod
    def paper_final(cls, resolution: int = 25, **overrides) -> "CNNConfig":
        """The paper's final variant: the default network with dropout 0.35 after every block."""
        return cls(resolution=resolution, dropout=0.35, **overrides)

    @property
    def feature_side(self) -> int:
        """Side of the last feature map (resolution halved, rounded down, at each pool)."""
        side = self.resolution
        for pool in self.pool_after:
            if pool:
                side //= 2
        return side

    @property
    def n_features(self) -> int:
        """Length of the flattened feature vector that enters the classifier."""
        return self.conv_channels[-1] * self.feature_side**2

    def to_dict(self) -> dict:
        """JSON-friendly dict (lists for tuples); ``CNNConfig.from_dict`` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "CNNConfig":
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"CNNConfig: unknown option(s) {sorted(unknown)}")
        return cls(**values)


def _keras_init(module: nn.Module) -> None:
    """Glorot-uniform kernels and zero biases (Keras defaults); batch-norm to identity."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running stats reset


class JetCNN(nn.Module):
    """Jet image (N, 1, res, res) or (N, res, res) -> jet logit (N,); score = sigmoid(logit).

    Parts: ``feature_extractor`` (Theta: input batch-norm and conv blocks) and ``classifier``
    (theta: flatten and dense layers, ending with one logit).
    """

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        config = CNNConfig() if config is None else config
        if not isinstance(config, CNNConfig):
            raise ConfigError(f"JetCNN needs a CNNConfig, got {type(config).__name__}")
        self.config = config
        layers: list[nn.Module] = [
            nn.BatchNorm2d(1, eps=config.bn_eps, momentum=config.bn_momentum)
        ]
        in_ch = 1
        for ch, k, pool in zip(config.conv_channels, config.conv_kernels, config.pool_after):
            layers += [nn.Conv2d(in_ch, ch, k, padding="same"), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            in_ch = ch
        self.feature_extractor = nn.Sequential(*layers)

        head: list[nn.Module] = [nn.Flatten()]
        n_in = config.n_features
        for units in config.dense_units:
            head += [nn.Linear(n_in, units), nn.ReLU(inplace=True)]
            if config.dropout > 0:
                head.append(nn.Dropout(config.dropout))
            n_in = units
        head.append(nn.Linear(n_in, 1))
        self.classifier = nn.Sequential(*head)
        self.feature_extractor_frozen = False
        _keras_init(self)

    def train(self, mode: bool = True) -> "JetCNN":
        super().train(mode)
        if self.feature_extractor_frozen:
            # A frozen Theta must not move at all: its batch-norm keeps using (and not updating)
            # the running statistics, as a non-trainable Keras BatchNormalization does.
            for m in self.feature_extractor.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        res = self.config.resolution
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != res or x.shape[3] != res:
            raise ConfigError(
                f"JetCNN expects jet images of shape (N, 1, {res}, {res}), got {tuple(x.shape)}"
            )
        if _is_channels_last(self):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.feature_extractor(x)).squeeze(-1)


def _is_channels_last(module: nn.Module) -> bool:
    """Whether the conv weights were put in channels_last (``model.to(memory_format=...)``)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels > 1:
            return m.weight.is_contiguous(memory_format=torch.channels_last) and not (
                m.weight.is_contiguous()
            )
    return False


class DijetCNN(nn.Module):
    """Event classifier: one shared ``JetCNN`` on both jets, event score = product of jet scores.

    ``forward(x)`` with x (B, 2, res, res) returns scores (B,) in [0, 1];
    ``forward(x, return_logits=True)`` returns ``(scores, jet_logits)`` with jet_logits (B, 2).
    ``seed`` (optional) makes the initial weights reproducible without touching the global RNG.
    """

    def __init__(self, config: CNNConfig | None = None, *, seed: int | None = None):
        super().__init__()
        config = CNNConfig() if config is None else config
        if seed is None:
            self.jet_cnn = JetCNN(config)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                self.jet_cnn = JetCNN(config)
        self.config = config

    @property
    def feature_extractor(self) -> nn.Sequential:
        """Theta: input batch-norm and convolutional blocks (shared by both jets)."""
        return self.jet_cnn.feature_extractor

    @property
    def classifier(self) -> nn.Sequential:
        """theta: the dense part (shared by both jets)."""
        return self.jet_cnn.classifier

    def jet_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the two jets, (B, 2); dtype follows autocast (bfloat16 under it)."""
        res = self.config.resolution
        if x.dim() != 4 or x.shape[1] != 2 or x.shape[2] != res or x.shape[3] != res:
            raise ConfigError(
                f"DijetCNN expects events of shape (B, 2, {res}, {res}) (two jet images per "
                f"event), got {tuple(x.shape)}"
            )
        b = x.shape[0]
        # (B, 2, r, r) -> (2B, 1, r, r): event i's jets are rows 2i and 2i + 1.
        jets = x.reshape(b * 2, 1, res, res)
        return self.jet_cnn(jets).reshape(b, 2)

    def jet_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of the two jets, (B, 2) float32 in [0, 1]."""
        return torch.sigmoid(self.jet_logits(x).float())

    def log_scores(self, x: torch.Tensor) -> torch.Tensor:
        """log(event score), (B,) float32: a ranking that does not saturate at 1 (thresholds at
        tiny background efficiency)."""
        return F.logsigmoid(self.jet_logits(x).float()).sum(dim=1)

    def forward(self, x: torch.Tensor, return_logits: bool = False):
        logits = self.jet_logits(x)
        s = torch.sigmoid(logits.float())
        scores = s[:, 0] * s[:, 1]
        return (scores, logits) if return_logits else scores

    def loss_and_scores(self, x, y, w=None):
        """Weighted event BCE (stable, from the logits) and the event scores (for the trainer)."""
        scores, logits = self.forward(x, return_logits=True)
        return event_bce_loss(logits, y, w), scores


def event_bce_loss(
    jet_logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of the event score p = sigmoid(l1) sigmoid(l2), from the jet logits.

    With a = exp(-l1), b = exp(-l2): p = 1 / ((1 + a)(1 + b)), so
        log p     = -softplus(-l1) - softplus(-l2)
        log (1-p) = log(a + b + ab) + log p = logsumexp(-l1, -l2, -l1 - l2) + log p,
    exact and finite (with finite gradients) for any logits, unlike log1p(-exp(log p)), which
    needs a branch near p = 1. Computed in float32 whatever the autocast dtype.
    Returns sum(w * bce) / sum(w) (plain mean when ``weights`` is None); labels may be soft.
    """
    logits = jet_logits.float()
    if logits.dim() != 2 or logits.shape[1] != 2:
        raise ConfigError(f"event_bce_loss expects jet logits (B, 2), got {tuple(logits.shape)}")
    y = labels.to(logits.device, torch.float32).reshape(-1)
    if y.shape[0] != logits.shape[0]:
        raise ConfigError(f"event_bce_loss: {y.shape[0]} labels for {logits.shape[0]} events")
    l1, l2 = logits[:, 0], logits[:, 1]
    log_p = -(F.softplus(-l1) + F.softplus(-l2))
    log_1mp = torch.logsumexp(torch.stack([-l1, -l2, -l1 - l2], dim=1), dim=1) + log_p
    per_event = -(y * log_p + (1.0 - y) * log_1mp)
    if weights is None:
        return per_event.mean()
    w = weights.to(logits.device, torch.float32).reshape(-1)
    if w.shape[0] != per_event.shape[0]:
        raise ConfigError(f"event_bce_loss: {w.shape[0]} weights for {per_event.shape[0]} events")
    return (w * per_event).sum() / w.sum()


def _jet_cnn(model: nn.Module) -> JetCNN:
    if isinstance(model, JetCNN):
        return model
    inner = getattr(model, "jet_cnn", None)
    if isinstance(inner, JetCNN):
        return inner
    raise ConfigError(f"expected a DijetCNN or JetCNN, got {type(model).__name__}")


def freeze_feature_extractor(model: nn.Module, frozen: bool = True) -> nn.Module:
    """Freeze (or, with ``frozen=False``, unfreeze) Theta for transfer learning.

    Frozen means: no gradients for its parameters (the trainer gives the optimiser only
    trainable ones) and its batch-norm stays in evaluation mode, so neither weights nor running
    statistics change while theta trains. Dropout inside Theta keeps following train/eval.
    """
    jet = _jet_cnn(model)
    for p in jet.feature_extractor.parameters():
        p.requires_grad_(not frozen)
    jet.feature_extractor_frozen = bool(frozen)
    jet.train(jet.training)
    return model


def reinitialise_classifier(model: nn.Module, seed: int) -> nn.Module:
    """Reset theta (the dense part) to fresh Keras-style initial weights drawn with ``seed``.

    The same seed gives the same weights; the global torch RNG is left as it was.
    """
    jet = _jet_cnn(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        with torch.no_grad():
            _keras_init(jet.classifier)
    return model


def flops_per_event(config: CNNConfig | None = None) -> int:
    """Analytic forward-pass FLOPs per event (both jets) of the network described by ``config``.

    Counts multiply-adds of the conv and dense layers as 2 FLOPs each (with 'same' padding every
    output pixel is counted with the full kernel); batch-norm, biases, ReLU, pooling, dropout and
    the sigmoids add well under 1% and are left out. A training step costs about 3x this
    (forward, backward to activations, backward to weights). Default network at 25x25:
    ~80 MFLOP per event forward.
    """
    config = CNNConfig() if config is None else config
    side, in_ch, total = config.resolution, 1, 0
    for ch, k, pool in zip(config.conv_channels, config.conv_kernels, config.pool_after):
        total += 2 * side * side * ch * in_ch * k * k
        if pool:
            side //= 2
        in_ch = ch
    n_in = config.n_features
    for units in config.dense_units + (1,):
        total += 2 * n_in * units
        n_in = units
    return 2 * total


def n_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

