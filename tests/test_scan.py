"""Sweeps: the product of settings, idempotent children, the same table from loky and from a
dask LocalCluster, generation through dask, the `scan` command, read-offs of the curves."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from darkvalley_core import scan
from darkvalley_core.errors import ConfigError
from darkvalley_core.training import StudyConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = StudyConfig(preset="tiny", runs=1, max_epochs=2, device="cpu", eps_b=(0.1,))


@pytest.fixture
def scan_cache(tiny_samples, tmp_path, monkeypatch):
    """A fresh cache per test that sees the session's tiny samples."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "events").symlink_to(Path(tiny_samples[0]).parent, target_is_directory=True)
    monkeypatch.setenv("DARKVALLEY_CACHE", str(cache))
    return cache


def test_children_are_the_product_without_pointless_points():
    sweep = scan.ScanConfig(base=TINY, benchmarks=("ID-10", "DD-5"),
                            methods=("supervised", "cwola"), augments=("none", "rotation"),
                            copies=(1, 5), injections=(1, 2, 2, 3))
    children = sweep.children()
    # per benchmark: supervised x (none + rotation x 2 copies) x 1 injection = 3
    #                cwola      x (none + rotation x 2 copies) x 3 injections = 9
    assert len(children) == 2 * (3 + 9)
    assert len({scan.child_name(c) for c in children}) == len(children)
    assert {c.copies for c in children if c.augment == "none"} == {0}
    assert {c.injection for c in children if c.method == "supervised"} == {0.0}
    assert sweep.injections == (1.0, 2.0, 3.0)
    assert all(c.preset == "tiny" and c.runs == 1 for c in children)
    with pytest.raises(ConfigError, match="unknown method"):
        scan.ScanConfig(base=TINY, methods=("magic",))
    with pytest.raises(ConfigError, match="at least one"):
        scan.ScanConfig(base=TINY, injections=())
    with pytest.raises(Exception, match="ID-11"):
        scan.ScanConfig(base=TINY, benchmarks=("ID-11",))


def test_command_lines_round_trip():
    from darkvalley_core.cli import build_parser

    sweep = scan.ScanConfig(base=StudyConfig(preset="tiny", lr=3e-4, max_angle=math.pi / 3),
                            injections=(0.5, 1 / 3), methods=("cwola", "transfer"))
    args = build_parser().parse_args(scan.scan_command(sweep, "dask", 4, "tcp://h:8786"))
    assert args.injection == [0.5, 1 / 3] and args.method == ["cwola", "transfer"]
    assert args.lr == 3e-4 and args.max_angle == math.pi / 3
    assert args.backend == "dask" and args.workers == 4 and args.scheduler == "tcp://h:8786"
    one = sweep.children()[0]
    targs = build_parser().parse_args(scan.train_command(one))
    assert targs.injection == one.injection and targs.preset == "tiny"


def frame(rows):
    return pd.DataFrame(rows).sort_values(["child", "eps_b"]).reset_index(drop=True)


