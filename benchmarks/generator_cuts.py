"""Are the background generator cuts loose enough not to bias the sidebands?

Generates QCD dijets with much looser cuts than the defaults, runs the full pipeline, and asks:
of the selected events with m_jj >= 4300 GeV (the lowest sideband edge), how many come from
hard processes that the default cuts (pTHat >= 600 GeV, mHat >= 3500 GeV) would not have
generated? Also compares the m_jj spectrum above 4300 GeV with and without the default cuts.

Usage: python benchmarks/generator_cuts.py [n_events=6000] [n_jobs=2] [loose_pthat=450]
       [loose_mhat=3000]
"""

import sys
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkvalley_core.benchmarks import background_settings  # noqa: E402
from darkvalley_core.detector import simulate_detector  # noqa: E402
from darkvalley_core.generation import (DEFAULT_MHAT_MIN, DEFAULT_PTHAT_MIN,  # noqa: E402
                                        final_state_particles, new_pythia)
from darkvalley_core.jets import (Selection, cluster_dijets, selection_mask,  # noqa: E402
                                  stdout_to_stderr)

LOOSE_PTHAT = float(sys.argv[3]) if len(sys.argv) > 3 else 450.0
LOOSE_MHAT = float(sys.argv[4]) if len(sys.argv) > 4 else 3000.0


def chunk(seed, n):
    with stdout_to_stderr():
        pythia = new_pythia(background_settings(LOOSE_PTHAT, LOOSE_MHAT), seed)
        particles, hard = final_state_particles(pythia, n, with_hard_process=True)
    sigma = pythia.infoPython().sigmaGen() * 1e9
    eflow = simulate_detector(particles, np.random.default_rng(seed))
    dj = cluster_dijets(eflow)
    sel = list(selection_mask(dj, Selection()).values())[-1]
    return sigma, hard[dj.event[sel], 0], dj.mjj[sel], hard[dj.event[sel], 1]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    size = 500
    t0 = time.time()
    out = Parallel(n_jobs=jobs)(delayed(chunk)(1000 + k, size) for k in range(n // size))
    sigma = np.mean([o[0] for o in out])
    mhat = np.concatenate([o[1] for o in out])
    mjj = np.concatenate([o[2] for o in out])
    pthat = np.concatenate([o[3] for o in out])
    print(f"loose cuts pTHat >= {LOOSE_PTHAT:g}, mHat >= {LOOSE_MHAT:g} GeV: {n} events, "
          f"sigma = {sigma:.3f} pb, {time.time() - t0:.0f} s")
    high = mjj >= 4300
    print(f"selected events with m_jj >= 4300 GeV: {high.sum()}")
    print(f"{'mHat cut':>9} {'lost above 4300':>16} {'lost in SB low 4300-4700':>26}")
    for cut in sorted({LOOSE_MHAT, 3300.0, DEFAULT_MHAT_MIN, 3700.0, 3900.0}):
        lost = high & (mhat < cut)
        sb = (mjj >= 4300) & (mjj < 4700)
        print(f"{cut:9.0f} {lost.sum():8d} ({lost.sum() / max(high.sum(), 1):6.2%}) "
              f"{(sb & (mhat < cut)).sum():12d} of {sb.sum()}")
    # The default cut's effect on the spectrum shape above 4300 GeV, bin by bin.
    bins = np.array([4300, 4400, 4700, 5500, 5800, 5900, 7000])
    all_h, _ = np.histogram(mjj[high], bins)
    kept_h, _ = np.histogram(mjj[high & (mhat >= DEFAULT_MHAT_MIN)], bins)
    print("m_jj bin [GeV]   loose   default-cut   ratio")
    for lo, hi, a, k in zip(bins[:-1], bins[1:], all_h, kept_h):
        print(f"{lo:5.0f}-{hi:<5.0f} {a:10d} {k:12d}   {k / max(a, 1):.3f}")
    lost_pt = high & (pthat < DEFAULT_PTHAT_MIN)
    print(f"pTHat cut {DEFAULT_PTHAT_MIN:g} GeV: {lost_pt.sum()} of {high.sum()} selected events "
          f"above 4300 GeV have a lower pTHat (lowest pTHat there: {pthat[high].min():.0f} GeV)")


if __name__ == "__main__":
    main()
