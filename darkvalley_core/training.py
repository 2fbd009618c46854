"""Training studies: full supervision, CWoLa and transfer learning, from event files to the
significance after the network's cut.

Methods (physics.md section 9; arXiv:2312.06152, arXiv:2412.00198):

* ``supervised``: pure signal (1) vs pure background (0) in the SR; an upper bound.
* ``cwola``: SR (1) vs SB (0) on signal-injected "data" (Metodiev, Nachman, Thaler,
  arXiv:1708.02949; CWoLa hunting, arXiv:1805.02664).
* ``transfer``: pre-train the whole network on pure signal of *all other* benchmarks vs pure
  background in the SR (saved under ``cache/models`` and reused), then freeze the feature
  extractor Theta, re-initialise the classifier theta and train theta on the CWoLa data.

A study repeats the training ``runs`` times, each on freshly drawn data, and evaluates each run on
independent pure-signal and pure-background SR test samples: the true-label AUC, and for every
working point eps_b the signal efficiency, the ideal significance
Z = (S/sqrt(B)) eps_s / sqrt(eps_b) and the background-subtracted Asimov significance of the
SR data passing the cut. Augmentation ("+n" copies) is applied to the training split only.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import datasets as ds
from .errors import ConfigError, InvalidFileError

METHODS = ("supervised", "cwola", "transfer")
AUGMENTATIONS = {"none": "none", "rotation": "rotate", "smearing": "smear",
                 "combined": "combined"}
DEFAULT_EPS_B = (0.1, 0.01, 0.001)
IMAGE_CHUNK = 4096  # events per image chunk when scoring: bounds memory at 75x75


@dataclass(frozen=True)
class StudyConfig:
    """One point of a sensitivity study (defaults: the papers' settings where they apply)."""

    method: str = "cwola"            # supervised | cwola | transfer
    benchmark: str = "ID-10"
    injection: float = 3.0           # initial S/sqrt(B) in the SR (ignored by supervised)
    resolution: int = 25             # 25, 50 or 75 pixels a side
    augment: str = "none"            # none | rotation | smearing | combined
    copies: int = 5                  # "+n": augmented copies per training event
    runs: int = 3                    # repetitions, each on freshly drawn data
    seed: int = 0
    eps_b: tuple = DEFAULT_EPS_B     # working points: background efficiencies
    preset: str = "demo"             # which generated samples to use
    sample_seed: int = 0             # generation seed of those samples
    luminosity_fb: float | None = None  # None: the preset's
    sidebands: str = "narrow"        # narrow | wide
    normalise: str = "raw"           # raw | event (EN)
    dropout: float = 0.0             # 0.35 is the papers' final variant
    max_angle: float = math.pi       # rotation range [-a, a]
    smear_formula: str = "lecture"   # lecture | delphes
    lr: float = 1e-4
    batch_size: int = 512
    max_epochs: int = 100
    patience: int = 10
    device: str = "auto"             # auto | cpu | cuda | mps
    precision: str = "auto"          # auto | fp32 | bf16
    n_jobs: int = 0                  # generation workers if samples are missing (0: all cores)
    augment_on_device: str = "auto"  # auto (on a GPU), yes, no: make images on the device

    def __post_init__(self):
        from .benchmarks import get_benchmark
        from .images import check_resolution
        from .presets import get_preset

        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}: choose one of {METHODS}")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {self.augment!r}: choose one of "
                              f"{tuple(AUGMENTATIONS)}")
        object.__setattr__(self, "benchmark", get_benchmark(self.benchmark).name)
        get_preset(self.preset)
        check_resolution(self.resolution)
        if self.runs < 1:
            raise ConfigError(f"runs must be >= 1, got {self.runs}")
        if self.copies < 0:
            raise ConfigError(f"copies must be >= 0, got {self.copies}")
        if not np.isfinite(self.injection) or self.injection < 0:
            raise ConfigError(f"the injected S/sqrt(B) must be >= 0, got {self.injection}")
        eps = tuple(float(e) for e in np.atleast_1d(self.eps_b))
        if not eps or any(not 0 < e < 1 for e in eps):
            raise ConfigError(f"background efficiencies must lie in (0, 1), got {eps}")
        object.__setattr__(self, "eps_b", eps)
        if self.augment_on_device not in ("auto", "yes", "no"):
            raise ConfigError(f"augment_on_device must be auto, yes or no, got "
                              f"{self.augment_on_device!r}")
        if self.normalise not in ("raw", "event"):
            raise ConfigError(f"normalise must be 'raw' or 'event', got {self.normalise!r}")

    @property
    def lumi(self) -> float:
        from .presets import get_preset

        return self.luminosity_fb or get_preset(self.preset).luminosity_fb

    @property
    def n_copies(self) -> int:
        return self.copies if self.augment != "none" else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eps_b"] = list(self.eps_b)
        return d


