"""The 14 dark-valley benchmarks and the Pythia 8 settings each one produces.

Signal: p p -> Z' -> q_D q_D-bar at sqrt(s) = 13 TeV; the dark quarks shower and hadronise in a
confining SU(3) dark sector with three dark flavours; dark mesons decay promptly back to d d-bar.
Mass relations (Albouy et al., arXiv:2203.09503; used in arXiv:2312.06152 and arXiv:2412.00198):

    m_rho_D / Lambda_D = sqrt(5.76 + 1.5 (m_pi_D / Lambda_D)^2)
    m_q (current)      = Lambda_D (m_pi_D / Lambda_D / 5.5)^2
    m_q (constituent)  = Lambda_D + m_q (current)   -> Pythia's dark-quark mass

Decay scenarios: ID (indirect), m_pi/Lambda = 1.0, rho_D -> pi_D pi_D and pi_D -> d d-bar;
DD (direct), m_pi/Lambda = 1.8, rho_D -> d d-bar and pi_D -> d d-bar (rho -> pi pi is closed).
All masses in GeV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UnknownBenchmarkError

LAMBDAS_GEV = (1, 5, 10, 20, 30, 40, 50)
DECAY_MODES = ("ID", "DD")
DEFAULT_BENCHMARK = "ID-10"
PI_OVER_LAMBDA = {"ID": 1.0, "DD": 1.8}

ZPRIME_PDG = 4900023
DARK_QUARKS = (4900101, 4900102, 4900103)
N_DARK_FLAVOURS = 3
SQRT_S_GEV = 13000.0


def dark_pion_id(i: int, j: int) -> int:
    """Signed Pythia id of the dark pseudoscalar made of dark flavours (i, j-bar), i, j in 1..3.

    Pythia numbers dark mesons 49000ab1 (pseudoscalar) / 49000ab3 (vector) with a >= b; the
    (i, j) state with i < j is the antiparticle of (j, i).
    """
    a, b = max(i, j), min(i, j)
    code = 4900000 + 100 * a + 10 * b + 1
    return code if i >= j else -code


def dark_meson_ids(spin: int) -> tuple[int, ...]:
    """Positive ids of all dark mesons of one spin (1 = pseudoscalar, 3 = vector), 3 flavours."""
    return tuple(
        4900000 + 100 * a + 10 * b + spin
        for a in range(1, N_DARK_FLAVOURS + 1)
        for b in range(1, a + 1)
    )


def vector_to_pion_pairs(vector_id: int) -> list[tuple[int, int]]:
    """Flavour-conserving decays rho_D(i j-bar) -> pi_D(i k-bar) pi_D(k j-bar) into two
    *different* pseudoscalars (a vector cannot decay to two identical spin-0 bosons).

    Diagonal vectors follow the authors' choice: every off-diagonal pion-antipion pair
    (4900113 -> 4900211 anti-4900211, 4900311 anti-4900311, 4900321 anti-4900321).
    """
    a, b = (vector_id // 100) % 10, (vector_id // 10) % 10
    if a == b:
        return [
            (dark_pion_id(x, y), dark_pion_id(y, x))
            for x in range(1, N_DARK_FLAVOURS + 1)
            for y in range(1, x)
        ]
    return [(dark_pion_id(a, k), dark_pion_id(k, b)) for k in range(1, N_DARK_FLAVOURS + 1)]


@dataclass(frozen=True)
class Benchmark:
    """One dark-valley model. Masses and widths in GeV.

    decay_mode : "ID" (indirect) or "DD" (direct)
    lambda_d   : dark confinement scale Lambda_D
    """

    decay_mode: str
    lambda_d: float
    zprime_mass: float = 5500.0
    zprime_width: float = 10.0
    prob_vector: float = 0.75

    @property
    def name(self) -> str:
        return f"{self.decay_mode}-{self.lambda_d:g}"

    @property
    def m_pi(self) -> float:
        """Dark pseudoscalar mass m_pi_D."""
        return PI_OVER_LAMBDA[self.decay_mode] * self.lambda_d

    @property
    def m_rho(self) -> float:
        """Dark vector mass: m_rho / Lambda = sqrt(5.76 + 1.5 (m_pi / Lambda)^2)."""
        r = self.m_pi / self.lambda_d
        return self.lambda_d * math.sqrt(5.76 + 1.5 * r * r)

    @property
    def m_quark_current(self) -> float:
        """Dark-quark current mass m_q = Lambda (m_pi / Lambda / 5.5)^2."""
        return self.lambda_d * (self.m_pi / self.lambda_d / 5.5) ** 2

    @property
    def m_quark_constituent(self) -> float:
        """Pythia's dark-quark mass: Lambda + m_q."""
        return self.lambda_d + self.m_quark_current

    @property
    def rho_to_pions_open(self) -> bool:
        return self.m_rho >= 2.0 * self.m_pi

    def pythia_settings(self) -> list[str]:
        """The complete list of Pythia 8 ``readString`` lines for this benchmark's signal.

        Pythia leaves the diagonal dark mesons' decays off and the off-diagonal ones stable and
        invisible by default, so the decays of *every* dark-meson id are set here explicitly.
        ``setLambda = on`` is required for ``Lambda`` to be used (Pythia >= 8.309).
        """
        lam = self.lambda_d
        m0, w = self.zprime_mass, self.zprime_width
        lines = [
            f"Beams:eCM = {SQRT_S_GEV:g}",
            "HiddenValley:ffbar2Zv = on",
            f"{ZPRIME_PDG}:m0 = {m0:g}",
            f"{ZPRIME_PDG}:mWidth = {w:g}",
            # Breit-Wigner window: +-50 widths, enough to keep the line shape, never reached
            # by the PDF-driven off-shell tail that would otherwise dominate at 5.5 TeV.
            f"{ZPRIME_PDG}:mMin = {m0 - 50 * w:g}",
            f"{ZPRIME_PDG}:mMax = {m0 + 50 * w:g}",
            f"{ZPRIME_PDG}:onMode = off",
            f"{ZPRIME_PDG}:onIfAny = " + " ".join(str(q) for q in DARK_QUARKS),
            "HiddenValley:Ngauge = 3",
            f"HiddenValley:nFlav = {N_DARK_FLAVOURS}",
            "HiddenValley:separateFlav = on",
            "HiddenValley:FSR = on",
            "HiddenValley:fragment = on",
            "HiddenValley:alphaOrder = 1",
            "HiddenValley:setLambda = on",
            f"HiddenValley:Lambda = {lam:g}",
            f"HiddenValley:pTminFSR = {1.1 * lam:g}",
            f"HiddenValley:probVector = {self.prob_vector:g}",
        ]
        for q in DARK_QUARKS:
            lines.append(f"{q}:m0 = {self.m_quark_constituent:.10g}")
        # Prompt decays of every dark meson. oneChannel = onMode BR meMode products.
        for pid in dark_meson_ids(1):
            lines += [
                f"{pid}:m0 = {self.m_pi:.10g}",
                f"{pid}:mWidth = 0",
                f"{pid}:tau0 = 0",
                f"{pid}:mayDecay = on",
                f"{pid}:isVisible = on",
                f"{pid}:oneChannel = 1 1.0 91 1 -1",
            ]
        for pid in dark_meson_ids(3):
            lines += [
                f"{pid}:m0 = {self.m_rho:.10g}",
                f"{pid}:mWidth = 0",
                f"{pid}:tau0 = 0",
                f"{pid}:mayDecay = on",
                f"{pid}:isVisible = on",
            ]
            if self.decay_mode == "ID":
                pairs = vector_to_pion_pairs(pid)
                br = 1.0 / len(pairs)
                first, *rest = pairs
                lines.append(f"{pid}:oneChannel = 1 {br:.10g} 0 {first[0]} {first[1]}")
                lines += [f"{pid}:addChannel = 1 {br:.10g} 0 {p1} {p2}" for p1, p2 in rest]
            else:
                lines.append(f"{pid}:oneChannel = 1 1.0 91 1 -1")
        return lines

    def summary(self) -> dict:
        """Plain-number description, for tables and JSON output."""
        return {
            "name": self.name,
            "decay_mode": self.decay_mode,
            "lambda_d_gev": self.lambda_d,
            "m_pi_gev": round(self.m_pi, 4),
            "m_rho_gev": round(self.m_rho, 4),
            "m_quark_current_gev": round(self.m_quark_current, 4),
            "m_quark_constituent_gev": round(self.m_quark_constituent, 4),
            "zprime_mass_gev": self.zprime_mass,
            "zprime_width_gev": self.zprime_width,
            "rho_decay": "pi_D pi_D" if self.decay_mode == "ID" else "d d-bar",
        }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for mode in DECAY_MODES for lam in LAMBDAS_GEV for b in [Benchmark(mode, float(lam))]
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (e.g. ``"ID-10"``); raises UnknownBenchmarkError."""
    key = str(name).strip().upper()
    if key not in BENCHMARKS:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}"
        )
    return BENCHMARKS[key]


def background_settings(pthat_min: float, mhat_min: float) -> list[str]:
    """Pythia 8 settings for the QCD dijet background at 13 TeV."""
    return [
        f"Beams:eCM = {SQRT_S_GEV:g}",
        "HardQCD:all = on",
        f"PhaseSpace:pTHatMin = {pthat_min:g}",
        f"PhaseSpace:mHatMin = {mhat_min:g}",
    ]
