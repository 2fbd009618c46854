"""A parametric detector simulation modelled on the Delphes CMS card.

This is *not* Delphes. It reproduces, in vectorised numpy, the steps of the default CMS card of
Delphes 3.4 (de Favereau et al., JHEP 02 (2014) 057, arXiv:1307.6346; card physics unchanged since
3.4.1) that shape a multi-TeV jet built from the energy-flow (EFlow) list:

1. **Propagation** (module ``ParticlePropagator``): every visible particle starts at the origin.
   Neutral ones fly straight; charged ones follow a helix in B_z = 3.8 T to the cylinder of radius
   1.29 m and half-length 3.0 m. At the barrel the impact azimuth is phi - q asin(0.735 GeV / pT)
   (for |q| = 1); a charged particle with pT < 0.735 GeV never reaches the barrel radius and spirals
   to an endcap (|z| = 3 m), so its impact |eta| is >= 1.58. Efficiencies, resolutions and cells
   use this *impact* (eta, phi), as in Delphes; tracks keep their vertex direction.
2. **Tracking** (``*TrackingEfficiency``, ``*MomentumSmearing``): charged hadrons, electrons and
   muons each have the card's efficiency table in (|eta|, pT) and a log-normal pT smearing with
   relative resolution sqrt(a^2 + (b pT)^2) per |eta| region, capped at 1.0.
3. **Calorimeters** (two ``SimpleCalorimeter`` modules): photons, electrons and pi0 go to ECAL,
   K0S and Lambda split 0.3 ECAL / 0.7 HCAL, other hadrons go to HCAL (charged ones too, tracked or
   not), muons deposit nothing. Energies are summed per (event, calorimeter, eta bin, phi bin) cell
   for the whole batch at once (``np.unique`` + ``np.bincount``), smeared log-normally with the
   card's sigma(eta_cell, E) and cut at E >= E_min and E >= n_sigma sigma(E).
4. **Energy flow**: per cell, E_trk and sigma_trk^2 = sum (res E)^2 of the tracks pointing into
   it; the neutral excess E_n = max(E - E_trk, 0) becomes a massless neutral object ("photon" from
   ECAL, "neutral hadron" from HCAL) at a uniformly random point of the cell if E_n > E_min and
   E_n / sqrt(sigma_trk^2 + sigma^2) > n_sigma; otherwise the cell's tracks are rescaled in pT by
   (w_t E_trk + w_c E) / ((w_t + w_c) E_trk), w_t = 1 / sigma_trk^2, w_c = 1 / sigma^2.

The output is the card's ``EFlowMerger/eflow`` list (what its jet finders cluster): tracks
(electron and muon tracks included), ECAL neutrals and HCAL neutrals, all massless.

Simplifications and differences (for the README's honesty section):

* No pile-up, no vertex smearing, no timing, no insensitive cells (none in the default card).
* Stable dark-sector particles (|PDG id| 4900000-4999999) are dropped as invisible. The real card
  does not list them, so Delphes would give them its default HCAL energy fraction of 1.0.
* sigma_trk uses res x E_track (the 3.4.1 form), not the later "energyGuess" clamp of Delphes.
* A track is matched to at most one calorimeter (ECAL for electrons, HCAL for other charged
  particles with a non-zero HCAL fraction); this holds for every stable charged SM particle.
* A particle at exactly phi = -pi goes to the first phi bin (Delphes drops it); a charged particle
  with pz = 0 that never reaches the barrel is dropped (Delphes's position is undefined then).
* Output objects are massless (E = pT cosh eta); track energies used in the cell balance keep the
  particle mass, as Delphes's smeared tracks do.
* Random numbers come from the numpy ``Generator`` passed in (not ROOT's ``gRandom``): same
  distributions, different streams. Same generator state -> identical output.
* Not simulated: jet energy scale (not applied to R = 0.8 jets), isolation, tagging.

Units: GeV, radians, metres, tesla.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np

from .errors import ConfigError
from .particles import EFlowBatch, ParticleBatch, event_index, offsets_from_counts, pt_eta_phi

__all__ = [
    "CMS",
    "DetectorCard",
    "ecal_resolution",
    "hcal_resolution",
    "propagate_to_calorimeter",
    "simulate_detector",
    "track_efficiency",
    "track_resolution",
]

# pT [GeV] = _GEV_PER_T_M * |q| * B [T] * r [m]   (c = 299792458 m/s)
_GEV_PER_T_M = 0.299792458

# track species, used to pick the efficiency / resolution tables
_HADRON, _ELECTRON, _MUON = 0, 1, 2


@dataclass(frozen=True)
class DetectorCard:
    """Every number of the simulation, with the Delphes CMS-card defaults (arXiv:1307.6346).

    |eta| regions are written as upper edges: ``(1.5, 2.5)`` means |eta| <= 1.5, 1.5 < |eta| <= 2.5
    and nothing beyond. pT regions likewise: ``(0.1, 1.0)`` means pT <= 0.1 (efficiency 0),
    0.1 < pT <= 1.0, pT > 1.0, so an efficiency row has one entry per pT edge.
    """

    # ---- inputs ---------------------------------------------------------------------------------
    # |PDG id| that leave nothing: neutrinos and the card's neutralinos
    invisible_pids: tuple[int, ...] = (12, 14, 16, 1000022, 1000023, 1000025, 1000035, 1000045)
    dark_pid_min: int = 4900000  # |PDG id| in [dark_pid_min, dark_pid_max]: dark sector, invisible
    dark_pid_max: int = 4999999

    # ---- ParticlePropagator -------------------------------------------------------------------
    bz: float = 3.8  # solenoid field [T]
    radius: float = 1.29  # radius of the field volume, where the barrel calorimeter starts [m]
    half_length: float = 3.00  # half-length of the field volume, where the endcaps are [m]

    # ---- tracking efficiency (impact |eta| regions x pT regions) --------------------------------
    track_eff_eta_edges: tuple[float, ...] = (1.5, 2.5)  # efficiency 0 beyond |eta| = 2.5
    hadron_eff_pt_edges: tuple[float, ...] = (0.1, 1.0)
    hadron_eff: tuple[tuple[float, ...], ...] = ((0.70, 0.95), (0.60, 0.85))
    electron_eff_pt_edges: tuple[float, ...] = (0.1, 1.0, 100.0)
    electron_eff: tuple[tuple[float, ...], ...] = ((0.73, 0.95, 0.99), (0.50, 0.83, 0.90))
    muon_eff_pt_edges: tuple[float, ...] = (0.1, 1.0)
    muon_eff: tuple[tuple[float, ...], ...] = ((0.75, 0.99), (0.70, 0.98))
    # muons above 1 TeV: efficiency x exp(0.5 - 5e-4 pT) = exp(slope (pt0 - pT))
    muon_eff_falloff_pt: float = 1000.0
    muon_eff_falloff_slope: float = 5.0e-4

    # ---- track pT resolution sqrt(a^2 + (b pT)^2), relative, per impact |eta| region ------------
    track_res_eta_edges: tuple[float, ...] = (0.5, 1.5, 2.5)
    hadron_res_a: tuple[float, ...] = (0.06, 0.10, 0.25)  # arXiv:1405.6569
    hadron_res_b: tuple[float, ...] = (1.3e-3, 1.7e-3, 3.1e-3)  # [1/GeV]
    electron_res_a: tuple[float, ...] = (0.03, 0.05, 0.15)  # arXiv:1502.02701
    electron_res_b: tuple[float, ...] = (1.3e-3, 1.7e-3, 3.1e-3)
    muon_res_a: tuple[float, ...] = (0.01, 0.015, 0.025)
    muon_res_b: tuple[float, ...] = (1.0e-4, 1.5e-4, 3.5e-4)
    track_res_max: float = 1.0  # cap on the relative resolution
    track_pt_min: float = 0.1  # no track (and zero resolution) at or below this pT [GeV]

    # ---- calorimeter energy fractions (|PDG id|) -------------------------------------------------
    ecal_pids: tuple[int, ...] = (11, 22, 111)  # all energy to ECAL
    muon_pids: tuple[int, ...] = (13,)  # nothing in either calorimeter
    split_pids: tuple[int, ...] = (310, 3122)  # K0S, Lambda: shared ECAL / HCAL
    split_ecal_fraction: float = 0.3  # ... the rest (0.7) to HCAL; all other particles: HCAL

    # ---- ECAL cells ------------------------------------------------------------------------------
    ecal_eta_step: float = 0.0174  # fine eta step for |eta| < 2.958 (barrel + endcaps)
    ecal_fine_eta_max: float = 2.958  # = 170 steps
    ecal_fine_phi_bins: int = 360  # 1 degree
    ecal_forward_eta_edges: tuple[float, ...] = (
        3.125, 3.3, 3.475, 3.65, 3.825, 4.0, 4.175, 4.35, 4.525, 4.7, 5.0)  # HF
    ecal_forward_phi_bins: int = 36  # 10 degrees

    # ---- HCAL cells ------------------------------------------------------------------------------
    hcal_eta_step: float = 0.087
    hcal_fine_eta_max: float = 1.653  # = 19 steps
    hcal_fine_phi_bins: int = 72  # 5 degrees
    hcal_endcap_eta_edges: tuple[float, ...] = (
        1.74, 1.83, 1.93, 2.043, 2.172, 2.322, 2.5, 2.65, 2.868, 2.95, 3.125, 3.3, 3.475, 3.65,
        3.825, 4.0, 4.175, 4.35, 4.525)
    hcal_endcap_phi_bins: int = 36  # 10 degrees
    hcal_forward_eta_edges: tuple[float, ...] = (4.7, 5.0)
    hcal_forward_phi_bins: int = 18  # 20 degrees

    # ---- ECAL resolution (eta = cell centre, E in GeV) -------------------------------------------
    # |eta| <= 1.5:       (1 + 0.64 eta^2)            sqrt((0.008 E)^2 + 0.11^2 E + 0.40^2)
    # 1.5 < |eta| <= 2.5: (2.16 + 5.6 (|eta| - 2)^2)  sqrt(same)
    # 2.5 < |eta| <= 5:   sqrt((0.107 E)^2 + 2.08^2 E)
    ecal_res_const: float = 0.008
    ecal_res_stoch: float = 0.11
    ecal_res_noise: float = 0.40
    ecal_barrel_eta_max: float = 1.5
    ecal_barrel_eta2: float = 0.64
    ecal_endcap_eta_max: float = 2.5
    ecal_endcap_p0: float = 2.16
    ecal_endcap_p2: float = 5.6
    ecal_endcap_eta0: float = 2.0
    ecal_forward_res_const: float = 0.107
    ecal_forward_res_stoch: float = 2.08
    calo_eta_max: float = 5.0  # resolution 0 beyond (no cells there anyway)

    # ---- HCAL resolution -------------------------------------------------------------------------
    # |eta| <= 3: sqrt((0.050 E)^2 + 1.50^2 E); 3 < |eta| <= 5: sqrt((0.130 E)^2 + 2.70^2 E)
    hcal_res_const: float = 0.050
    hcal_res_stoch: float = 1.50
    hcal_central_eta_max: float = 3.0
    hcal_forward_res_const: float = 0.130
    hcal_forward_res_stoch: float = 2.70

    # ---- thresholds on the smeared cell energy and on the neutral excess ------------------------
    ecal_energy_min: float = 0.5  # [GeV]
    ecal_significance_min: float = 2.0  # E > 2 sigma
    hcal_energy_min: float = 1.0  # [GeV]
    hcal_significance_min: float = 1.0  # E > 1 sigma (~2.26 GeV)

    smear_cell_center: bool = True  # neutral objects at a uniformly random point of their cell

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) or (isinstance(value, tuple) and any(
                    isinstance(v, list) for v in value)):  # lists -> tuples: hashable card
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
                object.__setattr__(self, f.name, value)
            flat = _flatten(value)
            if not all(isinstance(v, (int, float, np.integer, np.floating)) for v in flat):
                raise ConfigError(f"DetectorCard.{f.name} must hold numbers, got {value!r}")
            if not all(math.isfinite(v) for v in flat):
                raise ConfigError(f"DetectorCard.{f.name} must be finite, got {value!r}")
        positive = ("bz", "radius", "half_length", "ecal_eta_step", "ecal_fine_eta_max",
                    "hcal_eta_step", "hcal_fine_eta_max", "ecal_fine_phi_bins",
                    "ecal_forward_phi_bins", "hcal_fine_phi_bins", "hcal_endcap_phi_bins",
                    "hcal_forward_phi_bins", "track_res_max")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"DetectorCard.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("ecal_energy_min", "hcal_energy_min", "ecal_significance_min",
                     "hcal_significance_min", "track_pt_min", "muon_eff_falloff_slope"):
            if getattr(self, name) < 0:
                raise ConfigError(f"DetectorCard.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.split_ecal_fraction <= 1.0:
            raise ConfigError("DetectorCard.split_ecal_fraction must lie in [0, 1]")
        for eta_name, pt_name, table_name in (
            ("track_eff_eta_edges", "hadron_eff_pt_edges", "hadron_eff"),
            ("track_eff_eta_edges", "electron_eff_pt_edges", "electron_eff"),
            ("track_eff_eta_edges", "muon_eff_pt_edges", "muon_eff"),
        ):
            eta_e, pt_e, table = (getattr(self, n) for n in (eta_name, pt_name, table_name))
            _check_increasing(eta_name, eta_e)
            _check_increasing(pt_name, pt_e)
            if len(table) != len(eta_e) or any(len(row) != len(pt_e) for row in table):
                raise ConfigError(
                    f"DetectorCard.{table_name} must have {len(eta_e)} rows of {len(pt_e)} "
                    f"efficiencies (one per |eta| region x pT region above the first edge)")
            if not all(0.0 <= v <= 1.0 for v in _flatten(table)):
                raise ConfigError(f"DetectorCard.{table_name}: efficiencies must lie in [0, 1]")
        _check_increasing("track_res_eta_edges", self.track_res_eta_edges)
        for name in ("hadron_res_a", "hadron_res_b", "electron_res_a", "electron_res_b",
                     "muon_res_a", "muon_res_b"):
            if len(getattr(self, name)) != len(self.track_res_eta_edges):
                raise ConfigError(f"DetectorCard.{name} needs one entry per track_res_eta_edges")
        ecal_fwd = (self.ecal_fine_eta_max,) + tuple(self.ecal_forward_eta_edges)
        hcal_fwd = ((self.hcal_fine_eta_max,) + tuple(self.hcal_endcap_eta_edges)
                    + tuple(self.hcal_forward_eta_edges))
        _check_increasing("ecal eta edges", ecal_fwd)
        _check_increasing("hcal eta edges", hcal_fwd)
        for step, top, what in ((self.ecal_eta_step, self.ecal_fine_eta_max, "ecal"),
                                (self.hcal_eta_step, self.hcal_fine_eta_max, "hcal")):
            n = top / step
            if abs(n - round(n)) > 1e-6:
                raise ConfigError(f"DetectorCard.{what}_fine_eta_max must be a whole number of "
                                  f"{what}_eta_step, got {top} / {step} = {n}")


def _flatten(value) -> list:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _check_increasing(name: str, edges) -> None:
    if len(edges) == 0 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise ConfigError(f"DetectorCard.{name} must be non-negative and strictly increasing, "
                          f"got {edges!r}")


CMS = DetectorCard()


# ------------------------------------------------------------------------------------------------
# small physics functions (vectorised, public for tests and plots)
# ------------------------------------------------------------------------------------------------

def _resolution_terms(eta, is_hcal, card: DetectorCard):
    """(prefactor, constant, stochastic, noise) with sigma(E) = p sqrt((c E)^2 + s^2 E + n^2).

    Every calorimeter formula of the card has this form; the terms depend on |eta| only, so the
    simulation evaluates them once per eta bin. Shapes broadcast; zero beyond |eta| = 5.
    """
    a = np.abs(np.asarray(eta, dtype=np.float64))
    is_hcal = np.broadcast_to(np.asarray(is_hcal, dtype=bool), a.shape)
    one, zero = np.ones(a.shape), np.zeros(a.shape)
    inside = a <= card.calo_eta_max
    e_barrel = a <= card.ecal_barrel_eta_max
    e_central = a <= card.ecal_endcap_eta_max
    pref_e = np.where(e_barrel, 1.0 + card.ecal_barrel_eta2 * a ** 2,
                      np.where(e_central, card.ecal_endcap_p0
                               + card.ecal_endcap_p2 * (a - card.ecal_endcap_eta0) ** 2, 1.0))
    c_e = np.where(e_central, card.ecal_res_const, card.ecal_forward_res_const)
    s_e = np.where(e_central, card.ecal_res_stoch, card.ecal_forward_res_stoch)
    n_e = np.where(e_central, card.ecal_res_noise, 0.0)
    h_central = a <= card.hcal_central_eta_max
    c_h = np.where(h_central, card.hcal_res_const, card.hcal_forward_res_const)
    s_h = np.where(h_central, card.hcal_res_stoch, card.hcal_forward_res_stoch)
    pref = np.where(inside, np.where(is_hcal, one, pref_e), zero)
    return (pref, np.where(is_hcal, c_h, c_e), np.where(is_hcal, s_h, s_e),
            np.where(is_hcal, zero, n_e))


def _sigma(terms, energy):
    pref, c, s, n = terms
    return pref * np.sqrt((c * energy) ** 2 + s * s * energy + n * n)


def ecal_resolution(eta: np.ndarray, energy: np.ndarray, card: DetectorCard = CMS) -> np.ndarray:
    """Absolute ECAL energy resolution sigma(E) [GeV] at pseudorapidity ``eta`` (broadcast).

    |eta| <= 1.5: (1 + 0.64 eta^2) sqrt((0.008 E)^2 + 0.11^2 E + 0.40^2); 1.5-2.5: prefactor
    2.16 + 5.6 (|eta| - 2)^2; 2.5-5: sqrt((0.107 E)^2 + 2.08^2 E) (CMS card values).
    """
    eta, energy = np.broadcast_arrays(np.asarray(eta, dtype=np.float64),
                                      np.asarray(energy, dtype=np.float64))
    return _sigma(_resolution_terms(eta, False, card), energy)


def hcal_resolution(eta: np.ndarray, energy: np.ndarray, card: DetectorCard = CMS) -> np.ndarray:
    """Absolute HCAL energy resolution sigma(E) [GeV] at pseudorapidity ``eta`` (broadcast).

    |eta| <= 3: sqrt((0.050 E)^2 + 1.50^2 E); 3-5: sqrt((0.130 E)^2 + 2.70^2 E) (CMS card).
    """
    eta, energy = np.broadcast_arrays(np.asarray(eta, dtype=np.float64),
                                      np.asarray(energy, dtype=np.float64))
    return _sigma(_resolution_terms(eta, True, card), energy)


def _species_tables(card: DetectorCard, species: int):
    if species == _HADRON:
        return (card.hadron_eff_pt_edges, card.hadron_eff, card.hadron_res_a, card.hadron_res_b)
    if species == _ELECTRON:
        return (card.electron_eff_pt_edges, card.electron_eff, card.electron_res_a,
                card.electron_res_b)
    return (card.muon_eff_pt_edges, card.muon_eff, card.muon_res_a, card.muon_res_b)


def track_efficiency(pt: np.ndarray, eta: np.ndarray, species: np.ndarray,
                     card: DetectorCard = CMS) -> np.ndarray:
    """Tracking efficiency per particle; ``species`` 0 charged hadron, 1 electron, 2 muon.

    pt [GeV] and impact eta, all shape (n,). Table lookup with the card's "<=" region edges.
    """
    pt = np.asarray(pt, dtype=np.float64)
    eta_reg = np.searchsorted(np.asarray(card.track_eff_eta_edges), np.abs(eta), side="left")
    out = np.zeros(pt.shape)
    for sp in (_HADRON, _ELECTRON, _MUON):  # three species, not a loop over particles
        sel = species == sp
        if not sel.any():
            continue
        pt_edges, table, _, _ = _species_tables(card, sp)
        padded = np.zeros((len(table) + 1, len(pt_edges) + 1))  # zeros beyond |eta| and pT <= min
        padded[:-1, 1:] = np.asarray(table, dtype=np.float64)
        pt_reg = np.searchsorted(np.asarray(pt_edges), pt[sel], side="left")
        eff = padded[eta_reg[sel], pt_reg]
        if sp == _MUON:
            over = pt[sel] > card.muon_eff_falloff_pt
            eff = np.where(over, eff * np.exp(card.muon_eff_falloff_slope
                                              * (card.muon_eff_falloff_pt - pt[sel])), eff)
        out[sel] = eff
    return out


def track_resolution(pt: np.ndarray, eta: np.ndarray, species: np.ndarray,
                     card: DetectorCard = CMS) -> np.ndarray:
    """Relative track pT resolution sqrt(a^2 + (b pT)^2) per |eta| region, capped at 1.0.

    Zero for pT <= 0.1 GeV and beyond |eta| = 2.5 (no track there). Shapes (n,).
    """
    pt = np.asarray(pt, dtype=np.float64)
    eta_reg = np.searchsorted(np.asarray(card.track_res_eta_edges), np.abs(eta), side="left")
    a = np.zeros(pt.shape)
    b = np.zeros(pt.shape)
    for sp in (_HADRON, _ELECTRON, _MUON):
        sel = species == sp
        _, _, ra, rb = _species_tables(card, sp)
        a[sel] = np.append(np.asarray(ra, dtype=np.float64), 0.0)[eta_reg[sel]]
        b[sel] = np.append(np.asarray(rb, dtype=np.float64), 0.0)[eta_reg[sel]]
    res = np.sqrt(a ** 2 + (b * pt) ** 2) * (pt > card.track_pt_min)
    return np.minimum(res, card.track_res_max)


def propagate_to_calorimeter(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
                             charge: np.ndarray, card: DetectorCard = CMS):
    """Impact point of particles from the origin on the calorimeter cylinder (R, +-L).

    Neutral particles fly straight, so the impact (eta, phi) is their own. Charged particles
    follow a helix of radius r = pT / (0.2998 |q| B) [m]. At the barrel (if 2 r >= R and
    |z| <= L there) the impact azimuth is phi - sign(q) asin(R / 2r) = phi - q asin(0.735 / pT)
    for the CMS card, and the impact z = sinh(eta) r 2 asin(R / 2r). Otherwise the particle hits
    the endcap |z| = L after turning by theta = L / (r |sinh eta|), at transverse distance
    2 r |sin(theta / 2)|.

    Inputs: arrays of shape (n,) [GeV, -, rad, e]. Returns (eta_hit, phi_hit, reached), where
    ``reached`` is False for pT ~ 0 and for charged particles that loop forever (pz = 0).
    """
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    q = np.asarray(charge, dtype=np.float64)
    eta_hit = eta.copy()
    phi_hit = phi.copy()
    reached = (pt * pt >= 1e-9) & np.isfinite(eta)
    ch = np.flatnonzero((np.abs(q) > 1e-9) & reached)
    if ch.size:
        s_eta, qc = np.sinh(eta[ch]), q[ch]
        r = pt[ch] / (_GEV_PER_T_M * np.abs(qc) * card.bz)  # helix radius [m]
        s = card.radius / (2.0 * r)
        half = np.arcsin(np.minimum(s, 1.0))  # half the turning angle at the barrel
        z = s_eta * r * 2.0 * half
        rho = np.full(ch.size, card.radius)
        endcap = np.flatnonzero((s > 1.0) | (np.abs(z) > card.half_length))
        if endcap.size:
            se = s_eta[endcap]
            with np.errstate(divide="ignore"):
                half_e = 0.5 * card.half_length / (r[endcap] * np.abs(se))  # pz = 0: inf
            looping = ~np.isfinite(half_e)
            half_e[looping] = 0.0
            chord = 2.0 * r[endcap] * np.sin(half_e)
            # a negative chord is a point on the opposite side of the origin
            half[endcap] = half_e - np.pi * (chord < 0)
            rho[endcap] = np.where(looping, 0.0, np.abs(chord))
            z[endcap] = np.copysign(card.half_length, se)
        with np.errstate(divide="ignore"):
            e_hit = np.arcsinh(z / rho)
        eta_hit[ch] = np.where(rho > 0, e_hit, np.copysign(np.inf, z))
        p_hit = phi[ch] - np.sign(qc) * half
        phi_hit[ch] = np.where(np.abs(p_hit) <= np.pi, p_hit,
                               np.mod(p_hit + np.pi, 2.0 * np.pi) - np.pi)
        reached[ch] = rho > 0
    return eta_hit, phi_hit, reached


def _lognormal(mean: np.ndarray, sigma: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Log-normal draw with the given mean and standard deviation from standard normals ``z``.

    b^2 = ln(1 + sigma^2 / mean^2), a = ln(mean) - b^2 / 2, x = exp(a + b z); 0 where mean <= 0.
    """
    out = np.zeros(mean.shape)
    pos = mean > 0
    m, s = mean[pos], sigma[pos]
    b2 = np.log1p((s / m) ** 2)
    out[pos] = np.exp(np.log(m) - 0.5 * b2 + np.sqrt(b2) * z[pos])
    return out


