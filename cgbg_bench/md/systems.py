"""OpenMM systems for the peptides: explicit TIP3P, implicit GB (OBC1, OBC2), vacuum.

Protocol of docs/science.md section 5: amber99sb-ildn, 300 K Langevin, bonds to
hydrogen constrained, hydrogen mass repartitioning with a 4 fs step, PME with a
0.9 nm cutoff in a cubic box whose edge keeps every solute atom >= 1.2 nm from
every periodic image of the solute.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from cgbg_bench.errors import MDError

__all__ = [
    "SOLVENTS",
    "FORCEFIELD_FILES",
    "HYDROGEN_MASS_AMU",
    "forcefield_files",
    "load_forcefield",
    "solvate",
    "create_system",
    "min_image_distance",
    "solute_diameter",
    "make_platform",
]

log = logging.getLogger(__name__)

SOLVENTS = ("explicit", "obc1", "obc2", "vacuum")
#: Force-field XML files (OpenMM's bundled data) per solvent.
FORCEFIELD_FILES = {
    "explicit": ("amber99sbildn.xml", "tip3p.xml"),
    "obc1": ("amber99sbildn.xml", "implicit/obc1.xml"),
    "obc2": ("amber99sbildn.xml", "implicit/obc2.xml"),
    "vacuum": ("amber99sbildn.xml",),
}
#: Repartitioned hydrogen mass (Hopkins et al., JCTC 2015); allows the 4 fs step.
HYDROGEN_MASS_AMU = 3.024
PME_CUTOFF_NM = 0.9
SOLUTE_IMAGE_DISTANCE_NM = 1.2
#: Extra edge beyond diameter + 1.2 nm: covers the NPT box shrinking by a few percent
#: and the solute stretching a little beyond its minimized diameter.
BOX_MARGIN_NM = 0.1


def forcefield_files(solvent: str) -> tuple[str, ...]:
    try:
        return FORCEFIELD_FILES[solvent]
    except KeyError:
        raise MDError(f"unknown solvent {solvent!r}; choose one of {list(SOLVENTS)}") from None


def load_forcefield(solvent: str):
    import openmm.app as app

    return app.ForceField(*forcefield_files(solvent))


def solute_diameter(positions_nm: np.ndarray) -> float:
    """Largest distance between two solute atoms (bounds its extent along any axis)."""
    from scipy.spatial.distance import pdist

    return float(pdist(np.asarray(positions_nm, dtype=np.float64)).max())


def min_image_distance(positions_nm: np.ndarray, box_edge_nm: float) -> float:
    """Smallest distance between a solute atom and any atom of a periodic image (cubic box)."""
    from scipy.spatial.distance import cdist

    pos = np.asarray(positions_nm, dtype=np.float64)
    best = np.inf
    for shift in itertools.product((-1, 0, 1), repeat=3):
        if shift == (0, 0, 0):
            continue
        image = pos + box_edge_nm * np.asarray(shift, dtype=np.float64)
        best = min(best, float(cdist(pos, image).min()))
    return best


def solvate(peptide, distance_nm: float = SOLUTE_IMAGE_DISTANCE_NM,
            margin_nm: float = BOX_MARGIN_NM):
    """Put ``peptide`` in a cubic TIP3P box of edge = diameter + ``distance_nm`` + ``margin_nm``.

    OpenMM's ``addSolvent(padding=...)`` would give diameter + padding too, but we
    compute the edge here so that the image distance is explicit and verified.
    Returns (topology, positions_nm, box_edge_nm, min_image_distance_nm).
    """
    import openmm
    import openmm.app as app
    import openmm.unit as u

    pos = np.asarray(peptide.positions_nm, dtype=np.float64)
    edge = solute_diameter(pos) + distance_nm + margin_nm
    pos = pos - pos.mean(axis=0) + edge / 2.0
    dist = min_image_distance(pos, edge)
    if dist < distance_nm - 1e-6:
        raise MDError(f"box edge {edge:.3f} nm leaves only {dist:.3f} nm to the nearest image")
    modeller = app.Modeller(peptide.topology, pos * u.nanometer)
    modeller.addSolvent(load_forcefield("explicit"), model="tip3p",
                        boxSize=openmm.Vec3(edge, edge, edge) * u.nanometer, neutralize=False)
    out = np.asarray(modeller.getPositions().value_in_unit(u.nanometer))
    return modeller.topology, out, edge, dist


def create_system(topology, solvent: str, barostat: bool = False,
                  temperature_kelvin: float = 300.0):
    """The unbiased System (no bias force) for ``solvent``; optional MC barostat at 1 bar."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    forcefield = load_forcefield(solvent)
    kwargs = dict(constraints=app.HBonds, hydrogenMass=HYDROGEN_MASS_AMU * u.amu,
                  removeCMMotion=True)
    if solvent == "explicit":
        system = forcefield.createSystem(topology, nonbondedMethod=app.PME,
                                         nonbondedCutoff=PME_CUTOFF_NM * u.nanometer, **kwargs)
        if barostat:
            system.addForce(
                openmm.MonteCarloBarostat(1.0 * u.bar, temperature_kelvin * u.kelvin, 25))
    else:
        if barostat:
            raise MDError("a barostat needs periodic (explicit) solvent")
        system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, **kwargs)
    # Keep the bias's force group (assigned later) free: put every force in group 0.
    for force in system.getForces():
        force.setForceGroup(0)
    return system


def make_platform(name: str = "auto", threads: int = 1):
    """(Platform, properties). ``auto``: CUDA when it works here, else CPU."""
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name == "auto":
        name = "CPU"
        if "CUDA" in names and _cuda_works():
            name = "CUDA"
    if name not in names:
        raise MDError(f"OpenMM platform {name!r} is not available here; available: {names}")
    platform = openmm.Platform.getPlatformByName(name)
    props = {"Threads": str(int(threads))} if name == "CPU" else {}
    if name == "CUDA":
        props = {"Precision": "mixed"}
    return platform, props


def _cuda_works() -> bool:
    import openmm

    try:
        system = openmm.System()
        system.addParticle(1.0)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("CUDA"))
        del ctx
        return True
    except Exception:  # no driver or no device: fall back to CPU
        return False
