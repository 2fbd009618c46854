"""Sweeps: benchmarks x methods x augmentations x "+n" copies x injected S/sqrt(B), each point
repeated ``runs`` times, run as one job whose children go through joblib.

A child is one ``training.StudyConfig`` (one benchmark, method, augmentation, copies and
injection, with all its repetitions). Its result is stored as ``children/<name>.json`` in the
sweep's folder (the job folder when it runs as a job), written atomically by the sweep process as
soon as the child finishes; a child whose file exists is never run again, so a sweep that was
cancelled, lost or extended picks up where it stopped. Everything a child computes follows from
its config (the data draws and the network seeds come from ``seed``), and each child runs with a
fixed number of torch threads, so the numbers are the same whatever the backend.

Backends (a setting, ``parallel_backend``):

* ``loky``: processes on this machine (``workers`` of them).
* ``dask``: a ``distributed`` scheduler at ``scheduler`` (e.g. the address of a dask-jobqueue
  HTCondorCluster / SLURMCluster), or a ``distributed.LocalCluster`` of ``workers`` processes
  when ``scheduler`` is None or ``"local"``. Workers receive file paths, never arrays: the cache
  must be on a file system the workers share.
* ``ray``: a Ray cluster (``ray.init(address=scheduler)``), when ray is installed.

Before the children run, the sweep generates the samples they need (the benchmarks' signal, the
background and, for transfer learning, the other benchmarks' pre-training signal) with the same
backend -- generation's seeded chunks merge into the file a local run writes -- and pre-trains
each distinct transfer-learning feature extractor once, so that no two children race to write
the same file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .errors import ConfigError

BACKENDS = ("loky", "dask", "ray")

# Throughputs used by ``estimate`` until this machine has measured its own (events per second).
TRAIN_EVENTS_PER_S_2CORES = 530.0  # fp32 training pass at 25x25 (architecture.md)
BF16_SPEEDUP = 2.6
GPU_EVENTS_PER_S = 20000.0
GEN_EVENTS_PER_S_CORE = {"signal": 170.0, "background": 120.0}  # full pipeline, per core


# --------------------------------------------------------------------------------------------
# Backends.
@contextmanager
def parallel_backend(backend: str = "loky", n_jobs: int = 1, scheduler: str | None = None,
                     threads: int | None = None, unordered: bool = True):
    """A ``joblib.Parallel`` for ``backend`` (see the module docstring), or None for plain
    sequential work in this process (backend "loky" with one worker). Results come back as a
    generator, in completion order when ``unordered``. ``threads``: thread limit of each loky
    worker (default: joblib's cores // workers)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {BACKENDS}")
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ConfigError(f"the number of workers must be >= 1, got {n_jobs!r}")
    from joblib import Parallel, parallel_config

    ret = "generator_unordered" if unordered else "generator"
    if backend == "loky":
        if n_jobs == 1 and scheduler is None:
            yield None
            return
        with parallel_config(backend="loky", inner_max_num_threads=threads):
            yield Parallel(n_jobs=n_jobs, return_as=ret)
        return
    if backend == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is a requirement
            raise ConfigError("the dask backend needs 'distributed' (pip install "
                              "distributed)") from exc
        import logging

        cluster = None
        if scheduler in (None, "", "local"):
            cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach the dask scheduler at {scheduler!r}: "
                                  f"{exc}") from exc
        try:
            with parallel_config(backend="dask"):
                yield Parallel(n_jobs=-1, return_as=ret)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    try:  # ray
        import ray
        from ray.util.joblib import register_ray
    except ImportError as exc:
        raise ConfigError("the ray backend needs ray: pip install 'ray[default]'") from exc
    register_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=scheduler or None, num_cpus=None if scheduler else n_jobs,
                 include_dashboard=False, log_to_driver=False)
    try:
        with parallel_config(backend="ray"):
            yield Parallel(n_jobs=-1 if scheduler else n_jobs, return_as=ret)
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------------
# The sweep.
@dataclass(frozen=True)
class ScanConfig:
    """A sweep: the product of the lists below, each point a ``StudyConfig`` built from
    ``base`` (which carries every other setting: runs, seed, resolution, eps_b, preset...).
    Augmentation "none" has no copies; supervised training ignores the injection (one child)."""

    base: object = None  # a training.StudyConfig
    benchmarks: tuple = ("ID-10",)
    methods: tuple = ("cwola",)
    augments: tuple = ("none",)
    copies: tuple = (5,)
    injections: tuple = (0.0, 1.0, 2.0, 3.0, 5.0)

    def __post_init__(self):
        from .training import StudyConfig

        base = self.base if self.base is not None else StudyConfig()
        if not isinstance(base, StudyConfig):
            raise ConfigError("ScanConfig.base must be a StudyConfig")
        object.__setattr__(self, "base", base)
        for name in ("benchmarks", "methods", "augments", "copies", "injections"):
            values = tuple(getattr(self, name))
            if not values:
                raise ConfigError(f"the sweep needs at least one value of {name}")
            # keep the order given, drop repeats
            object.__setattr__(self, name, tuple(dict.fromkeys(values)))
        object.__setattr__(self, "injections", tuple(float(x) for x in self.injections))
        object.__setattr__(self, "copies", tuple(int(c) for c in self.copies))
        self.children()  # validates every point (unknown benchmark, method, negative copies...)

    def children(self) -> list:
        out = []
        for b, m, a in itertools.product(self.benchmarks, self.methods, self.augments):
            copies = self.copies if a != "none" else (0,)
            injections = self.injections if m != "supervised" else (0.0,)
            for c, x in itertools.product(copies, injections):
                out.append(replace(self.base, benchmark=b, method=m, augment=a, copies=c,
                                   injection=x))
        return list(dict.fromkeys(out))

    def to_dict(self) -> dict:
        base = self.base.to_dict()
        for k in ("benchmark", "method", "augment", "copies", "injection", "n_jobs"):
            base.pop(k, None)
        return {"benchmarks": list(self.benchmarks), "methods": list(self.methods),
                "augments": list(self.augments), "copies": list(self.copies),
                "injections": list(self.injections), "base": base}

    @property
    def key(self) -> str:
        from .storage import config_key

        return config_key(self.to_dict())


