"""Event-generation throughput, measured against bare Pythia in the same run.

For the signal (ID-10) and the QCD background, on one core, over the same events (the sample's
production chunks of 1000 events, each with its own seed):
  * bare Pythia: a loop of ``pythia.next()`` with nothing read out (the reference);
  * the full pipeline: Pythia (nextBatch) + detector + fastjet clustering + selection, through
    ``generation.run_chunk`` (Pythia's initialisation of every chunk included);
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

from darkvalley_core.generation import (GenerationConfig, chunk_seeds, generate,  # noqa: E402
                                        new_pythia, run_chunk)
from darkvalley_core.jets import stdout_to_stderr  # noqa: E402


def bare_pythia_rate(config: GenerationConfig) -> float:
    """``pythia.next()`` over the sample's chunks, each with its chunk's seed (initialisation
    outside the clock): the very events the pipeline makes."""
    elapsed = 0.0
    for chunk, n in config.chunks():
        with stdout_to_stderr():
            pythia = new_pythia(config.pythia_settings(), seed=chunk_seeds(config, chunk)[0])
            t0 = time.perf_counter()
            for _ in range(n):
                pythia.next()
            elapsed += time.perf_counter() - t0
    return config.n_events / elapsed


def pipeline_rate(config: GenerationConfig) -> tuple[float, float]:
    """The production path, chunk by chunk in one process: Pythia initialisation, generation,
    detector, clustering and selection. Returns (events/s, Pythia's share of the time,
    milliseconds per event of every step)."""
    run_chunk(config, 999, 20)  # warm imports (awkward, fastjet, vector) outside the clock
    elapsed = pythia = 0.0
    steps: dict[str, float] = {}
    for chunk, n in config.chunks():
        t0 = time.perf_counter()
        result = run_chunk(config, chunk, n)
        elapsed += time.perf_counter() - t0
        pythia += result["seconds_pythia"]
        for name, seconds in result["seconds_by_step"].items():
            steps[name] = steps.get(name, 0.0) + seconds
    steps["selection and the rest"] = elapsed - sum(steps.values())
    per_event = {name: 1e3 * seconds / config.n_events for name, seconds in steps.items()}
    return config.n_events / elapsed, pythia / elapsed, per_event


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
    breakdowns = []
    for config in (GenerationConfig("signal", n, benchmark="ID-10", seed=1),
                   GenerationConfig("background", n, seed=1)):
        bare = bare_pythia_rate(config)
        pipe, pythia_share, per_event = pipeline_rate(config)
        breakdowns.append((config.label, 1e3 / bare, per_event))
        big = GenerationConfig(config.process, 4 * n, benchmark=config.benchmark, seed=2,
                               chunk_size=n // 2)
        t1, t2 = worker_speedup(big, 4 * n)
        print(f"{config.label:<12} {bare:17.1f} {pipe:14.1f} {pipe / bare:6.2f} "
              f"{pythia_share:15.0%} {t1:11.1f} {t2:12.1f} {t1 / t2:9.2f}", flush=True)
    print("targets: ratio >= 0.70, speed-up >= 1.80")
    print("\npipeline per event [ms] (bare pythia.next() for comparison):")
    for label, bare_ms, per_event in breakdowns:
        parts = ", ".join(f"{name} {ms:.3f}" for name, ms in per_event.items())
        print(f"  {label}: bare next() {bare_ms:.3f} | {parts} | total "
              f"{sum(per_event.values()):.3f}")


if __name__ == "__main__":
    main()
