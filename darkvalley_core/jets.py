"""Jets, the dijet selection and the signal/sideband regions.

Jets are anti-kT with R = 0.8 (Cacciari, Salam, Soyez, arXiv:0802.1189) clustered with the
``fastjet`` package on the detector-level energy-flow objects, as in arXiv:2312.06152 and
arXiv:2412.00198 (Delphes EFlow, CMS card). The whole batch of events is handed to fastjet's
C++ multi-event interface at once; no Python loop over events or particles.

Selection (authors' code): >= 2 jets with pT > 200 GeV; both leading jets pT > 750 GeV, |eta| < 2.0
and >= 5 constituents. m_jj is the invariant mass of the two leading jets.
Regions: SR 4700 <= m_jj < 5500 GeV; SB 4400-4700 and 5500-5800 GeV ("narrow", the default) or
4300-4700 and 5500-5900 GeV ("wide", the transfer-learning paper's choice).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ConfigError
from .particles import EFlowBatch, offsets_from_counts

JET_RADIUS = 0.8
JET_PT_MIN_GEV = 200.0
# mean EFlow objects per event above which fastjet's N2MHTLazy9 strategy is used
DENSE_EVENT_OBJECTS = 350

# Region codes stored per event (int8).
REGION_OUTSIDE = 0
REGION_SR = 1
REGION_SB = 2
REGION_NAMES = {REGION_OUTSIDE: "outside", REGION_SR: "SR", REGION_SB: "SB"}

SIGNAL_REGION_GEV = (4700.0, 5500.0)
SIDEBANDS_GEV = {
    "narrow": ((4400.0, 4700.0), (5500.0, 5800.0)),
    "wide": ((4300.0, 4700.0), (5500.0, 5900.0)),
}
DEFAULT_SIDEBANDS = "narrow"


@dataclass(frozen=True)
class Selection:
    """The dijet selection of physics.md section 4 (authors' code). pT in GeV."""

    leading_pt_min: float = 750.0
    abs_eta_max: float = 2.0
    min_constituents: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def stdout_to_stderr():
    """Send C/C++ writes on file descriptor 1 to stderr for the duration of the block.

    fastjet prints its banner on std::cout at the first clustering; a ``--json`` command must
    print exactly one JSON object on stdout, so the generators and the clustering run inside this.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class DijetBatch:
    """The two leading jets of every event that has at least two jets.

    event      : int64 (n,) index of the event in the input batch
    jet_pt, jet_eta, jet_phi, jet_m : float64 (n, 2) leading and subleading jet [GeV, -, rad, GeV]
    n_constituents : int32 (n, 2)
    mjj        : float64 (n,) dijet invariant mass [GeV]
    const_pt, const_eta, const_phi : float32 flat constituents of the 2n jets, event-major
        (jet 2i is the leading jet of row i, 2i+1 the subleading)
    const_offsets : int64 (2n + 1,)
    n_jets     : int32 (n_events_in,) number of jets above JET_PT_MIN_GEV in every input event
    """

    event: np.ndarray
    jet_pt: np.ndarray
    jet_eta: np.ndarray
    jet_phi: np.ndarray
    jet_m: np.ndarray
    n_constituents: np.ndarray
    mjj: np.ndarray
    const_pt: np.ndarray
    const_eta: np.ndarray
    const_phi: np.ndarray
    const_offsets: np.ndarray
    n_jets: np.ndarray

    def __len__(self) -> int:
        return len(self.mjj)

    def take(self, rows: np.ndarray) -> "DijetBatch":
        """The sub-batch of the given rows (boolean mask or indices), constituents included."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        jets = np.stack([2 * rows, 2 * rows + 1], axis=1).ravel()
        counts = np.diff(self.const_offsets)[jets]
        flat = _segment_gather(self.const_offsets[jets], counts)
        return DijetBatch(
            event=self.event[rows],
            jet_pt=self.jet_pt[rows],
            jet_eta=self.jet_eta[rows],
            jet_phi=self.jet_phi[rows],
            jet_m=self.jet_m[rows],
            n_constituents=self.n_constituents[rows],
            mjj=self.mjj[rows],
            const_pt=self.const_pt[flat],
            const_eta=self.const_eta[flat],
            const_phi=self.const_phi[flat],
            const_offsets=offsets_from_counts(counts),
            n_jets=self.n_jets,
        )


def concat_dijets(batches: list[DijetBatch]) -> DijetBatch:
    """One DijetBatch from consecutive batches of events (event indices follow on)."""
    if len(batches) == 1:
        return batches[0]
    first_event = np.cumsum([0] + [len(b.n_jets) for b in batches[:-1]])
    cat = lambda name: np.concatenate([getattr(b, name) for b in batches])  # noqa: E731
    counts = np.concatenate([np.diff(b.const_offsets) for b in batches])
    return DijetBatch(
        event=np.concatenate([b.event + f for b, f in zip(batches, first_event)]),
        jet_pt=cat("jet_pt"), jet_eta=cat("jet_eta"), jet_phi=cat("jet_phi"),
        jet_m=cat("jet_m"), n_constituents=cat("n_constituents"), mjj=cat("mjj"),
        const_pt=cat("const_pt"), const_eta=cat("const_eta"), const_phi=cat("const_phi"),
        const_offsets=offsets_from_counts(counts),
        n_jets=cat("n_jets"),
    )


def _segment_gather(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Flat indices start_k, start_k + 1, ..., start_k + count_k - 1 for all k, vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    seg_start = np.cumsum(counts) - counts
    return np.repeat(starts - seg_start, counts) + np.arange(total, dtype=np.int64)


def invariant_mass(pt, eta, phi, m):
    """Invariant mass of the sum of two four-vectors given as (n, 2) arrays [GeV]."""
    px = (pt * np.cos(phi)).sum(axis=1)
    py = (pt * np.sin(phi)).sum(axis=1)
    pz = (pt * np.sinh(eta)).sum(axis=1)
    e = np.sqrt(m**2 + (pt * np.cosh(eta)) ** 2).sum(axis=1)
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


@functools.lru_cache(maxsize=1)
def _fastjet_ext_usable() -> bool:
    """Whether fastjet's compiled multi-event entry point has the interface used below."""
    try:
        import fastjet._ext as ext

        return all(hasattr(ext, n) for n in ("interfacemulti", "output_wrapper")) and all(
            hasattr(ext.output_wrapper, m) for m in ("to_numpy", "to_numpy_with_constituents"))
    except ImportError:
        return False


def _antikt_fastjet_ext(px, py, pz, e, offsets, radius, pt_min):
    """anti-kT on flat numpy arrays through fastjet's compiled multi-event interface.

    This is the call ``fastjet.ClusterSequence`` makes for an awkward array of events, minus
    the awkward round trips (which cost 15% of the clustering time here). Returns
    ((jet px, py, pz, E flat over events, jet offsets per event (n_events + 1,)),
     (constituent offsets per jet (n_jets + 1,), constituent indices within each event)).
    """
    import fastjet
    import fastjet._ext

    n_events = len(offsets) - 1
    # Same jets whatever the strategy; fastjet's "Best" choice is 10% slower than N2MHTLazy9 on
    # dark-jet events (~490 objects), 4% faster on QCD (~220): measured, benchmarks/generation.py
    dense = len(px) > DENSE_EVENT_OBJECTS * max(n_events, 1)
    strategy = fastjet.N2MHTLazy9 if dense else fastjet.Best
    # the SWIG constructor takes (algorithm, R, strategy, recombination scheme)
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, radius, strategy, fastjet.E_scheme)
    with stdout_to_stderr():
        sequences = fastjet._ext.interfacemulti(px, py, pz, e, offsets[:-1], offsets[1:], jet_def)
        jets = sequences.to_numpy(pt_min)
        # the sequences must stay alive while the constituent indices are read
        const_jet_offsets, const_index, _ = sequences.to_numpy_with_constituents(pt_min)
    jet_arrays = tuple(np.asarray(a, dtype=np.float64) for a in jets[:4])
    const_jet_offsets = np.asarray(const_jet_offsets, dtype=np.int64)
    # the index buffer is allocated for every input particle; only the offsets' span is filled
    const_index = np.asarray(const_index, dtype=np.int64)[:const_jet_offsets[-1]]
    return ((*jet_arrays, np.asarray(jets[4], dtype=np.int64)), (const_jet_offsets, const_index))


def _antikt_fastjet_awkward(px, py, pz, e, offsets, radius, pt_min):
    """The same as ``_antikt_fastjet_ext`` through fastjet's public awkward interface."""
    import awkward as ak
    import fastjet
    import vector

    vector.register_awkward()
    records = ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D")
    events = ak.unflatten(records, np.diff(offsets))
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    with stdout_to_stderr():
        sequence = fastjet.ClusterSequence(events, jet_def)
        jets = sequence.inclusive_jets(min_pt=pt_min)
        const_index = sequence.constituent_index(min_pt=pt_min)
    jet_arrays = tuple(ak.to_numpy(ak.flatten(jets[f])).astype(np.float64)
                       for f in ("px", "py", "pz", "E"))
    jet_offsets = offsets_from_counts(ak.to_numpy(ak.num(jets)))
    per_jet = ak.to_numpy(ak.flatten(ak.num(const_index, axis=2))).astype(np.int64)
    return ((*jet_arrays, jet_offsets),
            (offsets_from_counts(per_jet),
             ak.to_numpy(ak.flatten(const_index, axis=None)).astype(np.int64)))


def cluster_dijets(eflow: EFlowBatch, radius: float = JET_RADIUS,
                   pt_min: float = JET_PT_MIN_GEV) -> DijetBatch:
    """Cluster every event with anti-kT and keep the two leading jets of each event.

    Input: an EFlowBatch (massless objects). Output: a DijetBatch with one row per event that
    has at least two jets of pT > pt_min.
    """
    if radius <= 0:
        raise ConfigError(f"jet radius must be positive, got {radius}")
    n_events = eflow.n_events
    px = eflow.pt * np.cos(eflow.phi)
    py = eflow.pt * np.sin(eflow.phi)
    pz = eflow.pt * np.sinh(eflow.eta)
    e = eflow.pt * np.cosh(eflow.eta)
    offsets = np.asarray(eflow.offsets, dtype=np.int64)
    cluster = _antikt_fastjet_ext if _fastjet_ext_usable() else _antikt_fastjet_awkward
    (jpx, jpy, jpz, je, jet_offsets), (ci_jet_offsets, ci_flat) = cluster(
        px, py, pz, e, offsets, radius, pt_min)
    n_jets = np.diff(jet_offsets).astype(np.int32)
    jet_pt = np.hypot(jpx, jpy)
    # Leading two jets per event: sort by (event, -pT) in one lexsort over the flat list.
    jet_event = np.repeat(np.arange(n_events), n_jets)
    order = np.lexsort((-jet_pt, jet_event))
    first = np.concatenate([[0], np.cumsum(n_jets)[:-1]]).astype(np.int64)
    keep = n_jets >= 2
    rows = np.flatnonzero(keep)
    lead = order[first[rows]]
    sub = order[first[rows] + 1]
    pick = np.stack([lead, sub], axis=1)  # (n, 2) indices into the flat jet list

    pt2 = jet_pt[pick]
    with np.errstate(divide="ignore", invalid="ignore"):
        eta2 = np.arcsinh(jpz[pick] / pt2)
    phi2 = np.arctan2(jpy[pick], jpx[pick])
    m2 = np.sqrt(np.maximum(je[pick] ** 2 - jpx[pick] ** 2 - jpy[pick] ** 2 - jpz[pick] ** 2, 0))

    # Constituents: flat index lists per jet, then gather from the event's EFlow objects.
    ci_counts_per_jet = np.diff(ci_jet_offsets)
    ci_jet_start = ci_jet_offsets[:-1]
    jets_flat = pick.ravel()
    n_const = ci_counts_per_jet[jets_flat]
    flat = _segment_gather(ci_jet_start[jets_flat], n_const)
    owner_event = np.repeat(jet_event[jets_flat], n_const)
    obj = eflow.offsets[owner_event] + ci_flat[flat]
    return DijetBatch(
        event=rows.astype(np.int64),
        jet_pt=pt2,
        jet_eta=eta2,
        jet_phi=phi2,
        jet_m=m2,
        n_constituents=n_const.reshape(-1, 2).astype(np.int32),
        mjj=invariant_mass(pt2, eta2, phi2, m2),
        const_pt=eflow.pt[obj].astype(np.float32),
        const_eta=eflow.eta[obj].astype(np.float32),
        const_phi=eflow.phi[obj].astype(np.float32),
        const_offsets=offsets_from_counts(n_const),
        n_jets=n_jets,
    )


def selection_mask(dijets: DijetBatch, selection: Selection = Selection()) -> dict[str, np.ndarray]:
    """Cumulative boolean masks of the dijet selection, one per cutflow step, over dijet rows."""
    pt_ok = (dijets.jet_pt > selection.leading_pt_min).all(axis=1)
    eta_ok = (np.abs(dijets.jet_eta) < selection.abs_eta_max).all(axis=1)
    nc_ok = (dijets.n_constituents >= selection.min_constituents).all(axis=1)
    steps = {}
    steps["two jets pT > 200 GeV"] = np.ones(len(dijets), dtype=bool)
    steps[f"both pT > {selection.leading_pt_min:g} GeV"] = pt_ok
    steps[f"both |eta| < {selection.abs_eta_max:g}"] = pt_ok & eta_ok
    steps[f"both >= {selection.min_constituents} constituents"] = pt_ok & eta_ok & nc_ok
    return steps


def assign_regions(mjj: np.ndarray, sidebands: str = DEFAULT_SIDEBANDS) -> np.ndarray:
    """Region code per event (REGION_SR, REGION_SB, REGION_OUTSIDE) from m_jj [GeV]."""
    if sidebands not in SIDEBANDS_GEV:
        raise ConfigError(f"unknown sideband choice {sidebands!r}: use {list(SIDEBANDS_GEV)}")
    mjj = np.asarray(mjj)
    region = np.full(mjj.shape, REGION_OUTSIDE, dtype=np.int8)
    lo, hi = SIGNAL_REGION_GEV
    region[(mjj >= lo) & (mjj < hi)] = REGION_SR
    for a, b in SIDEBANDS_GEV[sidebands]:
        region[(mjj >= a) & (mjj < b)] = REGION_SB
    return region


def region_masks(mjj: np.ndarray, sidebands: str = DEFAULT_SIDEBANDS) -> dict[str, np.ndarray]:
    """Boolean masks {"SR": ..., "SB": ...} for the chosen sideband definition."""
    region = assign_regions(mjj, sidebands)
    return {"SR": region == REGION_SR, "SB": region == REGION_SB}
