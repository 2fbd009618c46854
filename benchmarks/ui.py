"""How responsive the app stays while jobs run (prints figures; not a test).

In one run, in a temporary cache with the tiny samples:

1. the page-script time of every page (streamlit AppTest: one script run, in process), first
   run and the median of warm runs, without and then with a training running in the background
   (a real job: CWoLa at 75x75 on the tiny sample, which keeps the cores busy);
   target: every page under 1 s while training runs;
2. the time from a job's completion (its status "finished" time) to its appearance on the
   Sensitivity page: the real app (`streamlit run`) in headless Chromium, the page open while
   the job runs; target under 3 s. Without /usr/bin/chromium this part is skipped.

Usage: python benchmarks/ui.py [--repeats 3] [--latency-trials 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TRAIN = ["train", "--preset", "tiny", "--runs", "1", "--max-epochs", "3", "--device", "cpu",
         "--quiet", "--eps-b", "0.1"]
BACKGROUND = ["train", "--preset", "tiny", "--runs", "50", "--max-epochs", "100000",
              "--patience", "100000", "--resolution", "75", "--batch-size", "64",
              "--device", "cpu", "--quiet"]


def pages() -> list[str]:
    return ["app.py"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


def time_pages(repeats: int) -> dict[str, tuple[float, float]]:
    """{page: (first run s, median warm run s)}; each page in a fresh AppTest session."""
    from streamlit.testing.v1 import AppTest

    out = {}
    for page in pages():
        times = []
        for _ in range(repeats + 1):
            at = AppTest.from_file(str(ROOT / page), default_timeout=120)
            at.session_state["dv_preset"] = "tiny"
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            if at.exception:
                print(f"  {page}: exception {at.exception[0].value}", file=sys.stderr)
        out[page] = (times[0], statistics.median(times[1:]))
    return out


def latency_trials(cache: Path, trials: int) -> list[float] | None:
    """Seconds from a job's completion to its curve on the open Sensitivity page."""
    if not os.path.exists("/usr/bin/chromium"):
        return None
    from playwright.sync_api import sync_playwright
    from test_browser import ARGS, CHROMIUM, settle, start_app, stop_app

    from darkvalley_core import jobs

    proc, url = start_app(cache, cache / "streamlit.log")
    out = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for k in range(trials):
                n_before = len([j for j in jobs.list_jobs() if j.result])
                job = jobs.submit(TRAIN + ["--injection", f"{4 + k}"], label=f"latency {k}")
                while job.state != "running":
                    time.sleep(0.05)
                page.goto(f"{url}/Sensitivity?preset=tiny")
                settle(page)
                # the caption counts the jobs with results: wait for one more
                want = f"{n_before + 1} job(s) selected"
                while True:
                    text = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
                    if any(want in t for t in text):
                        seen = time.time()
                        break
                    if job.state not in jobs.ACTIVE_STATES and \
                            time.time() - job.status["finished"] > 30:
                        raise RuntimeError("the Sensitivity page never showed the job")
                    time.sleep(0.05)
                out.append(seen - float(job.status["finished"]))
            browser.close()
    finally:
        stop_app(proc)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per page")
    parser.add_argument("--latency-trials", type=int, default=3)
    args = parser.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="darkvalley-ui-"))
    os.environ["DARKVALLEY_CACHE"] = str(cache)
    from darkvalley_core import jobs
    from darkvalley_core.generation import generate, preset_configs

    background = None
    try:
        t0 = time.perf_counter()
        for cfg in preset_configs("tiny", "ID-10", 0):
            generate(cfg, n_jobs=2)
        seed = jobs.submit(TRAIN + ["--injection", "3"], label="seed result")
        jobs.wait(seed.id, timeout=300)
        print(f"setup: tiny samples and one finished training in {time.perf_counter() - t0:.0f}"
              f" s (cache {cache}, {os.cpu_count()} cores)")

        idle = time_pages(args.repeats)
        background = jobs.submit(BACKGROUND, label="background training")
        while background.state != "running":
            time.sleep(0.1)
        time.sleep(3)  # past torch's start-up: the training loop is busy
        busy = time_pages(args.repeats)
        assert background.state == "running", background.status
        jobs.cancel(background.id)
        background = None

        print("\npage-script time (AppTest, one script run; first / median of warm runs)")
        print(f"{'page':<26} {'idle first':>10} {'idle warm':>10} {'busy first':>11} "
              f"{'busy warm':>10}")
        worst = 0.0
        for page in pages():
            (fi, wi), (fb, wb) = idle[page], busy[page]
            worst = max(worst, wb)
            print(f"{page:<26} {fi:9.3f}s {wi:9.3f}s {fb:10.3f}s {wb:9.3f}s")
        print(f"slowest warm page while training runs: {worst:.3f} s (target < 1 s: "
              f"{'met' if worst < 1 else 'NOT met'})")

        lat = latency_trials(cache, args.latency_trials)
        if lat is None:
            print("\ncompletion -> Sensitivity page: skipped (no /usr/bin/chromium)")
        else:
            print(f"\ncompletion -> Sensitivity page (real app, headless Chromium, "
                  f"{len(lat)} trials): " + ", ".join(f"{x:.2f} s" for x in lat) +
                  f"; worst {max(lat):.2f} s (target < 3 s: "
                  f"{'met' if max(lat) < 3 else 'NOT met'})")
    finally:
        if background is not None:
            jobs.cancel(background.id)
        for job in jobs.list_jobs():
            if job.state in jobs.ACTIVE_STATES:
                jobs.cancel(job.id)
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
