"""Build capped alanine peptides ACE-(ALA)n-NME from the sequence.

Heavy atoms come from a small internal-coordinate (NeRF) builder with standard
peptide geometry, trans peptide bonds and L-alanines; OpenMM's Modeller adds the
hydrogens from its templates, and a short vacuum minimization with amber99sb-ildn
relaxes the result. Positions are returned in nm as a numpy array.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from cgbg_bench.cg.mappings import n_alanines
from cgbg_bench.errors import MDError

__all__ = ["Peptide", "build_peptide", "chirality_volume", "nerf_place"]

# Standard geometry (Engh & Huber), nm and degrees.
_BOND = {"N-CA": 0.1458, "CA-C": 0.1525, "C-N": 0.1329, "C-O": 0.1231, "CA-CB": 0.1530,
         "CH3-C": 0.1520}
_ANGLE = {"N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "N-C-O": 123.0,
          "N-CA-CB": 110.5}
#: Torsion C-N-CA-CB that puts CB on the L side (checked by chirality_volume > 0).
_CB_TORSION_L = -122.6


@dataclass(frozen=True)
class Peptide:
    """An all-atom capped peptide: OpenMM topology and positions in nm."""

    system: str
    topology: object  # openmm.app.Topology
    positions_nm: np.ndarray  # (n_atoms, 3)

    @property
    def n_atoms(self) -> int:
        return self.positions_nm.shape[0]


def nerf_place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float,
               torsion_deg: float) -> np.ndarray:
    """Position d with |cd| = bond, angle b-c-d = angle, dihedral a-b-c-d = torsion."""
    angle, torsion = np.radians(angle_deg), np.radians(torsion_deg)
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = np.array([-bond * np.cos(angle),
                   bond * np.sin(angle) * np.cos(torsion),
                   bond * np.sin(angle) * np.sin(torsion)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def chirality_volume(n: np.ndarray, ca: np.ndarray, c: np.ndarray, cb: np.ndarray) -> float:
    """(N-CA) x (C-CA) . (CB-CA): positive for an L amino acid."""
    return float(np.dot(np.cross(n - ca, c - ca), cb - ca))


def _heavy_atoms(n: int, phi_deg: float, psi_deg: float) -> list[tuple[int, str, str, np.ndarray]]:
    """(residue position, residue name, atom name, xyz) of every heavy atom, residue order."""
    resnames = ["ACE"] + ["ALA"] * n + ["NME"]
    xyz: dict[tuple[int, str], np.ndarray] = {}
    xyz[(0, "CH3")] = np.zeros(3)
    xyz[(0, "C")] = np.array([_BOND["CH3-C"], 0.0, 0.0])
    a = np.radians(180.0 - _ANGLE["CA-C-N"])
    xyz[(1, "N")] = xyz[(0, "C")] + _BOND["C-N"] * np.array([np.cos(a), np.sin(a), 0.0])
    prev_ca, prev_c = (0, "CH3"), (0, "C")
    for k in range(1, n + 2):
        if k > 1:  # N of residue k from psi of residue k-1
            xyz[(k, "N")] = nerf_place(xyz[(k - 1, "N")], xyz[(k - 1, "CA")], xyz[(k - 1, "C")],
                                       _BOND["C-N"], _ANGLE["CA-C-N"], psi_deg)
        ca_name = "C" if k == n + 1 else "CA"  # the NME methyl carbon is named C
        xyz[(k, ca_name)] = nerf_place(xyz[prev_ca], xyz[prev_c], xyz[(k, "N")],
                                       _BOND["N-CA"], _ANGLE["C-N-CA"], 180.0)  # omega, trans
        # carbonyl O of the previous residue, cis to this CA across the peptide bond
        xyz[(k - 1, "O")] = nerf_place(xyz[(k, ca_name)], xyz[(k, "N")], xyz[prev_c],
                                       _BOND["C-O"], _ANGLE["N-C-O"], 0.0)
        if k == n + 1:
            break
        xyz[(k, "C")] = nerf_place(xyz[prev_c], xyz[(k, "N")], xyz[(k, "CA")],
                                   _BOND["CA-C"], _ANGLE["N-CA-C"], phi_deg)
        xyz[(k, "CB")] = nerf_place(xyz[(k, "C")], xyz[(k, "N")], xyz[(k, "CA")],
                                    _BOND["CA-CB"], _ANGLE["N-CA-CB"], _CB_TORSION_L)
        prev_ca, prev_c = (k, "CA"), (k, "C")
    order = {"ACE": ("CH3", "C", "O"), "ALA": ("N", "CA", "CB", "C", "O"), "NME": ("N", "C")}
    return [(k, resnames[k], name, xyz[(k, name)])
            for k in range(n + 2) for name in order[resnames[k]]]


def build_peptide(system: str, phi_deg: float = -80.0, psi_deg: float = 150.0,
                  minimize: bool = True) -> Peptide:
    """ACE-(ALA)n-NME for ``system`` in {ala2, ala3, ala6}, all atoms, nm.

    The backbone starts at (phi, psi) for every alanine (default: polyproline II,
    an extended conformation, so that a solvent box built around it stays large
    enough when the chain stretches), then is minimized in vacuum.
    """
    import openmm
    import openmm.app as app
    import openmm.unit as u

    n = n_alanines(system)
    topology = app.Topology()
    chain = topology.addChain("A")
    positions = []
    residue = None
    current = -1
    for k, resname, name, xyz in _heavy_atoms(n, phi_deg, psi_deg):
        if k != current:
            residue = topology.addResidue(resname, chain, id=str(k + 1))
            current = k
        element = app.Element.getBySymbol(name[0])
        topology.addAtom(name, element, residue)
        positions.append(openmm.Vec3(*xyz))
    topology.createStandardBonds()
    forcefield = app.ForceField("amber99sbildn.xml")
    modeller = app.Modeller(topology, positions * u.nanometer)
    # addHydrogens starts hydrogens it cannot place from Python's global `random`;
    # seed it (and restore the caller's state) so that a build is reproducible.
    saved = random.getstate()
    try:
        random.seed(0)
        modeller.addHydrogens(forcefield, platform=openmm.Platform.getPlatformByName("Reference"))
    finally:
        random.setstate(saved)
    pos = np.asarray(modeller.getPositions().value_in_unit(u.nanometer))
    if minimize:
        system_ = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                          constraints=None)
        integrator = openmm.VerletIntegrator(0.001)
        context = openmm.Context(system_, integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(pos)
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 2000)
        state = context.getState(getPositions=True, getEnergy=True)
        energy = state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
        if not np.isfinite(energy):
            raise MDError(f"{system}: minimized energy is not finite ({energy})")
        pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(u.nanometer))
    return Peptide(system, modeller.topology, pos)
