"""Training throughput and accuracy, against a plain fp32 PyTorch step in the same run.

At 25, 50 and 75 pixels:
  * reference: a plain fp32 eager training step (forward, BCE, backward, Adam) of the same
    network on random tensors already in memory;
  * the project's loop: ``trainer.fit`` (bf16 autocast + channels-last on a capable CPU) fed by
    ``augment.AugmentedBatches`` making +5 rotated images of real demo-preset events on the fly;
  * their ratio, the share of the loop's time spent making images, FLOPs per event and the
    machine's fp32 matmul rate.
Then the supervised AUC of ID-10 vs QCD with bf16 and with fp32 (must agree within 0.01), and,
with ``--curve``, the wall time of a demo-preset CWoLa curve (6 injections x 1 run) without and
with +5 rotation.

Usage: python benchmarks/training.py [--curve] [--events 4096] [--preset demo]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from darkvalley_core import datasets as ds  # noqa: E402
from darkvalley_core.augment import AugmentedBatches  # noqa: E402
from darkvalley_core.models import CNNConfig, DijetCNN, event_bce_loss, flops_per_event  # noqa
from darkvalley_core.trainer import TrainConfig, fit, resolve_precision  # noqa: E402
from darkvalley_core.training import StudyConfig, load_samples, run_study  # noqa: E402


def matmul_flops() -> float:
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    a @ b
    t0 = time.perf_counter()
    n = 10
    for _ in range(n):
        a @ b
    return n * 2 * 2048**3 / (time.perf_counter() - t0)


def reference_rate(res: int, n_steps: int = 6, batch: int = 512) -> float:
    """Plain fp32 eager step on random tensors: the reference."""
    torch.manual_seed(0)
    model = DijetCNN(CNNConfig(resolution=res))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 2, res, res)
    y = (torch.rand(batch) > 0.5).float()

    def step():
        opt.zero_grad()
        _, logits = model(x, return_logits=True)
        event_bce_loss(logits, y).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    return n_steps * batch / (time.perf_counter() - t0)


def project_rate(samples, events, res: int, copies: int = 5):
    """(events/s of fit on +copies rotated real images, share of time making images)."""
    pt, eta, phi, off = ds.constituents_of(samples, events)
    batches = AugmentedBatches(pt, eta, phi, off, events.label, n_copies=copies,
                               method="rotate", resolution=res, batch_size=512, seed=0,
                               event_ids=events.keys())
    # Time to make the images alone (one pass over the augmented set).
    t0 = time.perf_counter()
    n_items = 0
    for imgs, _, _ in batches:
        n_items += len(imgs)
    t_images = time.perf_counter() - t0
    val = [(batches.batch(np.arange(min(512, batches.n_items)))[0],
            events.label[:min(512, batches.n_items)] * 0 + 1, None)]
    model = DijetCNN(CNNConfig(resolution=res), seed=0)
    cfg = TrainConfig(max_epochs=1, patience=1, compute_val_auc=False)
    result = fit(model, lambda epoch: iter(batches), val, cfg)
    t_fit = result.elapsed_s
    return n_items / t_fit, t_images / t_fit, result.precision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1024, help="real events (x6 with +5)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--curve", action="store_true", help="also time demo CWoLa curves")
    ap.add_argument("--skip-auc", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}")
    flops = matmul_flops()
    print(f"fp32 matmul: {flops / 1e9:.0f} GFLOP/s")
    config = StudyConfig(preset=args.preset)
    sig, bkg = load_samples(config)
    samples = {ds.SIGNAL: sig, ds.BACKGROUND: bkg}
    pools = ds.make_pools(sig, bkg)
    ts = ds.supervised_dataset(sig, bkg, pools, seed=0)
    events = ts.train.take(np.arange(min(args.events, len(ts.train))))
    print(f"{'res':>4} {'ref fp32 ev/s':>14} {'loop ev/s':>10} {'ratio':>6} {'images share':>13} "
          f"{'GFLOP/event':>12} {'loop GFLOP/s':>13} {'precision':>9}")
    for res in (25, 50, 75):
        ref = reference_rate(res)
        rate, share, precision = project_rate(samples, events, res)
        f = flops_per_event(CNNConfig(resolution=res))
        print(f"{res:>4} {ref:14.0f} {rate:10.0f} {rate / ref:6.2f} {share:13.1%} "
              f"{f / 1e9:12.3f} {3 * f * rate / 1e9:13.0f} {precision:>9}", flush=True)
    print("targets: ratio >= 2 at 25x25; images share < 10%")

    if not args.skip_auc:
        aucs = {}
        for precision in ("bf16", "fp32"):
            t0 = time.perf_counter()
            r = run_study(StudyConfig(method="supervised", preset=args.preset, runs=1,
                                      precision=precision))
            aucs[precision] = r["runs"][0]["auc"]
            print(f"supervised ID-10 vs QCD, {precision}: AUC {aucs[precision]:.4f} "
                  f"({r['runs'][0]['epochs']} epochs, {time.perf_counter() - t0:.0f} s, "
                  f"{r['counts']['train']} training events)", flush=True)
        print(f"|AUC(bf16) - AUC(fp32)| = {abs(aucs['bf16'] - aucs['fp32']):.4f} "
              "(target < 0.01)")

    if args.curve:
        for augment in ("none", "rotation"):
            t0 = time.perf_counter()
            zs = []
            for inj in (0, 2, 4, 6, 8, 10):
                r = run_study(StudyConfig(method="cwola", preset=args.preset, runs=1,
                                          injection=float(inj), augment=augment, copies=5))
                zs.append(r["summary"]["working_points"]["0.01"]["z_ideal"]["mean"])
            print(f"demo CWoLa curve, 6 injections x 1 run, augmentation {augment}: "
                  f"{time.perf_counter() - t0:.0f} s; Z(eps_b=1%) = "
                  + ", ".join(f"{z:.2f}" for z in zs), flush=True)
    print(f"precision used by 'auto' here: {resolve_precision('auto', torch.device('cpu'))}")


if __name__ == "__main__":
    main()
