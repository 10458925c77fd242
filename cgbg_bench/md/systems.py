"""OpenMM systems for the peptides: explicit TIP3P, implicit GB (OBC1, OBC2), vacuum.

Protocol of docs/spec.md section 8: amber99sb-ildn, 300 K Langevin, bonds to
hydrogen constrained, hydrogen mass repartitioning with a 4 fs step, PME with a
0.9 nm cutoff in a periodic box (cube, or rhombic dodecahedron) that keeps every
solute atom >= a set distance (default 1.2 nm) from every periodic image of the solute.
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
    "image_shifts",
    "box_matrix",
    "BOX_SHAPES",
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


BOX_SHAPES = ("cube", "dodecahedron")


def box_matrix(box) -> np.ndarray:
    """(3, 3) box vectors in nm (rows) from a cube edge (float) or a (3, 3) array."""
    b = np.asarray(box, dtype=np.float64)
    if b.ndim == 0:
        return float(b) * np.eye(3)
    if b.shape != (3, 3):
        raise MDError(f"box must be an edge length or (3, 3) vectors, got shape {b.shape}")
    return b


def image_shifts(box) -> np.ndarray:
    """(124, 3) lattice translations n1 a + n2 b + n3 c, n_i in -2..2, without 0.

    OpenMM keeps box vectors in reduced form, where the nearest images of any point are
    among these (+-1 suffices for a cube; +-2 covers the triclinic cells).
    """
    vecs = box_matrix(box)
    n = np.array([s for s in itertools.product(range(-2, 3), repeat=3) if s != (0, 0, 0)],
                 dtype=np.float64)
    return n @ vecs


def min_image_distance(positions_nm: np.ndarray, box) -> float:
    """Smallest distance between a solute atom and any atom of a periodic image.

    ``box``: a cube edge in nm or (3, 3) box vectors (rows, nm), any shape of cell.
    """
    pos = np.asarray(positions_nm, dtype=np.float64)
    diff = pos[:, None, :] - pos[None, :, :]  # (n, n, 3)
    best = np.inf
    for shift in image_shifts(box):
        d = diff + shift
        best = min(best, float(np.sqrt((d * d).sum(-1).min())))
    return best


def solvate(peptide, distance_nm: float = SOLUTE_IMAGE_DISTANCE_NM,
            margin_nm: float = BOX_MARGIN_NM, box_shape: str = "cube"):
    """Put ``peptide`` in a TIP3P box whose image distance is diameter + ``distance_nm`` + ``margin_nm``.

    ``box_shape``: ``cube`` (edge = that width) or ``dodecahedron`` (a rhombic
    dodecahedron whose nearest lattice points are that far apart: the same solute-image
    distance with ~29% less water). The width is computed here, not by OpenMM's
    ``padding``, so that the image distance is explicit and verified.
    Returns (topology, positions_nm, box_vectors_nm (3, 3), min_image_distance_nm).
    """
    import openmm.app as app
    import openmm.unit as u

    if box_shape not in BOX_SHAPES:
        raise MDError(f"unknown box shape {box_shape!r}; choose one of {list(BOX_SHAPES)}")
    pos = np.asarray(peptide.positions_nm, dtype=np.float64)
    width = max(solute_diameter(pos) + distance_nm + margin_nm, min_box_width(box_shape))
    vectors = _box_vectors(width, box_shape)
    pos = pos - pos.mean(axis=0) + 0.5 * vectors.sum(axis=0)
    dist = min_image_distance(pos, vectors)
    if dist < distance_nm - 1e-6:
        raise MDError(f"box width {width:.3f} nm leaves only {dist:.3f} nm to the nearest image")
    modeller = app.Modeller(peptide.topology, pos * u.nanometer)
    modeller.addSolvent(load_forcefield("explicit"), model="tip3p", neutralize=False,
                        boxVectors=tuple(_vec3(v) for v in vectors))
    out = np.asarray(modeller.getPositions().value_in_unit(u.nanometer))
    return modeller.topology, out, vectors, dist


#: Headroom of the cell's smallest height over twice the cutoff: the NPT equilibration
#: shrinks the box by a few percent, and PME needs every height >= 2 x cutoff.
CUTOFF_HEADROOM = 1.08


def min_box_width(box_shape: str) -> float:
    """Smallest nearest-lattice-point distance (nm) whose cell keeps every height >= 2 x cutoff.

    A cube's height is its width; a rhombic dodecahedron's smallest height (along z in
    the reduced form) is its width / sqrt(2).
    """
    height_per_width = 1.0 if box_shape == "cube" else 1.0 / np.sqrt(2.0)
    return 2.0 * PME_CUTOFF_NM * CUTOFF_HEADROOM / height_per_width


def _box_vectors(width_nm: float, box_shape: str) -> np.ndarray:
    """Reduced box vectors (rows, nm) of a cell whose nearest lattice points are ``width_nm`` apart."""
    if box_shape == "cube":
        return width_nm * np.eye(3)
    # rhombic dodecahedron, xy-square orientation (the form OpenMM's Modeller uses)
    return width_nm * np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5 * np.sqrt(2.0)]])


def _vec3(v):
    import openmm
    import openmm.unit as u

    return openmm.Vec3(*map(float, v)) * u.nanometer


def create_system(topology, solvent: str, barostat: bool = False,
                  temperature_kelvin: float = 300.0,
                  hydrogen_mass_amu: float | None = HYDROGEN_MASS_AMU):
    """The unbiased System (no bias force) for ``solvent``; optional MC barostat at 1 bar.

    ``hydrogen_mass_amu``: repartitioned hydrogen mass; None keeps the force field's masses.
    """
    import openmm
    import openmm.app as app
    import openmm.unit as u

    forcefield = load_forcefield(solvent)
    kwargs = dict(constraints=app.HBonds, removeCMMotion=True)
    if hydrogen_mass_amu is not None:
        kwargs["hydrogenMass"] = hydrogen_mass_amu * u.amu
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
