"""Signal injection, resampling and splits: the "data" a weakly supervised search trains on.

Physics (physics.md section 5; arXiv:2312.06152, arXiv:2412.00198):

* Expected background in a region: B = sigma x efficiency x L (sigma from Pythia, efficiency
  from the generated sample, L in fb^-1).
* The user chooses the *initial significance* S/sqrt(B) in the signal region before any cut.
  Then N_S(SR) = (S/sqrt(B)) x sqrt(B_SR) and N_S(SB) = N_S(SR) x eps_S(SB) / eps_S(SR), with the
  signal efficiencies measured on the signal sample.
* CWoLa "data": B_SR + N_S(SR) events labelled 1 and B_SB + N_S(SB) labelled 0, drawn without
  replacement from the generated pools with a seed; every repetition draws afresh.
* The SR pools of both samples are first split, with a fixed seed that does not depend on the
  repetition, into a *data* half and an independent *test* half: the pure-signal and
  pure-background SR test samples set the working point (background efficiency), measure the
  signal efficiency and the true-label AUC, and are never trained on.
* The 80/20 training/validation split is made before any augmentation, per label.

Every selection is a set of row indices into the two event files, so nothing here copies
constituents; images are made later, per batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ConfigError, InsufficientEventsError
from .jets import REGION_SB, REGION_SR

SIGNAL, BACKGROUND = 0, 1  # source codes: which file an event comes from
TEST_SPLIT_STREAM = 7_001  # seeds the fixed data/test split of the SR pools
DEFAULT_TEST_FRACTION = 0.5
VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class InjectionPlan:
    """How many events of each kind go into one CWoLa dataset (counts are integers)."""

    injection: float         # initial S/sqrt(B) in the SR
    luminosity_fb: float
    sidebands: str
    b_sr_expected: float     # sigma x eff x L (before rounding)
    b_sb_expected: float
    b_sr: int
    b_sb: int
    s_sr: int
    s_sb: int
    signal_eff_sr: float
    signal_eff_sb: float

    def to_dict(self) -> dict:
        return asdict(self)


def region_efficiency(sample, region: int, sidebands: str = "narrow") -> float:
    """Fraction of *generated* events that were selected into ``region``."""
    return float(np.count_nonzero(sample.region(sidebands) == region) / sample.n_generated)


def expected_background(background, luminosity_fb: float, sidebands: str = "narrow"):
    """(B_SR, B_SB) expected at ``luminosity_fb`` [fb^-1] from sigma x efficiency x L."""
    if luminosity_fb <= 0:
        raise ConfigError(f"the luminosity must be positive, got {luminosity_fb}")
    sigma_fb = background.sigma_pb * 1000.0
    return (sigma_fb * region_efficiency(background, REGION_SR, sidebands) * luminosity_fb,
            sigma_fb * region_efficiency(background, REGION_SB, sidebands) * luminosity_fb)


def plan_injection(signal, background, injection: float, luminosity_fb: float,
                   sidebands: str = "narrow") -> InjectionPlan:
    """The numbers of physics.md section 5 for one injected initial significance."""
    if not np.isfinite(injection) or injection < 0:
        raise ConfigError(f"the injected S/sqrt(B) must be >= 0, got {injection}")
    b_sr, b_sb = expected_background(background, luminosity_fb, sidebands)
    eff_sr = region_efficiency(signal, REGION_SR, sidebands)
    eff_sb = region_efficiency(signal, REGION_SB, sidebands)
    if eff_sr <= 0:
        raise InsufficientEventsError(f"{signal.path}: no signal event in the signal region")
    s_sr = injection * math.sqrt(b_sr)
    s_sb = s_sr * eff_sb / eff_sr
    return InjectionPlan(injection=float(injection), luminosity_fb=float(luminosity_fb),
                         sidebands=sidebands, b_sr_expected=b_sr, b_sb_expected=b_sb,
                         b_sr=int(round(b_sr)), b_sb=int(round(b_sb)), s_sr=int(round(s_sr)),
                         s_sb=int(round(s_sb)), signal_eff_sr=eff_sr, signal_eff_sb=eff_sb)


@dataclass
class Pools:
    """Row indices of the events available for data and for testing, per file and region."""

    sig_sr_data: np.ndarray
    sig_sb: np.ndarray
    bkg_sr_data: np.ndarray
    bkg_sb: np.ndarray
    sig_sr_test: np.ndarray
    bkg_sr_test: np.ndarray

    def sizes(self) -> dict:
        return {k: len(v) for k, v in self.__dict__.items()}


def make_pools(signal, background, sidebands: str = "narrow",
               test_fraction: float = DEFAULT_TEST_FRACTION) -> Pools:
    """Split each SR pool into data and test halves with a fixed seed (same for every run)."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(TEST_SPLIT_STREAM)

    def split(rows):
        rows = rng.permutation(rows)
        n_test = int(round(test_fraction * len(rows)))
        return np.sort(rows[n_test:]), np.sort(rows[:n_test])

    s_reg, b_reg = signal.region(sidebands), background.region(sidebands)
    sig_data, sig_test = split(np.flatnonzero(s_reg == REGION_SR))
    bkg_data, bkg_test = split(np.flatnonzero(b_reg == REGION_SR))
    return Pools(sig_sr_data=sig_data, sig_sb=np.flatnonzero(s_reg == REGION_SB),
                 bkg_sr_data=bkg_data, bkg_sb=np.flatnonzero(b_reg == REGION_SB),
                 sig_sr_test=sig_test, bkg_sr_test=bkg_test)