def child_key(config) -> str:
    from .storage import config_key

    d = config.to_dict()
    d.pop("n_jobs", None)  # generation workers do not change the result
    return config_key(d)


def child_name(config) -> str:
    aug = "none" if config.augment == "none" else f"{config.augment}{config.copies}"
    inj = "" if config.method == "supervised" else f"-inj{config.injection:g}"
    return f"{config.benchmark}-{config.method}-{aug}{inj}-{child_key(config)[:8]}"


def _read_child(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "runs" in data and "config" in data else None


def run_child(config_dict: dict, cache: str, threads: int = 1,
              metrics_path: str | None = None, progress: Callable | None = None) -> dict:
    """One child, in a worker process (top-level so every backend can ship it by reference).

    ``cache``: the cache root (samples and pre-trained models; on a cluster a shared file
    system). ``threads``: torch threads, fixed so every backend computes the same numbers.
    ``metrics_path``: where to append the epochs' losses (skipped if not writable here)."""
    os.environ["DARKVALLEY_CACHE"] = str(cache)
    import torch

    from .training import StudyConfig, run_study

    torch.set_num_threads(max(1, int(threads)))
    cfg = dict(config_dict)
    cfg["eps_b"] = tuple(cfg["eps_b"])
    config = StudyConfig(**cfg)
    def on_epoch(record):
        if metrics_path:
            from .jobs import append_metrics

            try:
                append_metrics(Path(metrics_path), record)
            except OSError:
                pass

    result = run_study(config, progress=progress, on_epoch=on_epoch)
    from .cli import _finite

    return _finite(result)


def _pretrain(config_dict: dict, cache: str, threads: int = 1) -> str:
    """Pre-train (or find) the transfer-learning feature extractor of one child's settings."""
    os.environ["DARKVALLEY_CACHE"] = str(cache)
    import torch

    from . import datasets as ds
    from .training import StudyConfig, load_samples, pretrained_feature_extractor

    torch.set_num_threads(max(1, int(threads)))
    cfg = dict(config_dict)
    cfg["eps_b"] = tuple(cfg["eps_b"])
    config = StudyConfig(**cfg)
    signal, background = load_samples(config)
    pools = ds.make_pools(signal, background, config.sidebands)
    return str(pretrained_feature_extractor(config, background, pools))


def needed_samples(scan: ScanConfig, methods=None) -> list:
    """GenerationConfigs the sweep reads: signal of each benchmark, the background, and for
    transfer learning every other benchmark's pre-training signal."""
    from .benchmarks import BENCHMARKS
    from .generation import GenerationConfig, preset_configs
    from .presets import get_preset

    base = scan.base
    preset = get_preset(base.preset)
    out = []
    for b in scan.benchmarks:
        sig, bkg = preset_configs(base.preset, b, base.sample_seed)
        out += [sig, bkg]
    if "transfer" in (methods or scan.methods):
        for name in BENCHMARKS:
            out.append(GenerationConfig("signal", preset.n_pretrain_signal, benchmark=name,
                                        seed=base.sample_seed))
    return list(dict.fromkeys(out))


def generate_samples(scan: ScanConfig, backend: str = "loky", workers: int = 1,
                     scheduler: str | None = None, progress: Callable | None = None,
                     methods=None) -> list[Path]:
    """Generate the sweep's missing samples through ``backend`` (chunks in parallel)."""
    from .generation import generate

    paths = []
    todo = [c for c in needed_samples(scan, methods) if not c.default_path().exists()]
    for i, cfg in enumerate(todo):
        label = f"generating {cfg.label} ({i + 1}/{len(todo)})"

        def prog(done, total, label=label):
            if progress:
                progress(0.0, f"{label}: {done} / {total} events")

        paths.append(generate(cfg, n_jobs=workers, backend=backend, scheduler=scheduler,
                              progress=prog))
    return paths


def run_rows(result: dict, source: str = "") -> list[dict]:
    """One row per repetition and working point of a ``run_study`` result (for the
    Sensitivity page, CSV export, and means over repetitions merged across sweeps)."""
    from .storage import config_key

    cfg = result["config"]
    # Runs of the same experiment pool into one curve: every setting but the injection, the
    # number of repetitions and how the numbers were computed (device, precision, workers).
    same = {k: v for k, v in cfg.items() if k not in ("injection", "runs", "n_jobs", "device",
                                                      "precision")}
    if cfg.get("augment") == "none":
        same["copies"] = 0
    curve_key = config_key(same)
    family_key = config_key({k: v for k, v in same.items() if k not in ("augment", "copies")})
    rows = []
    for run in result["runs"]:
        for key, wp in run["working_points"].items():
            row = {"source": source, "curve_key": curve_key, "family_key": family_key,
                   "benchmark": cfg["benchmark"], "method": cfg["method"],
                   "augment": cfg["augment"],
                   "copies": cfg["copies"] if cfg["augment"] != "none" else 0,
                   "resolution": cfg["resolution"],
                   "injection": cfg["injection"] if cfg["method"] != "supervised" else None,
                   "eps_b": float(key), "preset": cfg.get("preset"),
                   "luminosity_fb": result.get("luminosity_fb"),
                   "sidebands": cfg.get("sidebands"), "normalise": cfg.get("normalise"),
                   "dropout": cfg.get("dropout"), "seed": cfg.get("seed"),
                   "sample_seed": cfg.get("sample_seed"), "max_epochs": cfg.get("max_epochs"),
                   "patience": cfg.get("patience"), "batch_size": cfg.get("batch_size"),
                   "lr": cfg.get("lr"), "max_angle": cfg.get("max_angle"),
                   "smear_formula": cfg.get("smear_formula"),
                   "run": run.get("run"), "run_seed": run.get("seed"),
                   "auc": run.get("auc"), "epochs": run.get("epochs")}
            for f in ("eps_s", "z_ideal", "z_asimov", "n_pass", "b_expected", "threshold"):
                v = wp.get(f)
                row[f] = float(v) if v is not None else math.nan
            rows.append(row)
    return rows


def aggregate(results: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """(summary rows, per-run rows) of children results keyed by child name, in name order."""
    from .training import results_table

    table, per_run = [], []
    for name in sorted(results):
        r = results[name]
        for row in results_table(r):
            table.append({"child": name, "preset": r["config"].get("preset"),
                          "luminosity_fb": r.get("luminosity_fb"), **row})
        per_run += run_rows(r, source=name)
    return table, per_run


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows to CSV, atomically (columns: the union of the rows' keys, in first-seen order)."""
    import csv
    import io

    from .storage import atomic_write

    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(buf.getvalue())


def run_scan(scan: ScanConfig, out_dir: Path | str, backend: str = "loky", workers: int = 1,
             scheduler: str | None = None, threads: int | None = None,
             progress: Callable[[float, str], None] | None = None,
             generate_only: bool = False) -> dict:
    """Run the sweep's missing children and aggregate all of them.

    out_dir gets children/<name>.json (+ .metrics.csv), table.csv (means and standard deviations
    per child and working point) and runs.csv (one row per repetition). ``threads``: torch
    threads per child (default: this process's thread budget // workers for loky, 1 for the
    others). Returns {"scan", "table", "runs_table", "children", "computed", "backend", ...}.
    """
    from .storage import cache_root, write_json_atomic

    t0 = time.perf_counter()
    out = Path(out_dir)
    children_dir = out / "children"
    children_dir.mkdir(parents=True, exist_ok=True)
    configs = scan.children()
    names = [child_name(c) for c in configs]
    done = {n: r for n in names if (r := _read_child(children_dir / f"{n}.json")) is not None}
    todo = [(n, c) for n, c in zip(names, configs) if n not in done]
    total = len(configs)
    if threads is None:
        budget = int(os.environ.get("DARKVALLEY_THREADS") or os.cpu_count() or 1)
        threads = max(1, budget // workers) if backend == "loky" else 1

    def report(fraction, message):
        if progress:
            progress(min(fraction, 0.99), message)

    report(len(done) / total, f"{len(done)} of {total} children already done")
    if todo or generate_only:
        todo_methods = {c.method for _, c in todo} if not generate_only else None
        generate_samples(scan, backend, workers, scheduler,
                         lambda f, m: report(len(done) / total, m), methods=todo_methods)
    if generate_only:
        return {"scan": scan.to_dict(), "generated": [str(c.default_path())
                                                      for c in needed_samples(scan)],
                "backend": backend, "wall_s": time.perf_counter() - t0}
    cache = str(cache_root())
    computed = []
    if todo:
        pre = {}
        for _, c in todo:
            if c.method == "transfer":
                from .training import pretrain_key
                from .storage import config_key

                pre.setdefault(config_key(pretrain_key(c)), c)
        with parallel_backend(backend, workers, scheduler, threads) as parallel:
            if pre:
                report(len(done) / total, f"pre-training {len(pre)} feature extractor(s)")
                if parallel is None:
                    for c in pre.values():
                        _pretrain(c.to_dict(), cache, threads)
                else:
                    from joblib import delayed

                    list(parallel(delayed(_pretrain)(c.to_dict(), cache, threads)
                                  for c in pre.values()))
            report(len(done) / total, f"{len(done)} of {total} children done, "
                                      f"{len(todo)} to run on {backend}")
            jobs = [(n, c.to_dict(), str(children_dir / f"{n}.metrics.csv")) for n, c in todo]
            if parallel is None:
                def child_progress(f, m):
                    report((len(done) + f) / total, f"child {len(done) + 1}/{total}: {m}")

                iterator = ((n, run_child(cd, cache, threads, mp, child_progress))
                            for n, cd, mp in jobs)
            else:
                from joblib import delayed

                iterator = parallel(delayed(_named)(n, cd, cache, threads, mp)
                                    for n, cd, mp in jobs)
            for name, result in iterator:
                write_json_atomic(children_dir / f"{name}.json", result)
                done[name] = result
                computed.append(name)
                report(len(done) / total, f"{len(done)} of {total} children done "
                                          f"(last: {name})")
    results = {n: done[n] for n in names}
    table, per_run = aggregate(results)
    write_csv(out / "table.csv", table)
    write_csv(out / "runs.csv", per_run)
    devices = sorted({r.get("device", "") for r in results.values()})
    return {"scan": scan.to_dict(), "backend": backend, "workers": workers,
            "scheduler": scheduler, "threads_per_child": threads,
            "children": names, "computed": computed, "n_children": total,
            "table": table, "runs_table": per_run, "devices": devices,
            "wall_s": time.perf_counter() - t0, "folder": str(out)}


def _named(name, config_dict, cache, threads, metrics_path):
    return name, run_child(config_dict, cache, threads, metrics_path)


def scan_folder(scan: ScanConfig) -> Path:
    """Where a sweep run outside a job keeps its children: cache/scans/<key>/."""
    from .storage import cache_root

    return cache_root() / "scans" / scan.key


# --------------------------------------------------------------------------------------------
# Run-time estimate (for the Train page, before launching).
def measured_train_rate(device_type: str = "cpu", max_jobs: int = 20) -> float | None:
    """This machine's training throughput at 25x25 (events/s), the median of the epochs of
    recent finished jobs that trained long enough to tell (None if none did)."""
    import statistics

    from . import jobs

    rates = []
    for job in jobs.list_jobs()[:200]:
        if job.kind not in ("train", "scan") or job.state != "done":
            continue
        res = (job.config.get("resources") or {})
        if bool(res.get("gpu")) != (device_type == "cuda"):
            continue
        scale = 1.0
        argv = job.config.get("argv", [])
        if "--resolution" in argv:
            try:
                scale = (int(argv[argv.index("--resolution") + 1]) / 25.0) ** 2
            except (ValueError, IndexError):
                pass
        paths = [job.folder / "metrics.csv"] + sorted((job.folder / "children")
                                                     .glob("*.metrics.csv"))[:5]
        for p in paths:
            prev = None
            for row in jobs.read_metrics(p):
                eps, el, ep = row.get("events_per_s"), row.get("elapsed_s"), row.get("epoch")
                if not (isinstance(eps, float) and isinstance(el, float) and math.isfinite(eps)):
                    prev = None
                    continue
                duration = el - prev if prev is not None and ep and el > prev else 0.0
                prev = el
                # Epochs after the first (warm-up) with enough events that per-batch overheads
                # do not dominate: a tiny sample's epochs say nothing about a real one's.
                if duration > 0 and eps * duration >= 5000:
                    rates.append(eps * scale)
        if len(rates) >= 50 or max_jobs <= 0:
            break
        max_jobs -= 1
    return statistics.median(rates) if rates else None


def _train_events(config, signal=None, background=None) -> int:
    """Training events of one repetition (before augmentation)."""
    from . import datasets as ds
    from .presets import get_preset

    if signal is None or background is None:  # rough, before the samples exist
        p = get_preset(config.preset)
        return int(0.8 * 0.2 * (p.n_background + p.n_signal))
    if config.method == "supervised":
        pools = ds.make_pools(signal, background, config.sidebands)
        return int(0.8 * 2 * min(len(pools.sig_sr_data), len(pools.bkg_sr_data)))
    plan = ds.plan_injection(signal, background, config.injection, config.lumi,
                             config.sidebands)
    return int(0.8 * (plan.b_sr + plan.b_sb + plan.s_sr + plan.s_sb))


def estimate(configs: list, workers: int = 1, cores: int | None = None,
             device: str = "cpu", rate: float | None = None, measure: bool = True) -> dict:
    """Rough wall time of running ``configs`` (StudyConfigs) as one job on this machine.

    Generation of missing samples at the measured Pythia pipeline speed per core; training at
    ``rate`` (events/s at 25x25; None: this machine's measured rate when ``measure``, else
    the documented speed, x2.6 with bf16), scaled by the resolution squared and the +n copies, for
    min(max_epochs, patience + 15) epochs per repetition, plus 30% for validation and scoring.
    Returns {"seconds", "generation_s", "training_s", "epochs", "events_per_epoch", "rate",
    "rate_source", "exact_counts"}.
    """
    from .generation import preset_configs
    from .storage import read_events

    cores = cores or int(os.environ.get("DARKVALLEY_CORES") or os.cpu_count() or 1)
    gpu = device == "cuda"
    source = "measured on this machine"
    if rate is None and measure:
        rate = measured_train_rate("cuda" if gpu else "cpu")
    if rate is None:
        source = "documented speed"
        if gpu:
            rate = GPU_EVENTS_PER_S
        else:
            rate = TRAIN_EVENTS_PER_S_2CORES * cores / 2.0 * (BF16_SPEEDUP if _cpu_has_bf16()
                                                             else 1.0)
    gen_s = 0.0
    seen = set()
    samples = {}
    exact = True
    for c in configs:
        for g in preset_configs(c.preset, c.benchmark, c.sample_seed):
            p = g.default_path()
            if p in seen:
                continue
            seen.add(p)
            if p.exists():
                try:
                    samples[p] = read_events(p, constituents=False)
                except Exception:  # noqa: BLE001
                    samples[p] = None
            else:
                samples[p] = None
                gen_s += g.n_events / (GEN_EVENTS_PER_S_CORE[g.process] * cores)
    train_s = 0.0
    epochs_total = 0
    per_epoch = []
    for c in configs:
        sp, bp = (g.default_path() for g in preset_configs(c.preset, c.benchmark,
                                                           c.sample_seed))
        sig, bkg = samples.get(sp), samples.get(bp)
        exact &= sig is not None and bkg is not None
        try:
            n = _train_events(c, sig, bkg)
        except Exception:  # noqa: BLE001 -- an impossible plan is reported when it runs
            n = _train_events(c)
        n *= 1 + c.n_copies
        epochs = min(c.max_epochs, c.patience + 15)
        per_epoch.append(n)
        seconds = n * epochs / (rate / (c.resolution / 25.0) ** 2) * 1.3 + 2.0
        train_s += seconds * c.runs
        epochs_total += epochs * c.runs
    parallel = max(1, min(workers, len(configs)))
    total = gen_s + train_s / parallel + 5.0
    return {"seconds": total, "generation_s": gen_s, "training_s": train_s / parallel,
            "epochs": epochs_total, "events_per_epoch": max(per_epoch) if per_epoch else 0,
            "rate": rate, "rate_source": source, "exact_counts": exact}


def scan_command(scan: ScanConfig, backend: str = "loky", workers: int = 1,
                 scheduler: str | None = None) -> list[str]:
    """The ``python -m darkvalley_core scan ...`` command line of a sweep."""
    return ["scan"] + _study_args(scan.base) + [
        "--benchmarks", *scan.benchmarks, "--methods", *scan.methods,
        "--augments", *scan.augments, "--copies", *[str(c) for c in scan.copies],
        "--injections", *[_num(x) for x in scan.injections],
        "--backend", backend, "--workers", str(workers)] + \
        (["--scheduler", scheduler] if scheduler else [])


def train_command(config) -> list[str]:
    """The ``python -m darkvalley_core train ...`` command line of one StudyConfig."""
    return ["train", "--method", config.method, "--benchmark", config.benchmark,
            "--injection", _num(config.injection), "--augment", config.augment,
            "--copies", str(config.copies)] + _study_args(config)


def _study_args(c) -> list[str]:
    """The options shared by ``train`` and ``scan`` (only those that differ from the
    defaults, so equal configs give equal command lines)."""
    from .training import StudyConfig

    d = StudyConfig()
    flags = [("resolution", "--resolution"), ("runs", "--runs"), ("seed", "--seed"),
             ("preset", "--preset"), ("sample_seed", "--sample-seed"),
             ("luminosity_fb", "--luminosity"), ("device", "--device"),
             ("precision", "--precision"), ("sidebands", "--sidebands"),
             ("normalise", "--normalise"), ("dropout", "--dropout"),
             ("max_epochs", "--max-epochs"), ("patience", "--patience"),
             ("batch_size", "--batch-size"), ("lr", "--lr"), ("max_angle", "--max-angle"),
             ("smear_formula", "--smear-formula")]
    out = []
    for attr, flag in flags:
        v = getattr(c, attr)
        if v != getattr(d, attr) and v is not None:
            out += [flag, _num(v)]
    if tuple(c.eps_b) != tuple(d.eps_b):
        out += ["--eps-b", *[_num(e) for e in c.eps_b]]
    return out


def _num(v) -> str:
    """A number for a command line: integers plainly, floats exactly (shortest round trip)."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


# --------------------------------------------------------------------------------------------
# Results of finished jobs, for the Sensitivity page and exports (the job folders are the truth).
CURVE_KEYS = ["benchmark", "method", "augment", "copies", "resolution", "preset",
              "luminosity_fb", "sidebands", "normalise", "dropout", "max_epochs", "patience",
              "batch_size", "lr", "seed", "sample_seed", "max_angle", "smear_formula"]
LABELLED = {"resolution", "preset", "luminosity_fb", "sidebands", "normalise", "dropout",
            "max_epochs", "patience", "batch_size", "lr", "seed", "sample_seed", "max_angle",
            "smear_formula"}
METHOD_LABELS = {"supervised": "supervised", "cwola": "CWoLa", "transfer": "transfer learning"}


def job_runs(job) -> list[dict]:
    """Per-run rows of one finished ``train`` or ``scan`` job (empty for anything else)."""
    result = job.result
    if not result or not result.get("ok"):
        return []
    base = {"job": job.id, "job_label": job.config.get("label") or job.id,
            "finished": job.raw_status.get("finished")}
    if result.get("command") == "train" and "runs" in result:
        rows = run_rows(result, source=job.id)
    elif result.get("command") == "scan":
        rows = [dict(r) for r in result.get("runs_table", [])]
        if any("curve_key" not in r for r in rows):  # written before the keys existed
            rows = [r for path in sorted((job.folder / "children").glob("*.json"))
                    if (child := _read_child(path)) is not None
                    for r in run_rows(child, source=path.stem)]
    else:
        return []
    return [{**base, **r} for r in rows]


def collect_runs(job_list) -> "pd.DataFrame":  # noqa: F821
    """All per-run rows of the given jobs as one DataFrame (NaN for missing numbers)."""
    import pandas as pd

    rows = [r for job in job_list for r in job_runs(job)]
    df = pd.DataFrame(rows)
    for f in ("eps_s", "z_ideal", "z_asimov", "auc", "injection", "eps_b", "n_pass",
              "b_expected"):
        if f in df:
            df[f] = pd.to_numeric(df[f], errors="coerce")
    return df


def curve_label(key: dict, varying: set[str]) -> str:
    parts = [key["benchmark"], METHOD_LABELS.get(key["method"], key["method"])]
    parts.append("no augmentation" if key["augment"] == "none" else
                 f"{key['augment']} +{int(key['copies'])}")
    if "resolution" in varying:
        parts.append(f"{int(key['resolution'])}×{int(key['resolution'])}")
    if "preset" in varying or "luminosity_fb" in varying:
        parts.append(f"{key['preset']} ({key['luminosity_fb']:g} fb⁻¹)")
    for k in sorted(varying & (LABELLED - {"resolution", "preset", "luminosity_fb"})):
        v = key.get(k)
        parts.append(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else
                     f"{k.replace('_', ' ')} {v}")
    if key.get("job_label"):
        parts.append(f"[{key['job_label']}]")
    return " · ".join(str(p) for p in parts)


def sensitivity_curves(df, z_field: str = "z_ideal", eps_b: float = 0.01,
                       by_job: bool = False) -> tuple[list[dict], list[dict]]:
    """(curves, supervised references) at one working point.

    A curve groups the runs of one configuration (CURVE_KEYS; per job too with ``by_job``) by
    injected S/sqrt(B): x, mean and standard deviation over the repetitions (ddof 0, as
    ``significance.summarise``), n runs, and its learning threshold and 5 sigma reach
    (``significance.learning_threshold`` / ``five_sigma_reach``, with their bands)."""
    import numpy as np

    from . import significance as sg

    if df is None or len(df) == 0 or "eps_b" not in df:
        return [], []
    d = _pooled(df[np.isclose(df["eps_b"].astype(float), float(eps_b))], by_job)
    keys = ["curve_key"] + (["job_label"] if by_job else [])
    varying = {k for k in CURVE_KEYS if k in d and d[k].nunique(dropna=False) > 1}
    curves, supervised = [], []
    sup = d[d["method"] == "supervised"]
    for key, g in (sup.groupby(keys, dropna=False, sort=True) if len(sup) else []):
        kd = _describe(g, key, keys)
        eps_s = g["eps_s"].astype(float)
        supervised.append({"label": f"{curve_label(kd, varying)} (Z = S/√B·ε_S/√ε_B)",
                           "eps_s": float(np.nanmean(eps_s)) if eps_s.notna().any() else np.nan,
                           "eps_s_std": float(np.nanstd(eps_s)) if eps_s.notna().any() else
                           np.nan, "n": int(len(g)), **kd})
    d = d[d["method"] != "supervised"]
    if not len(d) or z_field not in d:
        return curves, [s for s in supervised if np.isfinite(s["eps_s"])]
    for key, g in d.groupby(keys, dropna=False, sort=True):
        kd = _describe(g, key, keys)
        stats = (g.groupby("injection")[z_field]
                 .agg(mean=lambda v: np.nanmean(v) if v.notna().any() else np.nan,
                      std=lambda v: np.nanstd(v) if v.notna().any() else np.nan,
                      n=lambda v: int(v.notna().sum()))
                 .reset_index().sort_values("injection"))
        x = stats["injection"].to_numpy(float)
        m = stats["mean"].to_numpy(float)
        s = stats["std"].to_numpy(float)
        curve = {"label": curve_label(kd, varying), "x": x.tolist(), "mean": m.tolist(),
                 "std": s.tolist(), "n": stats["n"].astype(int).tolist(), **kd}
        nan3 = (np.nan, np.nan, np.nan)
        ok = np.isfinite(m)
        if ok.sum() >= 2:
            lt = sg.learning_threshold(x[ok], m[ok], np.nan_to_num(s[ok]))
            fr = sg.five_sigma_reach(x[ok], m[ok], np.nan_to_num(s[ok]))
        else:
            lt = fr = nan3
        curve.update(threshold=float(lt[0]), threshold_low=float(lt[1]),
                     threshold_high=float(lt[2]), reach=float(fr[0]), reach_low=float(fr[1]),
                     reach_high=float(fr[2]))
        curves.append(curve)
    curves.sort(key=lambda c: c["label"])
    return curves, [s for s in supervised if np.isfinite(s["eps_s"])]


def _pooled(d, by_job: bool):
    """The rows to average: a repetition that several jobs computed (same settings, injection
    and run seed) counts once, from the job that finished last; per job with ``by_job``."""
    if not len(d) or "curve_key" not in d:
        return d
    cols = ["curve_key", "injection", "eps_b", "run_seed"] + (["job"] if by_job else [])
    d = d.sort_values("finished", na_position="first") if "finished" in d else d
    return d.drop_duplicates(subset=[c for c in cols if c in d], keep="last")


def _describe(g, key, keys) -> dict:
    """The settings of a group of rows (all equal within it) and its grouping values."""
    kd = {k: g[k].iloc[0] for k in CURVE_KEYS if k in g}
    kd.update(zip(keys, key if isinstance(key, tuple) else (key,)))
    return kd


def readoff_table(curves: list[dict], text: bool = False) -> list[dict]:
    """The read-offs of each curve: learning threshold and 5 sigma reach with their bands
    (numbers, NaN where the scan never gets there; with ``text``, formatted for display)."""
    out = []
    for c in curves:
        row = {"curve": c["label"], "points": len(c["x"]),
               "runs": int(max(c["n"])) if c["n"] else 0}
        for name, f in (("learning threshold", "threshold"), ("5σ reach", "reach")):
            if text:
                row[name] = _fmt(c[f], "not in the scanned range" if len(c["x"]) >= 2 else
                                 "needs 2+ injections")
                row[f"{name} band"] = f"{_fmt(c[f + '_low'], '—')} – {_fmt(c[f + '_high'], '—')}"
            else:
                row[name], row[f"{name} low"], row[f"{name} high"] = \
                    c[f], c[f + "_low"], c[f + "_high"]
        out.append(row)
    return out


def _fmt(v: float, missing: str) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else missing


def copies_series(df, z_field: str = "z_ideal", eps_b: float = 0.01,
                  injection: float = 3.0) -> list[dict]:
    """Z against the augmentation size +n at one injection: one series per benchmark, method
    and augmentation, starting at n = 0 with the same configuration without augmentation."""
    import numpy as np

    if df is None or len(df) == 0 or z_field not in df:
        return []
    d = df[np.isclose(df["eps_b"].astype(float), float(eps_b)) &
           np.isclose(df["injection"].astype(float).fillna(-1), float(injection)) &
           (df["method"] != "supervised")]
    if not len(d):
        return []
    d = _pooled(d, False)
    out = []
    for _, g in d.groupby("family_key", dropna=False, sort=True):
        key = (g["benchmark"].iloc[0], g["method"].iloc[0])
        none = g[g["augment"] == "none"][z_field].astype(float)
        for aug in sorted(a for a in g["augment"].unique() if a != "none"):
            ga = g[g["augment"] == aug]
            xs, ms, ss = [], [], []
            if none.notna().any():
                xs.append(0)
                ms.append(float(np.nanmean(none)))
                ss.append(float(np.nanstd(none)))
            for c, gc in ga.groupby("copies"):
                v = gc[z_field].astype(float)
                if v.notna().any():
                    xs.append(int(c))
                    ms.append(float(np.nanmean(v)))
                    ss.append(float(np.nanstd(v)))
            if xs:
                out.append({"label": f"{key[0]} · {METHOD_LABELS.get(key[1], key[1])} · {aug}",
                            "x": xs, "mean": ms, "std": ss})
    return out


def reach_rows(curves: list[dict]) -> list[dict]:
    """Learning threshold and 5 sigma reach per benchmark (for the across-benchmarks view):
    series = method and augmentation."""
    rows = []
    for c in curves:
        aug = "" if c["augment"] == "none" else f" + {c['augment']} +{int(c['copies'])}"
        rows.append({"series": METHOD_LABELS.get(c["method"], c["method"]) + aug,
                     "benchmark": c["benchmark"], **{k: c[k] for k in (
                         "threshold", "threshold_low", "threshold_high", "reach", "reach_low",
                         "reach_high")}})
    return rows


def _cpu_has_bf16() -> bool:
    """trainer.cpu_has_bf16 without importing torch (the Train page must stay light)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return bool(set(line.split(":", 1)[1].split()) &
                                {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False