# --------------------------------------------------------------------------------------------
def load_samples(config: StudyConfig, progress: Callable | None = None):
    """The signal and background EventSamples of the study (generated first if missing)."""
    from .generation import generate, preset_configs
    from .storage import read_events

    n_jobs = config.n_jobs or os.cpu_count() or 1
    sig_cfg, bkg_cfg = preset_configs(config.preset, config.benchmark, config.sample_seed)
    paths = []
    for cfg in (sig_cfg, bkg_cfg):
        path = cfg.default_path()
        if not path.exists():
            path = generate(cfg, n_jobs=n_jobs, progress=_stage(progress, f"generating {cfg.label}"))
        paths.append(path)
    return read_events(paths[0]), read_events(paths[1])


def _stage(progress, label):
    if progress is None:
        return None
    return lambda done, total: progress(0.0, f"{label}: {done} / {total} events")


def image_chunks(samples: dict, events: ds.LabelledEvents, config: StudyConfig,
                 chunk: int = IMAGE_CHUNK):
    """Un-augmented images of ``events`` in chunks of at most ``chunk`` events."""
    from .images import jet_images

    for start in range(0, len(events), chunk):
        part = events.take(np.arange(start, min(start + chunk, len(events))))
        pt, eta, phi, off = ds.constituents_of(samples, part)
        yield jet_images(pt, eta, phi, off, config.resolution, config.normalise)


def _rows_as_events(source: int, rows: np.ndarray) -> ds.LabelledEvents:
    return ds._events(source, rows, float(source == ds.SIGNAL), int(source == ds.SIGNAL))


def train_network(model, samples: dict, training_set: ds.TrainingSet, config: StudyConfig,
                  seed: int, callback=None, should_stop=None):
    """Fit ``model`` on the training split (augmented on the fly) with early stopping on the
    validation split; returns the trainer's FitResult."""
    from .augment import AugmentedBatches, DeviceAugmentedBatches
    from .trainer import TrainConfig, fit, select_device

    train = training_set.train
    pt, eta, phi, off = ds.constituents_of(samples, train)
    method = AUGMENTATIONS[config.augment]
    device = select_device(config.device)
    on_device = config.augment_on_device == "yes" or (
        config.augment_on_device == "auto" and device.type != "cpu")
    if on_device and method in ("none", "rotate"):
        # Images made where the network trains: a GPU never waits for the CPU.
        batches = DeviceAugmentedBatches(
            pt, eta, phi, off, train.label, n_copies=config.n_copies, method=method,
            resolution=config.resolution, normalise=config.normalise,
            batch_size=config.batch_size, seed=seed, event_ids=train.keys(),
            max_angle=config.max_angle, device=device)
    else:
        batches = AugmentedBatches(pt, eta, phi, off, train.label, n_copies=config.n_copies,
                                   method=method, resolution=config.resolution,
                                   normalise=config.normalise, batch_size=config.batch_size,
                                   seed=seed, event_ids=train.keys(),
                                   formula=config.smear_formula, max_angle=config.max_angle)
    val = training_set.validation
    val_images = list(image_chunks(samples, val, config))
    val_list = []
    start = 0
    for imgs in val_images:
        val_list.append((imgs, val.label[start:start + len(imgs)], None))
        start += len(imgs)

    def train_batches(epoch):
        batches.set_epoch(epoch)
        return iter(batches)

    tc = TrainConfig(lr=config.lr, batch_size=config.batch_size, max_epochs=config.max_epochs,
                     patience=config.patience, device=config.device,
                     precision=config.precision, seed=seed)
    return fit(model, train_batches, val_list, tc, callback=callback, should_stop=should_stop)