# ------------------------------------------------------------------------------------------------
# particle classes by |PDG id|
# ------------------------------------------------------------------------------------------------

_INVISIBLE, _TO_ECAL, _SPLIT, _IS_MUON = 1, 2, 4, 8


@functools.lru_cache(maxsize=8)
def _pid_flag_table(card: DetectorCard) -> np.ndarray:
    """uint8 flags per |PDG id| up to the largest id the card lists (about 1 MB)."""
    groups = ((card.invisible_pids, _INVISIBLE), (card.ecal_pids, _TO_ECAL),
              (card.split_pids, _SPLIT), (card.muon_pids, _IS_MUON))
    table = np.zeros(max(max(ids, default=0) for ids, _ in groups) + 1, dtype=np.uint8)
    for ids, flag in groups:
        table[np.asarray(ids, dtype=np.int64)] |= flag
    return table


def _pid_flags(abs_pid: np.ndarray, card: DetectorCard) -> np.ndarray:
    """The card's class flags of every particle (one table lookup instead of five ``isin``)."""
    table = _pid_flag_table(card)
    inside = abs_pid < len(table)
    return np.where(inside, table[np.where(inside, abs_pid, 0)], np.uint8(0))


# ------------------------------------------------------------------------------------------------
# calorimeter geometry
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _CaloGeometry:
    """Cells of one calorimeter, eta bins i = 0..n-1 = (edges[i], edges[i+1]] (Delphes
    ``lower_bound`` convention), bin i has nphi[i] equal phi bins over (-pi, pi]; local cell id
    = start[i] + phi bin."""

    edges: np.ndarray
    nphi: np.ndarray
    start: np.ndarray
    n_cells: int
    terms: tuple  # resolution terms (p, c, s, n) per eta bin, at the bin centre
    # eta lookup grid: grid cell g = [edges[0] + g step, + step) holds at most one edge, and
    # grid_base[g] = number of edges below its lower end (see _eta_bin_index)
    grid_step: float
    grid_base: np.ndarray


