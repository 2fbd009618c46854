"""Command line: ``python -m darkvalley_core <command> ...``.

Every command prints a short human summary, or with ``--json`` exactly one JSON object on stdout
(progress bars and library chatter go to stderr). Errors exit with status 2 and a one-line
message (``{"ok": false, "error": ...}`` with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .errors import DarkValleyError

COMMANDS: dict[str, Callable] = {}


def command(name: str):
    def register(func):
        COMMANDS[name] = func
        return func
    return register


def _progress_bar(total_label: str, enabled: bool):
    """A tqdm bar on stderr driven by progress(done, total) callbacks."""
    from .jobs import report_progress

    if not enabled:
        return None, lambda done, total: report_progress(done, total)
    from tqdm import tqdm

    bar = tqdm(total=None, unit="ev", desc=total_label, file=sys.stderr, dynamic_ncols=True)

    def progress(done, total):
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()
        report_progress(done, total, f"{total_label}: {done} / {total} events")

    return bar, progress


def _finite(obj):
    """NaN and infinities become null: the output must be strict JSON."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fraction_bar(desc: str, enabled: bool):
    """A percent bar on stderr driven by progress(fraction, message); also reports to the job
    this process runs in, if any."""
    from .jobs import report_progress

    bar = None
    if enabled:
        from tqdm import tqdm

        bar = tqdm(total=100, desc=desc, file=sys.stderr,
                   bar_format="{l_bar}{bar}| {elapsed} {postfix}")

    def progress(fraction, message):
        report_progress(fraction, 1.0, message)
        if bar is not None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message[:60], refresh=True)

    return bar, progress