def score(model, samples: dict, events: ds.LabelledEvents, config: StudyConfig) -> np.ndarray:
    from .trainer import predict

    if len(events) == 0:
        return np.zeros(0)
    return predict(model, image_chunks(samples, events, config))


def evaluate_run(config: StudyConfig, training_set: ds.TrainingSet, scores: dict) -> dict:
    """Metrics of one trained network (physics.md section 10)."""
    from . import significance as sg

    s_test, b_test = scores["test_signal"], scores["test_background"]
    out = {"auc": sg.roc_auc(np.concatenate([s_test, b_test]),
                             np.concatenate([np.ones(len(s_test)), np.zeros(len(b_test))])),
           "working_points": {}}
    plan = training_set.plan
    for eps_b in config.eps_b:
        try:
            thr = sg.threshold_at_background_efficiency(b_test, eps_b)
        except ConfigError:
            # Too few test background events for this working point: report it as unresolved
            # (NaN) rather than invent a threshold.
            nan = float("nan")
            out["working_points"][str(eps_b)] = {
                "threshold": nan, "eps_s": nan,
                **({"z_ideal": nan, "n_pass": nan, "b_expected": nan, "z_asimov": nan,
                    "eps_b_data_sr_bkg": nan, "eps_b_data_sb_bkg": nan} if plan else {})}
            continue
        eps_s = sg.signal_efficiency(s_test, thr)
        wp = {"threshold": float(thr), "eps_s": float(eps_s)}
        if plan is not None:
            wp["z_ideal"] = float(sg.ideal_significance(plan.injection, eps_s, eps_b))
            n_pass = int(np.count_nonzero(scores["data_sr"] > thr))
            b_exp = plan.b_sr * eps_b
            wp.update(n_pass=n_pass, b_expected=b_exp,
                      z_asimov=float(sg.background_subtracted_significance(n_pass, b_exp,
                                                                           signed=True)))
            sb_bkg = scores["data_sb"][training_set.data_sb.truth == 0]
            sr_bkg = scores["data_sr"][training_set.data_sr.truth == 0]
            sc = sg.sculpting_check(sr_bkg, sb_bkg, thr)
            wp.update(eps_b_data_sr_bkg=float(sc.eps_b_sr), eps_b_data_sb_bkg=float(sc.eps_b_sb))
        out["working_points"][str(eps_b)] = wp
    return out


def summarise_runs(runs: list[dict]) -> dict:
    """Mean and standard deviation over the repetitions of every per-run number."""
    from .significance import summarise

    def ms(values):
        s = summarise(np.asarray(values, float))
        return {"mean": float(s.mean), "std": float(s.std)}

    out = {"auc": ms([r["auc"] for r in runs]), "epochs": ms([r["epochs"] for r in runs]),
           "working_points": {}}
    for key in runs[0]["working_points"]:
        fields_ = [k for k, v in runs[0]["working_points"][key].items()
                   if isinstance(v, (int, float))]
        out["working_points"][key] = {f: ms([r["working_points"][key][f] for r in runs])
                                      for f in fields_}
    return out


# --------------------------------------------------------------------------------------------
def models_dir() -> Path:
    from .storage import cache_root

    return cache_root() / "models"


def pretrain_key(config: StudyConfig) -> dict:
    return {"excluded": config.benchmark, "preset": config.preset,
            "sample_seed": config.sample_seed, "resolution": config.resolution,
            "normalise": config.normalise, "dropout": config.dropout, "seed": config.seed,
            "lr": config.lr, "batch_size": config.batch_size, "max_epochs": config.max_epochs,
            "patience": config.patience, "sidebands": config.sidebands, "version": 1}


