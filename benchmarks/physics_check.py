"""The README's physics check on the demo preset: supervised AUC of ID-10 vs QCD, and a CWoLa
curve (Z after the cut vs injected S/sqrt(B), several runs per point) with its plot.

Usage: python benchmarks/physics_check.py [--runs 3] [--injections 0 2 4 6 8 10]
          [--method cwola] [--augment none] [--out docs/]
Writes <out>/<method>-<augment>-demo.csv and .png and prints the table, the learning threshold
and the 5 sigma reach.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from darkvalley_core import significance as sg  # noqa: E402
from darkvalley_core.training import StudyConfig, run_study  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--injections", type=float, nargs="+", default=[0, 2, 4, 6, 8, 10])
    ap.add_argument("--method", default="cwola")
    ap.add_argument("--augment", default="none")
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--eps-b", type=float, default=0.01)
    ap.add_argument("--skip-supervised", action="store_true")
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = str(args.eps_b)

    if not args.skip_supervised:
        t0 = time.perf_counter()
        r = run_study(StudyConfig(method="supervised", preset=args.preset, runs=args.runs,
                                  max_epochs=args.max_epochs))
        a = r["summary"]["auc"]
        wp = r["summary"]["working_points"][key]
        print(f"supervised ID-10 vs QCD ({args.preset}): AUC = {a['mean']:.3f} +- {a['std']:.3f}"
              f" over {args.runs} runs, eps_s(eps_b={args.eps_b:g}) = {wp['eps_s']['mean']:.3f};"
              f" {r['counts']['train']} training events; {time.perf_counter() - t0:.0f} s",
              flush=True)

    rows = []
    t0 = time.perf_counter()
    for inj in args.injections:
        t1 = time.perf_counter()
        r = run_study(StudyConfig(method=args.method, preset=args.preset, runs=args.runs,
                                  injection=inj, augment=args.augment, copies=args.copies,
                                  max_epochs=args.max_epochs))
        s = r["summary"]
        wp = s["working_points"][key]
        row = {"injection": inj, "auc_mean": s["auc"]["mean"], "auc_std": s["auc"]["std"],
               "eps_s_mean": wp["eps_s"]["mean"],
               "z_ideal_mean": wp["z_ideal"]["mean"], "z_ideal_std": wp["z_ideal"]["std"],
               "z_asimov_mean": wp["z_asimov"]["mean"], "z_asimov_std": wp["z_asimov"]["std"],
               "S_SR": r["counts"]["S_SR"], "B_SR": r["counts"]["B_SR"],
               "epochs_mean": s["epochs"]["mean"], "seconds": time.perf_counter() - t1}
        rows.append(row)
        print(f"S/sqrt(B) = {inj:4.1f}: S_SR = {row['S_SR']:4d}, AUC = {row['auc_mean']:.3f} +- "
              f"{row['auc_std']:.3f}, Z ideal = {row['z_ideal_mean']:.2f} +- "
              f"{row['z_ideal_std']:.2f}, Z Asimov = {row['z_asimov_mean']:.2f} +- "
              f"{row['z_asimov_std']:.2f}  ({row['seconds']:.0f} s)", flush=True)
    total = time.perf_counter() - t0
    x = np.array([r["injection"] for r in rows])
    for name in ("z_ideal", "z_asimov"):
        m = np.array([r[f"{name}_mean"] for r in rows])
        e = np.array([r[f"{name}_std"] for r in rows])
        lt = sg.learning_threshold(x, m, e)
        reach = sg.five_sigma_reach(x, m, e)
        print(f"{name}: learning threshold = {lt.value:.2f} (band {lt.low:.2f}-{lt.high:.2f}), "
              f"5 sigma reach = {reach.value:.2f} (band {reach.low:.2f}-{reach.high:.2f})")
    print(f"total {total:.0f} s for {len(rows)} injections x {args.runs} runs")

    stem = out / f"{args.method}-{args.augment}-{args.preset}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for name, colour, label in (("z_ideal", "C3", "ideal Z"), ("z_asimov", "C0", "Asimov Z")):
        m = np.array([r[f"{name}_mean"] for r in rows])
        e = np.array([r[f"{name}_std"] for r in rows])
        ax.errorbar(x, m, yerr=e, marker="o", color=colour, capsize=3, label=label)
    ax.plot(x, x, "k--", lw=1, label="no gain: Z = S/√B")
    ax.axhline(5, color="grey", lw=1, ls=":", label="5σ")
    ax.set_xlabel("injected S/√B in the SR (before the cut)")
    ax.set_ylabel(f"Z after the cut (ε_b = {args.eps_b:g})")
    ax.set_title(f"{args.method}, ID-10, {args.preset} preset, {args.runs} runs per point, "
                 f"augmentation {args.augment}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.png')}")


if __name__ == "__main__":
    main()