def _json_out(obj) -> None:
    from .storage import _json_default

    sys.stdout.write(json.dumps(_finite(obj), default=_json_default, allow_nan=False) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
@command("benchmarks")
def cmd_benchmarks(args) -> dict:
    from .benchmarks import BENCHMARKS, DEFAULT_BENCHMARK

    rows = [b.summary() for b in BENCHMARKS.values()]
    if not args.json:
        print(f"{'name':>6} {'Lambda':>7} {'m_pi':>7} {'m_rho':>8} {'m_q':>8}  rho decay")
        for r in rows:
            print(f"{r['name']:>6} {r['lambda_d_gev']:7g} {r['m_pi_gev']:7g} {r['m_rho_gev']:8.3f} "
                  f"{r['m_quark_constituent_gev']:8.4f}  {r['rho_decay']}")
        print(f"(masses in GeV; m_q is Pythia's constituent dark-quark mass; default "
              f"{DEFAULT_BENCHMARK})")
    return {"benchmarks": rows, "default": DEFAULT_BENCHMARK}


@command("generate")
def cmd_generate(args) -> dict:
    from .generation import GenerationConfig, generate, summarise_file
    from .presets import get_preset
    from .storage import read_events

    preset = get_preset(args.preset)
    process = "background" if args.background else "signal"
    n_events = args.events
    if n_events is None:
        n_events = preset.n_background if args.background else preset.n_signal
    kwargs = {}
    if args.chunk_size:
        kwargs["chunk_size"] = args.chunk_size
    if args.pthat_min is not None:
        kwargs["pthat_min"] = args.pthat_min
    if args.mhat_min is not None:
        kwargs["mhat_min"] = args.mhat_min
    config = GenerationConfig(process=process, benchmark=None if args.background else
                              args.benchmark, n_events=n_events, seed=args.seed, **kwargs)
    bar, progress = _progress_bar(config.label, not args.quiet)
    try:
        path = generate(config, n_jobs=args.jobs, out=args.out, progress=progress,
                        reuse=not args.force)
    finally:
        if bar is not None:
            bar.close()
    summary = summarise_file(read_events(path, constituents=False), preset.luminosity_fb)
    summary["preset"] = preset.to_dict()
    if not args.json:
        _print_summary(summary)
    return summary


@command("info")
def cmd_info(args) -> dict:
    from .generation import summarise_file
    from .storage import read_events

    summary = summarise_file(read_events(args.file, constituents=True))
    if not args.json:
        _print_summary(summary)
    return summary


def _print_summary(s: dict) -> None:
    name = s["benchmark"] or "QCD dijets"
    print(f"{s['path']}")
    print(f"  {s['process']} ({name}): {s['n_generated']} generated, {s['n_selected']} selected")
    print(f"  sigma = {s['sigma_pb']:.4g} +- {s['sigma_err_pb']:.2g} pb (Pythia estimate)")
    print("  cutflow:")
    for step, n in s["cutflow"].items():
        print(f"    {step:<34} {n:>9}  ({n / s['n_generated']:.4f})")
    print(f"  efficiency SR = {s['efficiency_sr']:.4f}, SB = {s['efficiency_sb']:.4f} "
          f"(wide SB {s['efficiency_sb_wide']:.4f})")
    for lumi, counts in s.get("expected", {}).items():
        print(f"  expected at {lumi}: B_SR = {counts['B_SR']:.0f}, B_SB = {counts['B_SB']:.0f} "
              f"(wide SB {counts['B_SB_wide']:.0f})")


@command("train")
def cmd_train(args) -> dict:
    from .jobs import report_metrics
    from .training import StudyConfig, results_table, run_study

    config = StudyConfig(
        method=args.method, benchmark=args.benchmark, injection=args.injection,
        resolution=args.resolution, augment=args.augment, copies=args.copies, runs=args.runs,
        seed=args.seed, eps_b=tuple(args.eps_b), preset=args.preset, device=args.device,
        sidebands=args.sidebands, normalise=args.normalise, dropout=args.dropout,
        max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size,
        lr=args.lr, precision=args.precision, luminosity_fb=args.luminosity,
        max_angle=args.max_angle, smear_formula=args.smear_formula, sample_seed=args.sample_seed)
    bar, progress = _fraction_bar(f"{config.method} {config.benchmark}", not args.quiet)

    try:
        result = run_study(config, progress=progress, on_epoch=report_metrics)
    finally:
        if bar is not None:
            bar.close()
    result["table"] = results_table(result)
    if not args.json:
        _print_study(result)
    return result


def _print_study(r: dict) -> None:
    c = r["config"]
    print(f"{c['method']} on {c['benchmark']} ({c['preset']} preset, {r['luminosity_fb']:g} "
          f"fb^-1), {c['resolution']}x{c['resolution']}, augmentation {c['augment']}"
          + (f" +{c['copies']}" if c["augment"] != "none" else "")
          + f", {len(r['runs'])} run(s) on {r['device']} ({r['precision']}), "
          f"{r['wall_s']:.0f} s")
    print(f"  events: {r['counts']}")
    auc = r["summary"]["auc"]
    print(f"  true-label AUC = {auc['mean']:.3f} +- {auc['std']:.3f}; epochs "
          f"{[run['epochs'] for run in r['runs']]}")
    if c["method"] != "supervised":
        print(f"  injected S/sqrt(B) = {c['injection']:g}")
    for key, wp in r["summary"]["working_points"].items():
        line = f"  eps_b = {float(key):g}: eps_s = {wp['eps_s']['mean']:.3f} +- " \
               f"{wp['eps_s']['std']:.3f}"
        if "z_ideal" in wp:
            line += (f", Z ideal = {wp['z_ideal']['mean']:.2f} +- {wp['z_ideal']['std']:.2f}, "
                     f"Z Asimov = {wp['z_asimov']['mean']:.2f} +- {wp['z_asimov']['std']:.2f}")
        print(line)


@command("images")
def cmd_images(args) -> dict:
    import time

    import numpy as np

    from .augment import augmented_images
    from .storage import read_events, write_images
    from .training import AUGMENTATIONS

    if args.augment not in AUGMENTATIONS:
        from .errors import ConfigError
        raise ConfigError(f"unknown augmentation {args.augment!r}: choose one of "
                          f"{tuple(AUGMENTATIONS)}")
    sample = read_events(args.file)
    const = sample.constituents
    n = len(sample)
    copies = args.copies if args.augment != "none" else 0
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    parts = [augmented_images(const["pt"], const["eta"], const["phi"], const["offsets"], ids,
                              k, method=AUGMENTATIONS[args.augment], resolution=args.resolution,
                              seed=args.seed, normalise=args.normalise)
             for k in range(copies + 1)]
    seconds = time.perf_counter() - t0
    images = np.stack(parts, axis=1)  # (events, copies + 1, 2, res, res)
    from .storage import cache_root

    out = args.out or str(cache_root() / "images" /
                          f"{sample.path.stem}-images{args.resolution}-{args.augment}{copies}.h5")
    write_images(out, images, sample, {"resolution": args.resolution, "augment": args.augment,
                                       "copies": copies, "seed": args.seed,
                                       "normalise": args.normalise})
    n_jets = 2 * n * (copies + 1)
    result = {"path": out, "shape": list(images.shape), "seconds": seconds,
              "jets_per_s": n_jets / seconds if seconds > 0 else None}
    if not args.json:
        print(f"{out}: images {tuple(images.shape)} (events, copies, jets, eta', phi') in "
              f"{seconds:.2f} s, {result['jets_per_s']:,.0f} jets/s")
    return result


@command("scan")
def cmd_scan(args) -> dict:
    from pathlib import Path

    from .jobs import current_folder
    from .scan import ScanConfig, run_scan, scan_folder
    from .training import StudyConfig

    base = StudyConfig(
        resolution=args.resolution, runs=args.runs, seed=args.seed, eps_b=tuple(args.eps_b),
        preset=args.preset, device=args.device, sidebands=args.sidebands,
        normalise=args.normalise, dropout=args.dropout, max_epochs=args.max_epochs,
        patience=args.patience, batch_size=args.batch_size, lr=args.lr,
        precision=args.precision, luminosity_fb=args.luminosity, max_angle=args.max_angle,
        smear_formula=args.smear_formula, sample_seed=args.sample_seed,
        benchmark=args.benchmark[0], method=args.method[0], augment=args.augment[0])
    scan = ScanConfig(base=base, benchmarks=tuple(args.benchmark), methods=tuple(args.method),
                      augments=tuple(args.augment), copies=tuple(args.copies),
                      injections=tuple(args.injection))
    if args.workers < 1:
        from .errors import ConfigError
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out) if args.out else (current_folder() or scan_folder(scan))
    children = scan.children()
    bar, progress = _fraction_bar(f"scan ({len(children)} children)", not args.quiet)

    try:
        result = run_scan(scan, out, backend=args.backend, workers=args.workers,
                          scheduler=args.scheduler, threads=args.threads, progress=progress,
                          generate_only=args.generate_only)
    finally:
        if bar is not None:
            bar.close()
    if not args.json:
        if args.generate_only:
            print(f"samples ready ({result['backend']}):")
            for path in result["generated"]:
                print(f"  {path}")
        else:
            _print_scan(result)
    return result