def pretrained_feature_extractor(config: StudyConfig, background, bkg_pools: ds.Pools,
                                 progress=None, callback=None, should_stop=None) -> Path:
    """Checkpoint of the network pre-trained on all other benchmarks' signal vs background.

    Reused when a checkpoint with the same settings exists; the other benchmarks' signal
    samples (``preset.n_pretrain_signal`` events each) are generated first if missing.
    """
    from .benchmarks import BENCHMARKS
    from .generation import GenerationConfig, generate
    from .models import CNNConfig, DijetCNN
    from .presets import get_preset
    from .storage import config_key, read_events, write_json_atomic
    from .trainer import load_checkpoint, save_checkpoint

    key = pretrain_key(config)
    path = models_dir() / f"pretrain-{config.benchmark}-{config_key(key)}.pt"
    if path.exists():
        try:
            load_checkpoint(DijetCNN(CNNConfig(resolution=config.resolution,
                                               dropout=config.dropout)), path)
            return path
        except InvalidFileError:
            path.unlink(missing_ok=True)
    preset = get_preset(config.preset)
    n_jobs = config.n_jobs or os.cpu_count() or 1
    others = [b for b in BENCHMARKS if b != config.benchmark]
    sig_rows = []
    samples = {ds.BACKGROUND: background}
    for i, name in enumerate(others):
        gc = GenerationConfig("signal", preset.n_pretrain_signal, benchmark=name,
                              seed=config.sample_seed)
        p = gc.default_path()
        if not p.exists():
            p = generate(gc, n_jobs=n_jobs,
                         progress=_stage(progress, f"pre-training sample {i + 1}/{len(others)}"
                                                   f" ({name})"))
        sample = read_events(p)
        samples[100 + i] = sample
        rows = np.flatnonzero(sample.region(config.sidebands) == 1)
        sig_rows.append(ds._events(100 + i, rows, 1, 1))
    signal_events = ds._concat(*sig_rows)
    rng = np.random.default_rng([config.seed, 17])
    n = min(len(signal_events), len(bkg_pools.bkg_sr_data))
    signal_events = signal_events.take(np.sort(rng.choice(len(signal_events), n, replace=False)))
    bkg_events = ds._events(ds.BACKGROUND, np.sort(rng.choice(bkg_pools.bkg_sr_data, n,
                                                              replace=False)), 0, 0)
    train, val = ds.split_train_validation(ds._concat(bkg_events, signal_events), rng)
    ts = ds.TrainingSet(train=train, validation=val, data_sr=train, data_sb=train,
                        test_signal_sr=np.zeros(0, int), test_background_sr=np.zeros(0, int),
                        plan=None, counts={})
    model = DijetCNN(CNNConfig(resolution=config.resolution, dropout=config.dropout),
                     seed=config.seed)
    pre_cfg = replace(config, augment="none")
    if progress:
        progress(0.0, f"pre-training on {len(others)} benchmarks: {n} S + {n} B events")
    result = train_network(model, samples, ts, pre_cfg, config.seed, callback=callback,
                           should_stop=should_stop)
    save_checkpoint(model, path)
    write_json_atomic(path.with_suffix(".json"), {"settings": key, "n_per_class": n,
                                                  "epochs": result.epochs_run,
                                                  "best_val_loss": result.best_val_loss,
                                                  "benchmarks": others})
    return path