def _build_geometry(step: float, fine_max: float, fine_nphi: int,
                    segments: tuple[tuple[tuple[float, ...], int], ...],
                    is_hcal: bool, card: DetectorCard) -> _CaloGeometry:
    n_fine = int(round(fine_max / step))
    pos = [np.arange(1, n_fine + 1) * step]
    owner = [np.full(n_fine, fine_nphi)]
    for seg_edges, seg_nphi in segments:
        pos.append(np.asarray(seg_edges, dtype=np.float64))
        owner.append(np.full(len(seg_edges), seg_nphi))
    pos_edges = np.concatenate(pos)
    pos_nphi = np.concatenate(owner).astype(np.int64)
    # a bin between |a| < |b| takes the phi segmentation of the segment that lists |b|
    edges = np.concatenate([-pos_edges[::-1], [0.0], pos_edges])
    nphi = np.concatenate([pos_nphi[::-1], pos_nphi])
    start = np.concatenate([[0], np.cumsum(nphi)[:-1]]).astype(np.int64)
    terms = _resolution_terms(0.5 * (edges[:-1] + edges[1:]), is_hcal, card)
    grid_step = float(np.diff(edges).min()) / 2.0
    n_grid = int(np.ceil((edges[-1] - edges[0]) / grid_step)) + 2
    grid_base = np.searchsorted(edges, edges[0] + grid_step * np.arange(n_grid), side="left")
    return _CaloGeometry(edges, nphi, start, int(nphi.sum()), terms, grid_step, grid_base)