def _print_scan(r: dict) -> None:
    print(f"scan of {r['n_children']} children on {r['backend']} ({r['workers']} worker(s)): "
          f"{len(r['computed'])} computed now, {r['n_children'] - len(r['computed'])} reused; "
          f"{r['wall_s']:.0f} s; results in {r['folder']}")
    print(f"  {'benchmark':<7} {'method':<10} {'augment':<10} {'n':>2} {'S/sqrtB':>7} "
          f"{'eps_b':>6} {'AUC':>11} {'Z ideal':>13} {'Z Asimov':>13}")
    for row in r["table"]:
        def pm(f):
            m, s = row.get(f + "_mean"), row.get(f + "_std")
            return "-" if m is None else f"{m:.2f}+-{(s or 0):.2f}"
        inj = "-" if row["method"] == "supervised" else f"{row['injection']:g}"
        print(f"  {row['benchmark']:<7} {row['method']:<10} {row['augment']:<10} "
              f"{row['copies']:>2} {inj:>7} {row['eps_b']:>6g} {pm('auc'):>11} "
              f"{pm('z_ideal'):>13} {pm('z_asimov'):>13}")


@command("jobs")
def cmd_jobs(args) -> dict:
    from . import jobs
    from .errors import JobError

    tokens = list(args.rest)
    command_line = []
    if "--" in tokens:
        i = tokens.index("--")
        tokens, command_line = tokens[:i], tokens[i + 1:]
    elif args.action == "submit":  # "--" left out: the command starts at its name
        i = next((k for k, t in enumerate(tokens) if t in COMMANDS), len(tokens))
        tokens, command_line = tokens[:i], tokens[i:]
    opts = _jobs_options().parse_args(tokens)
    args.json = args.json or opts.json
    args.target = opts.target
    if args.action == "worker":
        raise SystemExit(jobs.run_worker(args.target))
    if args.action == "submit":
        if not command_line:
            raise JobError("nothing to submit: jobs submit -- train --preset tiny ...")
        job = jobs.submit(command_line, label=opts.label or "", cores=opts.cores)
        out = {"job": job.to_dict()}
        if not args.json:
            print(f"{job.id}: {job.state} (python -m darkvalley_core "
                  f"{' '.join(job.config.get('argv', []))})")
        return out
    if args.action == "list":
        rows = [j.to_dict() for j in jobs.list_jobs()]
        if not args.json:
            for r in rows:
                print(f"{r['id']:<40} {r['state']:<10} {100 * r['progress']:5.1f}%  "
                      f"{' '.join(r['argv'])}")
            if not rows:
                print("no jobs")
        return {"jobs": rows}
    if not args.target:
        raise JobError(f"'jobs {args.action}' needs a job id")
    if args.action == "show":
        job = jobs.get_job(args.target)
        out = {"job": job.to_dict(), "result": job.result, "log_tail": job.log_tail(),
               "metrics": job.metrics()}
        if not args.json:
            print(json.dumps(out["job"], indent=1))
            print(out["log_tail"])
        return out
    if args.action == "cancel":
        job = jobs.cancel(args.target)
        if not args.json:
            print(f"{job.id}: {job.state}")
        return {"job": job.to_dict()}
    if args.action == "retry":
        job = jobs.retry(args.target)
        if not args.json:
            print(f"{job.id}: {job.state} (attempt {job.raw_status.get('attempt')})")
        return {"job": job.to_dict()}
    if args.action == "wait":
        job = jobs.wait(args.target, timeout=opts.timeout)
        if not args.json:
            print(f"{job.id}: {job.state}")
        return {"job": job.to_dict()}
    if args.action == "delete":
        jobs.delete(args.target)
        if not args.json:
            print(f"deleted {args.target}")
        return {"deleted": args.target}
    raise AssertionError(args.action)