# --------------------------------------------------------------------------------------------
def run_study(config: StudyConfig, progress: Callable[[float, str], None] | None = None,
              on_epoch: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict:
    """Train ``config.runs`` networks on freshly drawn data and evaluate them.

    progress(fraction, message) reports coarse progress; on_epoch(record) receives every
    epoch's losses (with "run" and "stage" added). Returns a JSON-ready dict with the inputs,
    the event counts, per-run results, their mean and standard deviation, the device and the
    wall time.
    """
    import torch

    from .models import CNNConfig, DijetCNN, freeze_feature_extractor, reinitialise_classifier
    from .trainer import load_checkpoint, resolve_precision, select_device

    t0 = time.perf_counter()
    signal, background = load_samples(config, progress)
    samples = {ds.SIGNAL: signal, ds.BACKGROUND: background}
    pools = ds.make_pools(signal, background, config.sidebands)
    device = select_device(config.device)

    def epoch_hook(stage, run):
        def hook(record):
            if on_epoch:
                on_epoch({**record, "run": run, "stage": stage})
            if progress:
                frac = (run + (record["epoch"] + 1) / record["max_epochs"]) / config.runs
                progress(min(frac, 0.99), f"{stage} run {run + 1}/{config.runs}, epoch "
                                          f"{record['epoch'] + 1}, val loss "
                                          f"{record['val_loss']:.4f}")
        return hook

    pretrained = None
    if config.method == "transfer":
        pretrained = pretrained_feature_extractor(config, background, pools, progress,
                                                  epoch_hook("pre-training", 0), should_stop)
    test_sig = _rows_as_events(ds.SIGNAL, pools.sig_sr_test)
    test_bkg = _rows_as_events(ds.BACKGROUND, pools.bkg_sr_test)
    runs = []
    counts = None
    for run in range(config.runs):
        seed = config.seed * 1000 + run
        if config.method == "supervised":
            ts = ds.supervised_dataset(signal, background, pools, seed)
        else:
            ts = ds.cwola_dataset(signal, background, pools, config.injection, config.lumi,
                                  seed, config.sidebands)
        counts = ts.counts
        model = DijetCNN(CNNConfig(resolution=config.resolution, dropout=config.dropout),
                         seed=seed)
        if pretrained is not None:
            load_checkpoint(model, pretrained)
            freeze_feature_extractor(model)
            reinitialise_classifier(model, seed)
        fit = train_network(model, samples, ts, config, seed, epoch_hook(config.method, run),
                            should_stop)
        if fit.cancelled:
            break
        model.eval()
        scores = {"test_signal": score(model, samples, test_sig, config),
                  "test_background": score(model, samples, test_bkg, config),
                  "data_sr": score(model, samples, ts.data_sr, config),
                  "data_sb": score(model, samples, ts.data_sb, config)}
        res = evaluate_run(config, ts, scores)
        res.update(run=run, seed=seed, epochs=fit.epochs_run, best_epoch=fit.best_epoch,
                   seconds=fit.elapsed_s)
        runs.append(res)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not runs:
        raise ConfigError("training was cancelled before the first run finished")
    return {
        "config": config.to_dict(),
        "luminosity_fb": config.lumi,
        "counts": counts,
        "plan": ts.plan.to_dict() if ts.plan else None,
        "runs": runs,
        "summary": summarise_runs(runs),
        "device": str(device),
        "precision": resolve_precision(config.precision, device),
        "wall_s": time.perf_counter() - t0,
        "pretrained": str(pretrained) if pretrained else None,
        "files": {"signal": str(signal.path), "background": str(background.path)},
    }


def results_table(result: dict) -> list[dict]:
    """Flat rows (one per working point) for tables and CSV export."""
    cfg = result["config"]
    rows = []
    for key, wp in result["summary"]["working_points"].items():
        row = {"method": cfg["method"], "benchmark": cfg["benchmark"],
               "augment": cfg["augment"], "copies": cfg["copies"] if cfg["augment"] != "none"
               else 0, "resolution": cfg["resolution"], "injection": cfg["injection"],
               "eps_b": float(key), "runs": len(result["runs"]),
               "auc_mean": result["summary"]["auc"]["mean"],
               "auc_std": result["summary"]["auc"]["std"]}
        for f, v in wp.items():
            row[f"{f}_mean"], row[f"{f}_std"] = v["mean"], v["std"]
        rows.append(row)
    return rows


def dumps(result: dict) -> str:
    from .storage import _json_default

    return json.dumps(result, default=_json_default)