@functools.lru_cache(maxsize=8)
def _geometries(card: DetectorCard) -> tuple[_CaloGeometry, _CaloGeometry]:
    ecal = _build_geometry(card.ecal_eta_step, card.ecal_fine_eta_max, card.ecal_fine_phi_bins,
                           ((card.ecal_forward_eta_edges, card.ecal_forward_phi_bins),),
                           False, card)
    hcal = _build_geometry(card.hcal_eta_step, card.hcal_fine_eta_max, card.hcal_fine_phi_bins,
                           ((card.hcal_endcap_eta_edges, card.hcal_endcap_phi_bins),
                            (card.hcal_forward_eta_edges, card.hcal_forward_phi_bins)),
                           True, card)
    return ecal, hcal


def _eta_bin_index(geo: _CaloGeometry, eta: np.ndarray) -> np.ndarray:
    """``np.searchsorted(geo.edges, eta, side="left")``, exactly, in O(1) per value.

    A uniform grid finer than the narrowest bin gives the answer up to one edge; one comparison
    each way settles it (also when rounding puts a value on the wrong side of a grid point).
    Four times faster than the binary search over the 361 ECAL edges.
    """
    edges = geo.edges
    g = np.clip((eta - edges[0]) / geo.grid_step, 0.0, len(geo.grid_base) - 1.0)
    i = geo.grid_base[g.astype(np.int64)]
    i -= (i > 0) & (edges[np.maximum(i - 1, 0)] >= eta)
    i += (i < len(edges)) & (edges[np.minimum(i, len(edges) - 1)] < eta)
    return i