def test_loky_and_dask_give_the_same_table_and_children_are_not_rerun(scan_cache, tmp_path):
    sweep = scan.ScanConfig(base=TINY, injections=(2.0, 5.0))
    loky = scan.run_scan(sweep, tmp_path / "loky", backend="loky", workers=2)
    dask = scan.run_scan(sweep, tmp_path / "dask", backend="dask", workers=2)
    assert len(loky["computed"]) == 2 and len(dask["computed"]) == 2
    pd.testing.assert_frame_equal(frame(loky["table"]), frame(dask["table"]))
    assert loky["runs_table"] == dask["runs_table"] or pd.DataFrame(
        loky["runs_table"]).equals(pd.DataFrame(dask["runs_table"]))
    assert (tmp_path / "loky" / "table.csv").read_text() == \
        (tmp_path / "dask" / "table.csv").read_text()
    # the table has the headline numbers
    row = frame(loky["table"]).iloc[0]
    assert row["benchmark"] == "ID-10" and row["injection"] == 2.0
    assert 0 <= row["auc_mean"] <= 1 and np.isfinite(row["z_ideal_mean"])
    # children on disk, each a whole run_study result
    files = sorted((tmp_path / "loky" / "children").glob("*.json"))
    assert len(files) == 2 and all(json.loads(f.read_text())["runs"] for f in files)
    # a finished child is not run again; a missing one is
    again = scan.run_scan(sweep, tmp_path / "loky", backend="loky", workers=2)
    assert again["computed"] == [] and again["table"] == loky["table"]
    files[0].unlink()
    third = scan.run_scan(sweep, tmp_path / "loky", workers=1)
    assert third["computed"] == [files[0].stem]
    pd.testing.assert_frame_equal(frame(third["table"]), frame(loky["table"]))


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_generation_chunks_through_dask_merge_into_the_local_file(tmp_path, session_cache):
    from darkvalley_core.generation import GenerationConfig, generate

    cfg = GenerationConfig("background", 120, seed=5, chunk_size=40)
    local = generate(cfg, n_jobs=1, out=tmp_path / "local.h5")
    dask = generate(cfg, n_jobs=2, out=tmp_path / "dask.h5", backend="dask")
    assert sha(local) == sha(dask)


