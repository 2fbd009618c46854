"""Jet-image speed: batch-vectorised ``darkvalley_core.images`` vs a per-jet reference.

Usage::

    python benchmarks/images.py [EVENTS_FILE.h5] [--jets N] [--skip-memory]

Prints, on the same jets (synthetic jets with 50-150 constituents, or the constituents of the
given events file):

1. jets/s of ``images.jet_images`` (float32, one core) and of a straightforward per-jet
   reference (per-jet numpy preprocessing, then one ``numpy.histogram2d`` per jet, the way
   EnergyFlow's ``pixelate`` works), their ratio, and whether the images agree
   (``allclose``) at 25, 50 and 75 pixels: exactly for the float64 batch path, and the
   fraction of jets agreeing for the float32 path (a constituent within float32 rounding of a
   pixel edge may land in the neighbouring pixel);
2. the time to produce a +5 rotation set of 40,000 events at 25x25 (``AugmentedBatches``);
3. the peak memory while iterating a +33 rotation set at 75x75 over 40,000 events (measured
   first, in a fresh process: tracemalloc peak of the iteration and the process's peak RSS).

Targets: >= 20x the reference and >= 100,000 jets/s at 25x25; +5 set < 10 s; peak < 2 GB.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darkvalley_core import augment, images  # noqa: E402

N_EVENTS_AUG = 40_000


# ------------------------------------------------------------------------------------------
# the per-jet reference (EnergyFlow style)
# ------------------------------------------------------------------------------------------
def reference_jet_image(pt, eta, phi, res):
    """One jet, float64, per-jet numpy: wrap, centre, eigh principal axis, flip, histogram2d."""
    pt = np.asarray(pt, np.float64)
    eta = np.asarray(eta, np.float64)
    phi = np.asarray(phi, np.float64)
    dphi = phi - phi[0]
    dphi[dphi > np.pi] -= 2 * np.pi
    dphi[dphi <= -np.pi] += 2 * np.pi
    w = pt / pt.sum()
    x = eta - np.dot(w, eta)
    y = dphi - np.dot(w, dphi)
    y[y > np.pi] -= 2 * np.pi
    y[y <= -np.pi] += 2 * np.pi
    sxy = np.sum(pt * x * y)
    s = np.array([[np.sum(pt * x * x), sxy], [sxy, np.sum(pt * y * y)]])
    _, vecs = np.linalg.eigh(s)
    major = vecs[:, 1]
    theta = np.arctan2(major[1], major[0])
    c, sn = np.cos(theta), np.sin(theta)
    x, y = x * c + y * sn, -x * sn + y * c
    xp, yp = x > 0, y > 0
    quads = [pt[xp & yp].sum(), pt[xp & ~yp].sum(), pt[~xp & yp].sum(), pt[~xp & ~yp].sum()]
    best = int(np.argmax(quads))
    if best >= 2:
        x = -x
    if best in (1, 3):
        y = -y
    img, _, _ = np.histogram2d(x, y, bins=res, range=[[-1, 1], [-1, 1]], weights=pt)
    return img


def reference_images(pt, eta, phi, off, res):
    out = np.empty((len(off) - 1, res, res), np.float32)
    for j in range(len(off) - 1):
        a, b = off[j], off[j + 1]
        out[j] = reference_jet_image(pt[a:b], eta[a:b], phi[a:b], res)
    return out


# ------------------------------------------------------------------------------------------
def load_jets(path, n_jets, seed=1):
    if path:
        from darkvalley_core import storage

        const = storage.read_events(path).constituents
        pt, eta, phi, off = const["pt"], const["eta"], const["phi"], const["offsets"]
        n_ev = min((len(off) - 1) // 2, n_jets // 2)
        off = off[: 2 * n_ev + 1]
        m = off[-1]
        return pt[:m], eta[:m], phi[:m], off, f"file {path}"
    rng = np.random.default_rng(seed)
    pt, eta, phi, off = images.synthetic_jets(n_jets, rng)
    return pt, eta, phi, off, "synthetic jets"


def agree(a, b, chunk=2048):
    """Per-jet allclose of two (n_jets, res, res) stacks (rtol 1e-5, atol 1e-3 GeV)."""
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    return np.concatenate([np.all(np.isclose(a[i : i + chunk], b[i : i + chunk], rtol=1e-5,
                                             atol=1e-3), axis=1)
                           for i in range(0, len(a), chunk)] or [np.zeros(0, bool)])


def timed(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_images(pt, eta, phi, off, n_ref):
    n_jets = len(off) - 1
    print(f"{'res':>4} {'batch jets/s':>13} {'ref jets/s':>11} {'ratio':>7} "
          f"{'f64 allclose':>13} {'f32 agree':>10}")
    rows = []
    for res in (25, 50, 75):
        t_b, img = timed(lambda: images.jet_images(pt, eta, phi, off, res), 3)
        img = img.reshape(n_jets, res, res)
        m = off[n_ref]
        sl = (pt[:m], eta[:m], phi[:m], off[: n_ref + 1])
        t_r, ref = timed(lambda: reference_images(*sl, res), 1)
        img64 = images.jet_images(*sl, res, dtype=np.float64).reshape(n_ref, res, res)
        ok64 = agree(img64, ref)
        ok32 = agree(img[:n_ref], ref)
        rate_b, rate_r = n_jets / t_b, n_ref / t_r
        rows.append((res, rate_b, rate_r))
        print(f"{res:>4} {rate_b:>13,.0f} {rate_r:>11,.0f} {rate_b / rate_r:>6.1f}x "
              f"{str(bool(ok64.all())):>13} {ok32.mean():>10.5f}")
        del img, ref, img64
    return rows


def bench_plus5(pt, eta, phi, off):
    n_ev = (len(off) - 1) // 2
    labels = np.zeros(n_ev, np.float32)
    t = time.perf_counter()
    ds = augment.AugmentedBatches(pt, eta, phi, off, labels, n_copies=5, method="rotate",
                                  resolution=25, batch_size=512, seed=3)
    n = 0
    for imgs, _, _ in ds:
        n += len(imgs)
    dt = time.perf_counter() - t
    print(f"+5 rotation set, {n_ev} events -> {n} events ({2 * n} jet images) at 25x25: "
          f"{dt:.2f} s ({2 * n / dt:,.0f} jets/s)")
    t = time.perf_counter()
    ds = augment.AugmentedBatches(pt, eta, phi, off, labels, n_copies=5, method="combined",
                                  resolution=25, batch_size=512, seed=3)
    for _ in ds:
        pass
    dt = time.perf_counter() - t
    print(f"+5 combined (smear + preprocess + rotate) set, same events: {dt:.2f} s")


def peak_rss_mib():
    """Peak resident memory of this process [MiB] (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Reset this process's VmHWM (Linux /proc/self/clear_refs "5"); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(path):
    pt, eta, phi, off, _ = load_jets(path, 2 * N_EVENTS_AUG)
    n_ev = (len(off) - 1) // 2
    labels = np.zeros(n_ev, np.float32)
    import gc

    gc.collect()
    base = peak_rss_mib()
    reset = reset_peak_rss()
    tracemalloc.start()
    t = time.perf_counter()
    ds = augment.AugmentedBatches(pt, eta, phi, off, labels, n_copies=33, method="rotate",
                                  resolution=75, batch_size=512, seed=3)
    n = 0
    checksum = 0.0
    for imgs, _, _ in ds:
        n += len(imgs)
        checksum += float(imgs[:, :, 37, 37].sum())
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = peak_rss_mib()
    during = (f"peak RSS during the iteration {rss:.0f} MiB (VmHWM reset before it), "
              if reset else "")
    print(f"+33 rotation set at 75x75, {n_ev} events -> {n} events ({2 * n} jet images) in "
          f"{dt:.1f} s:\n  peak traced allocations during the iteration {peak / 2**20:.0f} MiB; "
          f"{during}peak RSS of the whole (fresh) process {max(rss, base):.0f} MiB "
          f"({base:.0f} MiB reached before, making the jets)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?", help="events file (default: synthetic jets)")
    ap.add_argument("--jets", type=int, default=40_000, help="jets for the image benchmark")
    ap.add_argument("--ref-jets", type=int, default=None, help="jets for the reference "
                    "(default: all)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.file)
        return
    if not args.skip_memory:  # first, so the child does not start from a large parent
        cmd = [sys.executable, __file__, "--memory-child"] + ([args.file] if args.file else [])
        subprocess.run(cmd, check=True)
        print()
    pt, eta, phi, off, what = load_jets(args.file, max(args.jets, 2 * N_EVENTS_AUG))
    n_const = np.diff(off)
    print(f"{what}: {len(off) - 1} jets, {n_const.mean():.0f} constituents/jet "
          f"({n_const.min()}-{n_const.max()}); OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    nj = min(args.jets, len(off) - 1)
    sub = (pt[: off[nj]], eta[: off[nj]], phi[: off[nj]], off[: nj + 1])
    n_ref = min(args.ref_jets or nj, nj)
    print(f"\nJet images of {nj} jets (reference on {n_ref} of them):")
    bench_images(*sub, n_ref)
    n_ev = min(N_EVENTS_AUG, (len(off) - 1) // 2)
    print()
    m = off[2 * n_ev]
    bench_plus5(pt[:m], eta[:m], phi[:m], off[: 2 * n_ev + 1])


if __name__ == "__main__":
    main()
