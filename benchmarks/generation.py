"""Event-generation throughput, measured against bare Pythia in the same run.

For the signal (ID-10) and the QCD background, on one core:
  * bare Pythia: a loop of ``pythia.next()`` with nothing read out (the reference);
  * the full pipeline: Pythia (nextBatch) + detector + fastjet clustering + selection, through
    ``generation.run_chunk`` (Pythia initialisation included);
and the wall-clock speed-up of ``generate`` from 1 to 2 worker processes.
Targets: pipeline >= 0.7x bare Pythia; 2 workers >= 1.8x one worker.

Usage: python benchmarks/generation.py [events_per_measurement=1000]
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkvalley_core.generation import GenerationConfig, generate, new_pythia, run_chunk  # noqa
from darkvalley_core.jets import stdout_to_stderr  # noqa: E402


def bare_pythia_rate(config: GenerationConfig, n: int) -> float:
    with stdout_to_stderr():
        pythia = new_pythia(config.pythia_settings(), seed=4242)
        pythia.next()  # first event outside the clock, like the pipeline's warm process
        t0 = time.perf_counter()
        for _ in range(n):
            pythia.next()
    return n / (time.perf_counter() - t0)


def pipeline_rate(config: GenerationConfig, n: int) -> tuple[float, dict]:
    run_chunk(config, 999, 20)  # warm imports (awkward, fastjet, vector) outside the clock
    t0 = time.perf_counter()
    result = run_chunk(config, 0, n)
    dt = time.perf_counter() - t0
    return n / dt, {"pythia_s": result["seconds_pythia"], "total_s": dt}


def worker_speedup(config: GenerationConfig, n_total: int) -> tuple[float, float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            t0 = time.perf_counter()
            generate(config, n_jobs=jobs, out=Path(tmp) / f"w{jobs}.h5")
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(f"cores: {os.cpu_count()}, events per measurement: {n}")
    print(f"{'sample':<12} {'bare Pythia ev/s':>17} {'pipeline ev/s':>14} {'ratio':>6} "
          f"{'(Pythia share)':>15} {'1 worker s':>11} {'2 workers s':>12} {'speed-up':>9}")
    for config in (GenerationConfig("signal", n, benchmark="ID-10", seed=1),
                   GenerationConfig("background", n, seed=1)):
        bare = bare_pythia_rate(config, n)
        pipe, parts = pipeline_rate(config, n)
        big = GenerationConfig(config.process, 4 * n, benchmark=config.benchmark, seed=2,
                               chunk_size=n // 2)
        t1, t2 = worker_speedup(big, 4 * n)
        print(f"{config.label:<12} {bare:17.1f} {pipe:14.1f} {pipe / bare:6.2f} "
              f"{parts['pythia_s'] / parts['total_s']:15.0%} {t1:11.1f} {t2:12.1f} "
              f"{t1 / t2:9.2f}", flush=True)
    print("targets: ratio >= 0.70, speed-up >= 1.80")


if __name__ == "__main__":
    main()
