"""The one set of internal units: nm, ps, kJ/mol, K, radians (as OpenMM)."""

from __future__ import annotations

__all__ = ["KB_KJ_PER_MOL_K", "kT_kj_per_mol"]

#: Boltzmann constant in kJ/(mol K), the value fixed by docs/spec.md section 2.
KB_KJ_PER_MOL_K = 0.0083144626


def kT_kj_per_mol(temperature_kelvin: float) -> float:
    """Thermal energy kB*T in kJ/mol (300 K -> 2.4943 kJ/mol)."""
    return KB_KJ_PER_MOL_K * float(temperature_kelvin)