def _cell_of(geo: _CaloGeometry, eta: np.ndarray, phi: np.ndarray):
    """(inside, eta bin, phi bin, local cell id) of impact points, shapes (n,)."""
    i = _eta_bin_index(geo, eta)  # bin (edges[i-1], edges[i]]
    inside = (i >= 1) & (i <= len(geo.edges) - 1)
    eb = np.clip(i - 1, 0, len(geo.nphi) - 1)
    nphi = geo.nphi[eb]
    j = np.ceil((phi + np.pi) * (nphi / (2.0 * np.pi))).astype(np.int64)
    pb = np.clip(j, 1, nphi) - 1
    return inside, eb, pb, geo.start[eb] + pb


# ------------------------------------------------------------------------------------------------
# the simulation
# ------------------------------------------------------------------------------------------------

def _validated(particles: ParticleBatch, rng, card):
    if not isinstance(particles, ParticleBatch):
        raise ConfigError("simulate_detector needs a ParticleBatch, "
                          f"got {type(particles).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("simulate_detector needs a numpy.random.Generator "
                          "(np.random.default_rng(seed)) for reproducible smearing, "
                          f"got {type(rng).__name__}")
    if not isinstance(card, DetectorCard):
        raise ConfigError(f"card must be a DetectorCard, got {type(card).__name__}")
    arrays = {}
    for name in ("px", "py", "pz", "e", "charge"):
        a = np.asarray(getattr(particles, name))
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.number):
            raise ConfigError(f"ParticleBatch.{name} must be a 1-d numeric array, "
                              f"got shape {a.shape} dtype {a.dtype}")
        a = a.astype(np.float64, copy=False)
        if not np.isfinite(a).all():
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ConfigError(f"ParticleBatch.{name} holds NaN or inf (first at index {bad}); "
                              "check the generator output")
        arrays[name] = a
    pid = np.asarray(particles.pid)
    if pid.ndim != 1 or not np.issubdtype(pid.dtype, np.integer):
        raise ConfigError(f"ParticleBatch.pid must be a 1-d integer array, got {pid.dtype}")
    offsets = np.asarray(particles.offsets)
    if offsets.ndim != 1 or offsets.size < 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise ConfigError("ParticleBatch.offsets must be a 1-d integer array of length "
                          "n_events + 1 starting at 0")
    n = len(arrays["px"])
    lengths = {k: len(v) for k, v in arrays.items()} | {"pid": len(pid)}
    if len(set(lengths.values())) != 1:
        raise ConfigError(f"ParticleBatch arrays have mismatched lengths {lengths}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise ConfigError(f"ParticleBatch.offsets must rise from 0 to the number of particles "
                          f"({n}) without decreasing; got first {offsets[0]}, last {offsets[-1]}")
    if (arrays["e"] < 0).any():
        raise ConfigError("ParticleBatch.e holds negative energies")
    return arrays, pid.astype(np.int64), offsets