@dataclass
class LabelledEvents:
    """A set of events from the two files: source (SIGNAL/BACKGROUND), row in that file,
    training label, and the truth (1 for a signal event)."""

    source: np.ndarray
    row: np.ndarray
    label: np.ndarray
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def take(self, idx) -> "LabelledEvents":
        return LabelledEvents(self.source[idx], self.row[idx], self.label[idx], self.truth[idx])

    def keys(self) -> np.ndarray:
        """A unique, stable id per event (source and row): keys augmentation streams."""
        return self.row.astype(np.int64) * 2 + self.source


@dataclass
class TrainingSet:
    """One repetition's training and validation events plus the independent test samples."""

    train: LabelledEvents
    validation: LabelledEvents
    data_sr: LabelledEvents      # every SR event of the "data" (train + validation)
    data_sb: LabelledEvents
    test_signal_sr: np.ndarray   # rows in the signal file
    test_background_sr: np.ndarray
    plan: InjectionPlan | None
    counts: dict


def _draw(rng, pool: np.ndarray, n: int, what: str) -> np.ndarray:
    if n > len(pool):
        raise InsufficientEventsError(
            f"{what}: {n} events requested but the pool holds {len(pool)} "
            f"({n - len(pool)} missing); generate a larger sample or lower the luminosity "
            f"or the injected signal")
    return np.sort(rng.choice(pool, size=n, replace=False))


def _events(source, rows, label, truth) -> LabelledEvents:
    n = len(rows)
    return LabelledEvents(np.full(n, source, np.int16), np.asarray(rows, np.int64),
                          np.full(n, label, np.float32), np.full(n, truth, np.int8))


def _concat(*parts: LabelledEvents) -> LabelledEvents:
    return LabelledEvents(*(np.concatenate([getattr(p, f) for p in parts])
                            for f in ("source", "row", "label", "truth")))


def split_train_validation(events: LabelledEvents, rng,
                           fraction: float = VALIDATION_FRACTION):
    """80/20 split per label (so both keep the label mix), before any augmentation."""
    val_idx = []
    for lab in np.unique(events.label):
        idx = rng.permutation(np.flatnonzero(events.label == lab))
        val_idx.append(idx[: int(round(fraction * len(idx)))])
    val = np.zeros(len(events), bool)
    val[np.concatenate(val_idx) if val_idx else []] = True
    return events.take(np.flatnonzero(~val)), events.take(np.flatnonzero(val))