def _job_dict(job) -> dict:
    return job.to_dict()


def _jobs_options() -> argparse.ArgumentParser:
    """The options after ``jobs ACTION`` (before a ``--`` that starts a submitted command)."""
    from .errors import JobError

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise JobError(f"jobs: {message}")

    p = Parser(prog="python -m darkvalley_core jobs ACTION", add_help=False)
    p.add_argument("target", nargs="?", default=None, help="job id (or folder for worker)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--label", default=None, help="submit: a name shown in the job list")
    p.add_argument("--cores", type=int, default=None,
                   help="submit: cores the job reserves (default: what the command needs)")
    p.add_argument("--timeout", type=float, default=3600.0, help="wait: seconds")
    return p


# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m darkvalley_core",
                                     description="darkvalley: weak supervision for dark jets")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout")

    sub.add_parser("benchmarks", parents=[common], help="list the 14 dark-valley benchmarks")

    g = sub.add_parser("generate", parents=[common],
                       help="generate signal or QCD background events into an HDF5 file")
    g.add_argument("--benchmark", default="ID-10", help="signal benchmark, e.g. ID-10 or DD-5")
    g.add_argument("--background", action="store_true", help="generate QCD dijets instead")
    g.add_argument("--events", type=int, default=None,
                   help="events to generate (default: the preset's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    g.add_argument("--preset", default="demo", help="tiny, demo or paper")
    g.add_argument("--out", default=None, help="output file (default: in the cache)")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="events per seeded chunk (default 1000)")
    g.add_argument("--pthat-min", type=float, default=None, help="background pTHatMin [GeV]")
    g.add_argument("--mhat-min", type=float, default=None, help="background mHatMin [GeV]")
    g.add_argument("--force", action="store_true", help="regenerate even if cached")
    g.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("info", parents=[common], help="summarise an events file")
    i.add_argument("file")

    t = sub.add_parser("train", parents=[common],
                       help="train the shared-jet CNN and compute the significance")
    t.add_argument("--method", default="cwola", help="supervised, cwola or transfer")
    t.add_argument("--benchmark", default="ID-10")
    t.add_argument("--injection", type=float, default=3.0, help="initial S/sqrt(B) in the SR")
    t.add_argument("--resolution", type=int, default=25, help="25, 50 or 75")
    t.add_argument("--augment", default="none", help="none, rotation, smearing or combined")
    t.add_argument("--copies", type=int, default=5, help="+n augmented copies per event")
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eps-b", type=float, nargs="+", default=[0.1, 0.01, 0.001],
                   help="background efficiencies of the working points")
    t.add_argument("--preset", default="demo")
    t.add_argument("--sample-seed", type=int, default=0, help="generation seed of the samples")
    t.add_argument("--luminosity", type=float, default=None, help="fb^-1 (default: preset's)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    t.add_argument("--sidebands", default="narrow", help="narrow or wide")
    t.add_argument("--normalise", default="raw", help="raw or event")
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--max-epochs", type=int, default=100)
    t.add_argument("--patience", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=512)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--max-angle", type=float, default=3.141592653589793,
                   help="rotation range [-a, a] in rad")
    t.add_argument("--smear-formula", default="lecture", help="lecture or delphes")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    im = sub.add_parser("images", parents=[common], help="write jet images of an events file")
    im.add_argument("file")
    im.add_argument("--resolution", type=int, default=25)
    im.add_argument("--augment", default="none", help="none, rotation, smearing or combined")
    im.add_argument("--copies", type=int, default=0)
    im.add_argument("--seed", type=int, default=0)
    im.add_argument("--normalise", default="raw", help="raw or event")
    im.add_argument("--out", default=None)

    sc = sub.add_parser("scan", parents=[common],
                        help="sweep benchmarks x methods x augmentations x copies x injections")
    list_opts = {"benchmark": ("--benchmarks", "--benchmark"), "method": ("--methods", "--method"),
                 "augment": ("--augments", "--augment", "--augmentations"),
                 "copies": ("--copies",), "injection": ("--injections", "--injection")}
    # Every other option is train's own, so the two commands cannot drift apart.
    for action in t._actions:
        if action.dest in list_opts or action.dest in ("help", "json"):
            continue
        sc._add_action(action)
    sc.add_argument(*list_opts["benchmark"], dest="benchmark", nargs="+", default=["ID-10"])
    sc.add_argument(*list_opts["method"], dest="method", nargs="+", default=["cwola"],
                    help="supervised, cwola, transfer")
    sc.add_argument(*list_opts["augment"], dest="augment", nargs="+", default=["none"],
                    help="none, rotation, smearing, combined")
    sc.add_argument(*list_opts["copies"], dest="copies", nargs="+", type=int, default=[5],
                    help="+n augmented copies (with an augmentation)")
    sc.add_argument(*list_opts["injection"], dest="injection", nargs="+", type=float,
                    default=[0.0, 1.0, 2.0, 3.0, 5.0], help="initial S/sqrt(B) values")
    sc.add_argument("--backend", default="loky", choices=["loky", "dask", "ray"],
                    help="joblib backend of the children")
    sc.add_argument("--scheduler", default=None,
                    help="dask scheduler address (tcp://host:8786) or 'local' for a "
                         "LocalCluster; ray address for ray")
    sc.add_argument("--workers", type=int, default=1, help="children run at the same time")
    sc.add_argument("--threads", type=int, default=None,
                    help="torch threads per child (default: cores // workers with loky, "
                         "else 1)")
    sc.add_argument("--out", default=None,
                    help="folder of the children and tables (default: the job's folder, "
                         "else cache/scans/<key>)")
    sc.add_argument("--generate-only", action="store_true",
                    help="only generate the samples the sweep needs (with the backend)")

    j = sub.add_parser("jobs", parents=[common],
                       help="background jobs: submit, list, show, cancel, retry, wait, delete",
                       description="jobs submit [--label L] [--cores N] -- <command line>; "
                                   "jobs list; jobs show|cancel|retry|delete ID; "
                                   "jobs wait ID [--timeout S]; all with --json")
    j.add_argument("action", choices=["submit", "list", "show", "cancel", "retry", "wait",
                                      "delete", "worker"])
    # Everything after the action is parsed by cmd_jobs (JOBS_PARSER): a command line after
    # "--" must reach submit untouched.
    j.add_argument("rest", nargs=argparse.REMAINDER,
                   help="job id, options, and for submit: -- followed by a command line")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = COMMANDS[args.command](args)
    except DarkValleyError as exc:
        if getattr(args, "json", False):
            _json_out({"ok": False, "error": str(exc), "type": type(exc).__name__})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        _json_out({"ok": True, "command": args.command, **result})
    return 0
