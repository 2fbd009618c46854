"""Jagged containers for many events' particles, held as flat arrays plus offsets.

Event ``i`` owns the slice ``offsets[i]:offsets[i + 1]`` of every flat array, so whole batches of
events are processed with vectorised numpy (segment reductions with ``np.add.reduceat`` /
``np.bincount`` over ``event_index``) and never with a Python loop over particles.
Units: GeV for momenta and energies, radians for angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def offsets_from_counts(counts) -> np.ndarray:
    """Event boundaries (n + 1,) int64 from per-event counts (n,): 0, c0, c0 + c1, ..."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def event_index(offsets: np.ndarray) -> np.ndarray:
    """Index of the owning event for each flat entry; shape (offsets[-1],), int64."""
    counts = np.diff(offsets)
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def pt_eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray):
    """Transverse momentum, pseudorapidity and azimuth of massless-or-not momenta.

    eta = asinh(pz / pT); a particle exactly along the beam (pT = 0) gets eta = +-inf.
    """
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)
    eta = np.where(pt > 0, eta, np.copysign(np.inf, pz))
    phi = np.arctan2(py, px)
    return pt, eta, phi


@dataclass
class ParticleBatch:
    """Final-state generator particles of ``n_events`` events (flat arrays of length n).

    px, py, pz, e : float64 (n,) four-momentum components [GeV]
    pid           : int32 (n,) PDG id
    charge        : float32 (n,) electric charge [e]
    offsets       : int64 (n_events + 1,) event boundaries
    """

    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    pid: np.ndarray
    charge: np.ndarray
    offsets: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.px)

    def pt_eta_phi(self):
        return pt_eta_phi(self.px, self.py, self.pz)

    def event_index(self) -> np.ndarray:
        return event_index(self.offsets)


@dataclass
class EFlowBatch:
    """Detector-level energy-flow objects of ``n_events`` events (flat arrays of length n).

    pt, eta, phi : float64 (n,) [GeV, -, rad]; objects are massless (E = pT cosh eta)
    kind         : int8 (n,) 0 = track, 1 = ECAL neutral ("photon"), 2 = HCAL neutral
                   ("neutral hadron")
    offsets      : int64 (n_events + 1,)
    """

    TRACK = 0
    PHOTON = 1
    NEUTRAL_HADRON = 2

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    kind: np.ndarray
    offsets: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.pt)

    @property
    def e(self) -> np.ndarray:
        return self.pt * np.cosh(self.eta)

    def event_index(self) -> np.ndarray:
        return event_index(self.offsets)