def cwola_dataset(signal, background, pools: Pools, injection: float, luminosity_fb: float,
                  seed: int, sidebands: str = "narrow") -> TrainingSet:
    """SR (label 1) vs SB (label 0) "data" with injected signal, freshly drawn for ``seed``."""
    plan = plan_injection(signal, background, injection, luminosity_fb, sidebands)
    rng = np.random.default_rng([seed, 11])
    bsr = _draw(rng, pools.bkg_sr_data, plan.b_sr, "background in the SR")
    bsb = _draw(rng, pools.bkg_sb, plan.b_sb, "background in the SB")
    ssr = _draw(rng, pools.sig_sr_data, plan.s_sr, "signal in the SR")
    ssb = _draw(rng, pools.sig_sb, plan.s_sb, "signal in the SB")
    data_sr = _concat(_events(BACKGROUND, bsr, 1, 0), _events(SIGNAL, ssr, 1, 1))
    data_sb = _concat(_events(BACKGROUND, bsb, 0, 0), _events(SIGNAL, ssb, 0, 1))
    train, val = split_train_validation(_concat(data_sr, data_sb), rng)
    return TrainingSet(train=train, validation=val, data_sr=data_sr, data_sb=data_sb,
                       test_signal_sr=pools.sig_sr_test, test_background_sr=pools.bkg_sr_test,
                       plan=plan, counts={"B_SR": plan.b_sr, "B_SB": plan.b_sb,
                                          "S_SR": plan.s_sr, "S_SB": plan.s_sb,
                                          "train": len(train), "validation": len(val),
                                          "test_signal": len(pools.sig_sr_test),
                                          "test_background": len(pools.bkg_sr_test)})


def supervised_dataset(signal, background, pools: Pools, seed: int,
                       n_per_class: int | None = None) -> TrainingSet:
    """Pure signal (label 1) vs pure background (label 0) in the SR: full supervision."""
    n = n_per_class or min(len(pools.sig_sr_data), len(pools.bkg_sr_data))
    rng = np.random.default_rng([seed, 13])
    sig = _events(SIGNAL, _draw(rng, pools.sig_sr_data, n, "signal in the SR"), 1, 1)
    bkg = _events(BACKGROUND, _draw(rng, pools.bkg_sr_data, n, "background in the SR"), 0, 0)
    data = _concat(bkg, sig)
    train, val = split_train_validation(data, rng)
    return TrainingSet(train=train, validation=val, data_sr=data, data_sb=_events(BACKGROUND, [], 0, 0),
                       test_signal_sr=pools.sig_sr_test, test_background_sr=pools.bkg_sr_test,
                       plan=None, counts={"signal": n, "background": n, "train": len(train),
                                          "validation": len(val),
                                          "test_signal": len(pools.sig_sr_test),
                                          "test_background": len(pools.bkg_sr_test)})


def constituents_of(samples: dict, events: LabelledEvents):
    """Flat constituents (pt, eta, phi, offsets) of ``events``, in the order of ``events``.

    ``samples`` maps SIGNAL / BACKGROUND to EventSamples read with constituents. Vectorised:
    one gather per file, then one reordering of the jets back into event order.
    """
    from .images import gather_events

    n = len(events)
    counts = np.zeros(2 * n, np.int64)
    jet_start = np.zeros(2 * n, np.int64)
    pts, etas, phis = [], [], []
    base = 0
    for source, sample in samples.items():
        sel = np.flatnonzero(events.source == source)
        if not len(sel):
            continue
        const = sample.constituents
        idx, off = gather_events(const["offsets"], events.row[sel])
        pts.append(const["pt"][idx])
        etas.append(const["eta"][idx])
        phis.append(const["phi"][idx])
        jets = np.stack([2 * sel, 2 * sel + 1], axis=1).ravel()
        counts[jets] = np.diff(off)
        jet_start[jets] = off[:-1] + base
        base += len(idx)
    offsets = np.zeros(2 * n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    if not pts:
        empty = np.zeros(0, np.float32)
        return empty, empty, empty, offsets
    order = np.arange(offsets[-1], dtype=np.int64) + np.repeat(jet_start - offsets[:-1], counts)
    return (np.concatenate(pts)[order], np.concatenate(etas)[order],
            np.concatenate(phis)[order], offsets)