def test_scan_command_json(scan_cache, tmp_path):
    env = {**os.environ, "DARKVALLEY_CACHE": str(scan_cache)}
    r = subprocess.run([sys.executable, "-m", "darkvalley_core", "scan", "--preset", "tiny",
                        "--runs", "1", "--max-epochs", "2", "--injections", "2", "5",
                        "--eps-b", "0.1", "--device", "cpu", "--out", str(tmp_path / "s"),
                        "--json", "--quiet"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["n_children"] == 2 and len(out["table"]) == 2
    assert {row["injection"] for row in out["table"]} == {2.0, 5.0}
    assert (tmp_path / "s" / "table.csv").exists() and (tmp_path / "s" / "runs.csv").exists()
    r = subprocess.run([sys.executable, "-m", "darkvalley_core", "scan", "--preset", "tiny",
                        "--backend", "ray", "--json", "--quiet", "--out", str(tmp_path / "r")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    try:
        import ray  # noqa: F401
    except ImportError:
        assert r.returncode == 2 and "ray" in json.loads(r.stdout)["error"]


def synthetic_runs(slope=2.0, offset=-1.0, spread=0.2, n_runs=4):
    """Per-run rows whose mean Z is slope * x + offset exactly (runs symmetric around it)."""
    rows = []
    for x in (0.0, 1.0, 2.0, 3.0, 4.0):
        for k in range(n_runs):
            dz = spread * (1 if k % 2 else -1)
            rows.append({"job": "j", "job_label": "j", "curve_key": "c", "family_key": "f",
                         "run_seed": k, "finished": 1.0, "benchmark": "ID-10", "method": "cwola",
                         "augment": "none", "copies": 0, "resolution": 25, "preset": "demo",
                         "luminosity_fb": 5.0, "sidebands": "narrow", "normalise": "raw",
                         "dropout": 0.0, "injection": x, "eps_b": 0.01, "run": k,
                         "z_ideal": slope * x + offset + dz, "z_asimov": np.nan,
                         "eps_s": 0.1})
    return pd.DataFrame(rows)


def test_curves_and_read_offs():
    df = synthetic_runs()
    curves, supervised = scan.sensitivity_curves(df, "z_ideal", 0.01)
    assert len(curves) == 1 and supervised == []
    c = curves[0]
    assert c["x"] == [0, 1, 2, 3, 4] and c["n"] == [4] * 5
    np.testing.assert_allclose(c["mean"], [-1, 1, 3, 5, 7])
    np.testing.assert_allclose(c["std"], 0.2)
    # Z = 2x - 1 beats Z = x from x = 1 on and reaches 5 at x = 3
    assert c["threshold"] == pytest.approx(1.0) and c["reach"] == pytest.approx(3.0)
    # bands: 2x - 1 +- 0.2 crosses x at 0.8 / 1.2 and 5 at 2.9 / 3.1; the point without
    # injected signal (x = 0) is left out of the threshold read-off, so the low band stops at 1
    assert (c["threshold_low"], c["threshold_high"]) == pytest.approx((1.0, 1.2))
    assert (c["reach_low"], c["reach_high"]) == pytest.approx((2.9, 3.1))
    table = scan.readoff_table(curves)
    assert table[0]["learning threshold"] == pytest.approx(1.0)
    # an Asimov view of runs without Asimov numbers has no read-off, not a crash
    ca, _ = scan.sensitivity_curves(df, "z_asimov", 0.01)
    assert math.isnan(ca[0]["threshold"])
    # another working point: nothing
    assert scan.sensitivity_curves(df, "z_ideal", 0.1) == ([], [])
    rows = scan.reach_rows(curves)
    assert rows[0]["series"] == "CWoLa" and rows[0]["benchmark"] == "ID-10"


def test_runs_pool_across_jobs_once_and_only_for_the_same_settings():
    df = synthetic_runs().assign(max_epochs=100)
    again = df.assign(job="k", job_label="k", finished=2.0)  # the same runs, another job
    curves, _ = scan.sensitivity_curves(pd.concat([df, again]), "z_ideal", 0.01)
    assert len(curves) == 1 and curves[0]["n"] == [4] * 5
    per_job, _ = scan.sensitivity_curves(pd.concat([df, again]), "z_ideal", 0.01, by_job=True)
    assert len(per_job) == 2
    longer = df.assign(curve_key="other", max_epochs=300, z_ideal=df["z_ideal"] + 1)
    two, _ = scan.sensitivity_curves(pd.concat([df, longer]), "z_ideal", 0.01)
    assert len(two) == 2 and {c["max_epochs"] for c in two} == {100, 300}
    assert all("max epochs" in c["label"] for c in two)


def test_copies_series_start_at_no_augmentation():
    base = synthetic_runs()
    aug = []
    for n, gain in ((1, 0.5), (5, 2.0)):
        d = base.copy()
        d["augment"], d["copies"], d["z_ideal"] = "rotation", n, d["z_ideal"] + gain
        d["curve_key"] = f"rot{n}"
        aug.append(d)
    df = pd.concat([base, *aug])
    series = scan.copies_series(df, "z_ideal", 0.01, injection=2.0)
    assert len(series) == 1 and series[0]["x"] == [0, 1, 5]
    np.testing.assert_allclose(series[0]["mean"], [3.0, 3.5, 5.0])


def test_estimate_scales_with_the_work(scan_cache):
    one = scan.estimate([TINY], cores=2)
    more = scan.estimate([replace(TINY, runs=4)], cores=2)
    assert 0 < one["seconds"] < more["seconds"]
    assert one["exact_counts"] and one["generation_s"] == 0
    demo = scan.estimate([StudyConfig(preset="demo", benchmark="DD-50")], cores=2)
    assert demo["generation_s"] > 60 and not demo["exact_counts"]


def test_figures_and_exports():
    from darkvalley_core import plots

    curves, _ = scan.sensitivity_curves(synthetic_runs(), "z_ideal", 0.01)
    fig = plots.sensitivity_figure(curves, "z_ideal", 0.01,
                                   supervised=[{"label": "supervised", "eps_s": 0.3}])
    names = [t.name for t in fig.data]
    assert "no gain: Z = S/√B" in names and "5σ" in names and "supervised" in names
    html = plots.figure_html(fig)
    assert "<html>" in html[:100] and "plotly" in html and len(html) > 1_000_000  # offline
    assert plots.figure_png(fig, width=400, height=300).startswith(b"\x89PNG")
    # the matplotlib path, used wherever kaleido cannot start a browser
    png = plots._matplotlib_png(fig, 400, 300)
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    loss = plots.loss_figure([{"epoch": 0.0, "run": 0.0, "stage": "cwola", "train_loss": 0.7,
                               "val_loss": 0.69}, {"epoch": 1.0, "run": 0.0, "stage": "cwola",
                                                   "train_loss": 0.6, "val_loss": 0.68}])
    assert len(loss.data) == 2