def _empty(n_events: int) -> EFlowBatch:
    return EFlowBatch(pt=np.zeros(0), eta=np.zeros(0), phi=np.zeros(0),
                      kind=np.zeros(0, dtype=np.int8),
                      offsets=np.zeros(n_events + 1, dtype=np.int64))


def simulate_detector(particles: ParticleBatch, rng: np.random.Generator,
                      card: DetectorCard = CMS) -> EFlowBatch:
    """EFlow objects of every event of ``particles`` (see the module docstring for the physics).

    Parameters
    ----------
    particles : ParticleBatch
        Final-state generator particles of n_events events, flat arrays of length n [GeV],
        offsets (n_events + 1,).
    rng : numpy.random.Generator
        Source of every random number (efficiencies, smearing, positions inside cells); the same
        generator state gives identical output.
    card : DetectorCard
        Detector parameters; defaults to the CMS card values (``CMS``).

    Returns
    -------
    EFlowBatch
        Per event: tracks (kind 0, in input order), then ECAL neutrals (kind 1), then HCAL
        neutrals (kind 2); pt/eta/phi float64 (m,), massless; offsets (n_events + 1,).

    Raises
    ------
    ConfigError
        Mismatched array lengths, NaN/inf, bad offsets, negative energies, wrong rng or card.
    """
    arrays, pid, offsets = _validated(particles, rng, card)
    n_events = len(offsets) - 1
    px, py, pz, e, charge = (arrays[k] for k in ("px", "py", "pz", "e", "charge"))
    if len(px) == 0:
        return _empty(n_events)

    # ---- visible particles ------------------------------------------------------------------
    apid = np.abs(pid)
    flags = _pid_flags(apid, card)
    visible = (flags & _INVISIBLE) == 0
    visible &= ~((apid >= card.dark_pid_min) & (apid <= card.dark_pid_max))
    visible &= px * px + py * py >= 1e-9
    evt = event_index(offsets)
    if not visible.all():
        keep = np.flatnonzero(visible)
        evt, px, py, pz, e = evt[keep], px[keep], py[keep], pz[keep], e[keep]
        charge, apid, flags = charge[keep], apid[keep], flags[keep]
    pt, eta, phi = pt_eta_phi(px, py, pz)
    mass2 = np.maximum(e * e - (px * px + py * py + pz * pz), 0.0)

    eta_hit, phi_hit, reached = propagate_to_calorimeter(pt, eta, phi, charge, card)

    # ---- tracks ----------------------------------------------------------------------------------
    cand = np.flatnonzero((np.abs(charge) > 1e-9) & reached)
    species = np.full(cand.size, _HADRON, dtype=np.int64)
    species[apid[cand] == 11] = _ELECTRON
    species[(flags[cand] & _IS_MUON) != 0] = _MUON
    eff = track_efficiency(pt[cand], eta_hit[cand], species, card)
    tracked = rng.random(cand.size) < eff
    trk = cand[tracked]
    trk_species = species[tracked]
    res = track_resolution(pt[trk], eta_hit[trk], trk_species, card)
    trk_pt = _lognormal(pt[trk], res * pt[trk], rng.standard_normal(trk.size))
    trk_e = np.sqrt((trk_pt * np.cosh(eta[trk])) ** 2 + mass2[trk])

    # ---- energy fractions ---------------------------------------------------------------------
    f_ecal = np.zeros(pt.size)
    f_ecal[(flags & _TO_ECAL) != 0] = 1.0
    split = (flags & _SPLIT) != 0
    f_ecal[split] = card.split_ecal_fraction
    f_hcal = 1.0 - f_ecal
    f_hcal[(flags & _IS_MUON) != 0] = 0.0
    f_ecal[~reached] = 0.0
    f_hcal[~reached] = 0.0

    # ---- cells: one integer key per (event, calorimeter, eta bin, phi bin) -----------------------
    ecal_geo, hcal_geo = _geometries(card)
    n_cells = ecal_geo.n_cells + hcal_geo.n_cells
    keys, energies = [], []
    cell_meta = []  # per deposit: calorimeter, eta bin, phi bin
    for calo, geo, frac in ((0, ecal_geo, f_ecal), (1, hcal_geo, f_hcal)):
        dep = np.flatnonzero(frac > 0)
        inside, eb, pb, local = _cell_of(geo, eta_hit[dep], phi_hit[dep])
        dep, eb, pb, local = dep[inside], eb[inside], pb[inside], local[inside]
        keys.append(evt[dep] * n_cells + calo * ecal_geo.n_cells + local)
        energies.append(e[dep] * frac[dep])
        cell_meta.append((np.full(dep.size, calo, dtype=np.int8), eb, pb))
    # tracks enter the cell balance of the calorimeter they deposit in (ECAL for electrons,
    # HCAL for the rest); muon tracks and tracks with zero fractions pass straight through
    trk_calo = np.where(f_ecal[trk] > 0, 0, np.where(f_hcal[trk] > 0, 1, -1))
    trk_in, trk_lost = [], []
    for calo, geo in ((0, ecal_geo), (1, hcal_geo)):
        t = np.flatnonzero(trk_calo == calo)
        inside, eb, pb, local = _cell_of(geo, eta_hit[trk[t]], phi_hit[trk[t]])
        trk_lost.append(t[~inside])  # outside every cell: Delphes drops the track (not at CMS)
        t, eb, pb, local = t[inside], eb[inside], pb[inside], local[inside]
        trk_in.append(t)
        keys.append(evt[trk[t]] * n_cells + calo * ecal_geo.n_cells + local)
        energies.append(np.zeros(t.size))
        cell_meta.append((np.full(t.size, calo, dtype=np.int8), eb, pb))
    trk_in = np.concatenate(trk_in)
    n_dep = keys[0].size + keys[1].size

    # np.unique by hand: one unstable argsort, cells in increasing key order
    all_keys = np.concatenate(keys)
    order = np.argsort(all_keys)
    sorted_keys = all_keys[order]
    new_cell = np.empty(sorted_keys.size, dtype=bool)
    new_cell[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_cell[1:])
    cells = sorted_keys[new_cell]
    first = order[new_cell]  # one member of each cell (all members share eta / phi bin)
    inv = np.empty(all_keys.size, dtype=np.int64)
    inv[order] = np.cumsum(new_cell) - 1
    n_c = cells.size
    cell_true = np.bincount(inv, weights=np.concatenate(energies), minlength=n_c)
    is_h = np.concatenate([m[0] for m in cell_meta])[first] == 1
    c_eb = np.concatenate([m[1] for m in cell_meta])[first]
    c_pb = np.concatenate([m[2] for m in cell_meta])[first]
    c_evt = cells // n_cells
    eta_lo, eta_hi, nphi = np.empty(n_c), np.empty(n_c), np.empty(n_c, dtype=np.int64)
    terms = tuple(np.empty(n_c) for _ in range(4))  # resolution terms of each cell
    for sel, geo in ((~is_h, ecal_geo), (is_h, hcal_geo)):
        eb = c_eb[sel]
        eta_lo[sel], eta_hi[sel], nphi[sel] = geo.edges[eb], geo.edges[eb + 1], geo.nphi[eb]
        for out, per_bin in zip(terms, geo.terms):
            out[sel] = per_bin[eb]
    dphi = 2.0 * np.pi / nphi
    phi_lo = -np.pi + c_pb * dphi

    # smear the summed energy (resolution at the cell centre), then cut on the smeared energy
    e_min = np.where(is_h, card.hcal_energy_min, card.ecal_energy_min)
    s_min = np.where(is_h, card.hcal_significance_min, card.ecal_significance_min)
    cell_e = _lognormal(cell_true, _sigma(terms, cell_true), rng.standard_normal(n_c))
    sigma = _sigma(terms, cell_e)
    cell_e = np.where((cell_e < e_min) | (cell_e < s_min * sigma), 0.0, cell_e)

    # ---- energy flow -----------------------------------------------------------------------------
    t_cell = inv[n_dep:]  # cell of each track, in trk_in order
    t_e = trk_e[trk_in]
    e_trk = np.bincount(t_cell, weights=t_e, minlength=n_c)
    s2_trk = np.bincount(t_cell, weights=(res[trk_in] * t_e) ** 2, minlength=n_c)
    e_neu = np.maximum(cell_e - e_trk, 0.0)
    denom = np.sqrt(s2_trk + sigma ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        signif = np.where(denom > 0, e_neu / denom, 0.0)
        emit = (e_neu > e_min) & (signif > s_min)
        w_t = np.where(s2_trk > 0, 1.0 / s2_trk, 0.0)
        w_c = np.where(sigma > 0, 1.0 / sigma ** 2, 0.0)
        best = (w_t * e_trk + w_c * cell_e) / (w_t + w_c)
        factor = np.where(~emit & (e_trk > 0) & (w_t + w_c > 0), best / e_trk, 1.0)

    trk_factor = np.ones(trk.size)
    trk_factor[trk_in] = factor[t_cell]
    trk_alive = np.ones(trk.size, dtype=bool)
    trk_alive[np.concatenate(trk_lost)] = False

    # ---- neutral objects at a random point inside their cell ---------------------------------
    nc = np.flatnonzero(emit)
    if card.smear_cell_center:
        u = rng.random((2, nc.size))
    else:
        u = np.full((2, nc.size), 0.5)
    n_eta = eta_lo[nc] + u[0] * (eta_hi[nc] - eta_lo[nc])
    n_phi = phi_lo[nc] + u[1] * dphi[nc]
    n_pt = e_neu[nc] / np.cosh(n_eta)
    n_kind = np.where(is_h[nc], EFlowBatch.NEUTRAL_HADRON, EFlowBatch.PHOTON)

    # ---- assemble: per event tracks (input order), then ECAL, then HCAL neutrals -------------
    # tracks are already in event order and neutral cells in (event, calorimeter) key order, so
    # each object's place follows from per-event counts (no sort)
    t_sel = trk_alive & (trk_pt * trk_factor > 0)
    t_idx = trk[t_sel]
    t_evt = evt[t_idx]
    n_sel = n_pt > 0
    n_evt = c_evt[nc][n_sel]
    cnt_t = np.bincount(t_evt, minlength=n_events)
    cnt_n = np.bincount(n_evt, minlength=n_events)
    offsets_out = offsets_from_counts(cnt_t + cnt_n)
    first_t = np.cumsum(cnt_t) - cnt_t
    first_n = np.cumsum(cnt_n) - cnt_n
    pos_t = offsets_out[t_evt] + np.arange(t_idx.size) - first_t[t_evt]
    pos_n = offsets_out[n_evt] + cnt_t[n_evt] + np.arange(n_evt.size) - first_n[n_evt]
    m = int(offsets_out[-1])
    out_pt, out_eta, out_phi = np.empty(m), np.empty(m), np.empty(m)
    out_kind = np.empty(m, dtype=np.int8)
    out_pt[pos_t], out_pt[pos_n] = (trk_pt * trk_factor)[t_sel], n_pt[n_sel]
    out_eta[pos_t], out_eta[pos_n] = eta[t_idx], n_eta[n_sel]
    out_phi[pos_t], out_phi[pos_n] = phi[t_idx], n_phi[n_sel]
    out_kind[pos_t], out_kind[pos_n] = EFlowBatch.TRACK, n_kind[n_sel]
    return EFlowBatch(pt=out_pt, eta=out_eta, phi=out_phi, kind=out_kind, offsets=offsets_out)
