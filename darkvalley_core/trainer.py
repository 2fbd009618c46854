"""A model-agnostic training loop: Adam, early stopping on validation loss, progress callbacks.

Follows physics.md section 9 (arXiv:2312.06152): binary cross-entropy, Adam lr 1e-4, batch 512,
early stopping on the validation loss with patience 10, the best epoch's weights kept.

The model contract (``DijetCNN`` meets it; any ``nn.Module`` can):
- ``model(x)`` returns event scores in [0, 1], shape (B,);
- optionally ``model.loss_and_scores(x, y, w) -> (weighted mean loss, scores)``, a numerically
  stable loss (``DijetCNN`` computes it from the jet logits); without it the trainer uses
  weighted binary cross-entropy on the clamped scores;
- optionally ``model.log_scores(x)``, used by ``predict(..., output="log_score")``.

Data come as callables ``epoch -> iterable of (x, y, w)`` (numpy arrays or torch tensors; x
float (B, 2, res, res), y (B,), w (B,) or None), so the caller can make freshly augmented batches
for every epoch; each yielded chunk is shuffled (seeded) and cut into ``batch_size`` pieces, so a
caller may also yield the whole set at once. ``callback(record)`` receives one dict per epoch
(the job runner writes metrics and heartbeats from it); ``should_stop()`` is checked before every
batch and a cancelled fit returns with ``FitResult.cancelled`` set.

Checkpoints are plain ``state_dict`` files written atomically and read with
``torch.load(weights_only=True)``: never an arbitrary pickle.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, InvalidFileError, StorageError
from .significance import roc_auc

__all__ = [
    "TrainConfig",
    "FitResult",
    "select_device",
    "resolve_precision",
    "cpu_has_bf16",
    "fit",
    "predict",
    "array_batches",
    "save_checkpoint",
    "load_checkpoint",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Training settings (defaults: the paper's)."""

    lr: float = 1e-4  # Adam learning rate (paper)
    batch_size: int = 512  # events per optimiser step (paper)
    max_epochs: int = 100  # upper bound; early stopping normally ends sooner
    patience: int = 10  # epochs without validation-loss improvement before stopping (paper)
    min_delta: float = 0.0  # an improvement must exceed this to count (authors' code: 0)
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU) | "cpu" | "cuda" | "mps"
    precision: str = "auto"  # "auto" (bf16 autocast on bf16-capable CPU or CUDA) | "fp32" | "bf16"
    channels_last: bool = True  # NHWC memory format for model and images (faster convolutions)
    shuffle: bool = True  # shuffle events within each yielded chunk (seeded)
    seed: int = 0  # seeds dropout, shuffling and anything else drawn from torch's RNG
    deterministic: bool = True  # deterministic kernels (free on CPU; may cost speed on GPUs)
    num_threads: int | None = None  # torch intra-op threads during the fit; None = leave as is
    compute_val_auc: bool = True  # report the validation AUC each epoch (labels must be 0/1)

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        for name, low in (("batch_size", 1), ("max_epochs", 1), ("patience", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= {low}, got {v!r}")
        if not self.min_delta >= 0:
            raise ConfigError(f"TrainConfig.min_delta must be >= 0, got {self.min_delta!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"TrainConfig.device must be one of {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"TrainConfig.seed must be a non-negative integer, got {self.seed!r}")
        if self.num_threads is not None and (
            not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ConfigError(
                f"TrainConfig.num_threads must be None or >= 1, got {self.num_threads!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """What ``fit`` did. Epochs are counted from 0; ``best_epoch`` is -1 if none finished."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    cancelled: bool
    elapsed_s: float
    device: str
    precision: str
    history: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------- device, precision


def select_device(name: str = "auto") -> torch.device:
    """``"auto"``: CUDA if available, then Apple MPS, then CPU. A named device that is not
    available raises ConfigError."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {DEVICES}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError(
            "device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'"
        )
    if name == "mps" and not mps:
        raise ConfigError(
            "device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'"
        )
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True if the CPU has native bfloat16 arithmetic (x86 AVX512-BF16 or AMX-BF16, or ARM BF16),
    where bf16 autocast is faster than fp32. Read from /proc/cpuinfo (False if unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn "auto" into "bf16" (bf16-capable CPU, or CUDA GPU with bf16) or "fp32"."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def _reproducible(seed: int, device: torch.device, num_threads: int | None, deterministic: bool):
    """Seed torch inside a forked RNG (the caller's RNG state is restored afterwards), select
    deterministic kernels (warn-only where an op has none), and set the thread count; all of it
    is restored on exit."""
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS reproducibility
    devices = [device.index or 0] if device.type == "cuda" else []
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.backends.cudnn.benchmark = prev_bench
            if num_threads is not None:
                torch.set_num_threads(prev_threads)


# ----------------------------------------------------------------------------- data handling


def _tensor(a, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float32)
    try:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be a numpy array or torch tensor of numbers ({e})") from e


def _chunk(item) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ConfigError(
            "each training/validation batch must be a tuple (x, y) or (x, y, w); "
            f"got {type(item).__name__}"
        )
    x = _tensor(item[0], "x")
    y = _tensor(item[1], "y").reshape(-1)
    w = None if len(item) == 2 or item[2] is None else _tensor(item[2], "w").reshape(-1)
    if y.shape[0] != x.shape[0] or (w is not None and w.shape[0] != x.shape[0]):
        raise ConfigError(
            f"batch with {x.shape[0]} events but {y.shape[0]} labels"
            + ("" if w is None else f" and {w.shape[0]} weights")
        )
    return x, y, w


def _minibatches(chunks: Iterable, batch_size: int, generator: torch.Generator | None):
    """Yield (x, y, w) pieces of at most batch_size events from each chunk (shuffled if a
    generator is given)."""
    for item in chunks:
        x, y, w = _chunk(item)
        n = x.shape[0]
        if generator is not None and n > 1:
            perm = torch.randperm(n, generator=generator)
            x, y = x[perm], y[perm]
            w = None if w is None else w[perm]
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            yield x[sl], y[sl], (None if w is None else w[sl])


def _batches_of(source, epoch: int, what: str) -> Iterable:
    if callable(source):
        return source(epoch)
    if isinstance(source, tuple) and len(source) in (2, 3) and getattr(source[0], "ndim", 0) == 4:
        return [source]  # a single (x, y[, w]) given directly
    if isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
        raise ConfigError(f"{what} must be a callable epoch -> iterable of (x, y, w), or a list")
    return source


def array_batches(x, y, w=None) -> Callable[[int], list]:
    """The simplest data source: the same arrays every epoch (the trainer shuffles and cuts them
    into ``batch_size`` pieces)."""
    item = (x, y, w)
    return lambda epoch: [item]


def _to(t: torch.Tensor | None, device: torch.device, channels_last: bool):
    if t is None:
        return None
    t = t.to(device, non_blocking=True)
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def _loss_and_scores(model: nn.Module, x, y, w):
    fn = getattr(model, "loss_and_scores", None)
    if fn is not None:
        loss, scores = fn(x, y, w)
        return loss.float(), scores
    scores = model(x).float().reshape(-1)
    p = scores.clamp(1e-7, 1 - 1e-7)
    per = F.binary_cross_entropy(p, y.to(p.dtype), reduction="none")
    loss = per.mean() if w is None else (w * per).sum() / w.sum()
    return loss, scores


def _weighted_sum(losses: list, weights: list) -> float:
    """sum(loss_i w_i) in float64 on the CPU (MPS has no float64), one device sync."""
    values = torch.stack(losses).float().cpu().double()
    return float((values * torch.tensor(weights, dtype=torch.float64)).sum())


def _evaluate(model, batches, device, precision, channels_last, batch_size, should_stop, want_auc):
    """Weighted mean loss over all events, and AUC (None when not computable)."""
    losses, weights = [], []
    all_scores, all_labels = [], []
    cancelled = False
    model.eval()
    with torch.inference_mode(), _autocast(device, precision):
        for x, y, w in _minibatches(batches, batch_size, None):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            bw = float(x.shape[0]) if w is None else float(w.sum())
            x, y, w = (_to(t, device, channels_last) for t in (x, y, w))
            loss, scores = _loss_and_scores(model, x, y, w)
            losses.append(loss.detach())
            weights.append(bw)
            if want_auc:
                all_scores.append(scores.float().cpu())
                all_labels.append(y.cpu())
    if cancelled:
        return math.nan, None, True
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ConfigError("val_batches yielded no events (or zero total weight)")
    val_loss = _weighted_sum(losses, weights) / weight_sum
    auc = None
    if want_auc and all_scores:
        s = torch.cat(all_scores).numpy()
        lab = torch.cat(all_labels).numpy()
        if np.isin(lab, (0.0, 1.0)).all() and 0 < lab.sum() < lab.size and np.isfinite(s).all():
            auc = roc_auc(s, lab)
    return val_loss, auc, False


# ----------------------------------------------------------------------------- training


def fit(
    model: nn.Module,
    train_batches,
    val_batches,
    config: TrainConfig | None = None,
    callback: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the best epoch's weights (lowest val loss).

    train_batches: callable ``epoch -> iterable of (x, y, w)`` (epoch counted from 0), called
        once per epoch. val_batches: the same kind of callable (called with the epoch) or a list.
    callback(record): after every epoch, record = dict(epoch, max_epochs, train_loss, val_loss,
        val_auc (None if labels are not 0/1 of both classes), best_epoch, best_val_loss,
        improved, elapsed_s, events_per_s).
    should_stop(): polled before every batch; if it returns True the fit stops, restores the
        best weights so far and returns with ``cancelled=True``.
    The model is moved to the chosen device (and to channels_last if set) and stays there.
    Only parameters with ``requires_grad`` are optimised (a frozen feature extractor stays put).
    Same seed, same data and same device -> identical weights on CPU.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"fit needs a TrainConfig, got {type(config).__name__}")
    if not callable(train_batches):
        raise ConfigError("train_batches must be a callable epoch -> iterable of (x, y, w)")
    device = select_device(config.device)
    precision = resolve_precision(config.precision, device)
    t0 = time.perf_counter()
    history: list[dict] = []
    best_state: dict | None = None
    best_loss, best_epoch = math.inf, -1
    stopped_early = cancelled = False
    if not (callable(val_batches) or isinstance(val_batches, Iterable)) or isinstance(
        val_batches, (str, bytes)
    ):
        raise ConfigError(
            "val_batches must be a callable epoch -> iterable of (x, y, w), or a list"
        )

    with _reproducible(config.seed, device, config.num_threads, config.deterministic):
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the model has no trainable parameters (everything is frozen)")
        optimiser = torch.optim.Adam(params, lr=config.lr)
        shuffler = torch.Generator().manual_seed(config.seed) if config.shuffle else None

        for epoch in range(config.max_epochs):
            model.train()
            losses, weights, n_events = [], [], 0
            t_epoch = time.perf_counter()
            for x, y, w in _minibatches(train_batches(epoch), config.batch_size, shuffler):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                bw = float(x.shape[0]) if w is None else float(w.sum())
                n_events += x.shape[0]
                x, y, w = (_to(t, device, config.channels_last) for t in (x, y, w))
                optimiser.zero_grad(set_to_none=True)
                with _autocast(device, precision):
                    loss, _ = _loss_and_scores(model, x, y, w)
                loss.backward()
                optimiser.step()
                losses.append(loss.detach())  # no per-batch device sync
                weights.append(bw)
            if cancelled:
                break
            if n_events == 0:
                raise ConfigError(f"train_batches({epoch}) yielded no events")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time = time.perf_counter() - t_epoch
            val_loss, val_auc, cancelled = _evaluate(
                model,
                _batches_of(val_batches, epoch, "val_batches"),
                device,
                precision,
                config.channels_last,
                max(config.batch_size, 1024),
                should_stop,
                config.compute_val_auc,
            )
            if cancelled:
                break
            improved = val_loss < best_loss - config.min_delta
            if improved:
                best_loss, best_epoch = val_loss, epoch
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            record = dict(
                epoch=epoch,
                max_epochs=config.max_epochs,
                train_loss=_weighted_sum(losses, weights) / sum(weights)
                if sum(weights) > 0 else math.nan,
                val_loss=val_loss,
                val_auc=val_auc,
                best_epoch=best_epoch,
                best_val_loss=best_loss,
                improved=improved,
                elapsed_s=time.perf_counter() - t0,
                events_per_s=n_events / train_time if train_time > 0 else math.nan,
            )
            history.append(record)
            if callback is not None:
                callback(dict(record))
            if epoch - best_epoch >= config.patience:
                stopped_early = True
                break

        if best_state is not None:
            model.load_state_dict(best_state)

    return FitResult(
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        epochs_run=len(history),
        stopped_early=stopped_early,
        cancelled=cancelled,
        elapsed_s=time.perf_counter() - t0,
        device=str(device),
        precision=precision,
        history=history,
    )


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def predict(
    model: nn.Module,
    x_batches,
    *,
    batch_size: int = 4096,
    precision: str = "fp32",
    output: str = "score",
) -> np.ndarray:
    """Scores of all events, float64 (N,), in input order, on the model's device.

    x_batches: an array/tensor (N, 2, res, res), or an iterable of such arrays or of tuples whose
        first element is x (so validation-style (x, y, w) batches work too).
    output: "score" (event score in [0, 1]) or "log_score" (its logarithm from the logits: the
        same ranking, but it does not saturate at 1 in float32, which matters for thresholds at
        eps_b = 1e-3 on a well-trained model).
    precision: "fp32" (default; exact ranking) or "bf16" / "auto" autocast.
    """
    if output not in ("score", "log_score"):
        raise ConfigError(f"predict: output must be 'score' or 'log_score', got {output!r}")
    if batch_size < 1:
        raise ConfigError(f"predict: batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    precision = resolve_precision(precision, device)
    channels_last = any(
        p.dim() == 4 and p.shape[1] > 1 and p.is_contiguous(memory_format=torch.channels_last)
        and not p.is_contiguous()
        for p in model.parameters()
    )
    if isinstance(x_batches, (np.ndarray, torch.Tensor)):
        x_all = x_batches
        x_batches = (x_all[i : i + batch_size] for i in range(0, len(x_all), batch_size))
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode(), _autocast(device, precision):
            for item in x_batches:
                x = item[0] if isinstance(item, (tuple, list)) else item
                x = _tensor(x, "x")
                for start in range(0, x.shape[0], batch_size):
                    xb = _to(x[start : start + batch_size], device, channels_last)
                    if output == "score":
                        s = model(xb)
                    elif hasattr(model, "log_scores"):
                        s = model.log_scores(xb)
                    else:
                        s = torch.log(model(xb).float())
                    out.append(s.float().reshape(-1).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate(out).astype(np.float64)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(model: nn.Module, path) -> Path:
    """Write ``model.state_dict()`` (CPU, contiguous tensors) to ``path`` atomically: a temporary
    file in the same folder, fsync, then ``os.replace``. Unwritable path -> StorageError."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise StorageError(
            f"cannot write checkpoint {path}: {e.strerror or e}; check the folder is writable "
            "and the disk not full"
        ) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def load_checkpoint(model: nn.Module, path, *, strict: bool = True) -> nn.Module:
    """Load a ``save_checkpoint`` file into ``model`` (on the model's device) and return it.

    Read with ``torch.load(weights_only=True)``, so a file cannot run code. A missing file raises
    FileNotFoundError; a corrupted, foreign or mismatched file raises InvalidFileError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train a model first")
    try:
        state = torch.load(path, weights_only=True, map_location=_model_device(model))
    except Exception as e:  # pickle, zip and torch errors all mean "not our file"
        raise InvalidFileError(
            f"{path} is not a readable model checkpoint ({type(e).__name__}: {e}); "
            "it is corrupted or not written by darkvalley: delete it and re-train"
        ) from e
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InvalidFileError(
            f"{path} is not a model checkpoint (expected a state_dict of tensors, found "
            f"{type(state).__name__}); delete it and re-train"
        )
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise InvalidFileError(
            f"{path} holds weights of a different network ({str(e).splitlines()[0]}...); "
            "build the model with the configuration it was trained with"
        ) from e
    return model
