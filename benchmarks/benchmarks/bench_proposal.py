"""Generating a proposal bank: sample the 1-D spline flow and evaluate its exact log q in float64."""

from benchmarks import TIMER, gate_mode, quick
from cgbg_bench.flows.spline1d import Flow1D
from cgbg_bench.task import tasks_root


class ProposalBank:
    params = [quick([10**4, 10**5], [10**4])]
    param_names = ["n_samples"]
    timer = TIMER

    def setup(self, n_samples):
        gate_mode()
        shipped = tasks_root() / "mueller-brown" / "flow.pt"
        # the shipped Mueller-Brown flow when present; an untrained one has the same cost
        self.flow = Flow1D.load(shipped) if shipped.is_file() else Flow1D(loc=30.0, scale=5.0)

    def time_sample_bank(self, n_samples):
        self.flow.sample_bank(n_samples, seed=0)


class InternalCoordinateBank:
    """Generating a peptide bank: the IC flow of each peptide task (10^6: the task's size).

    The shipped flow when the task exists, else an untrained one of the same architecture
    (same cost per sample): the tri- and hexapeptide tasks' cost is measured before their data
    exist (target: the 10^6 ala6-core-beta bank in <= 5 min on 2 cores). Not in the speed
    gate's quick set.
    """

    params = [["ala2-core-beta", "ala2-heavy-atom", "ala3-core-beta", "ala3-heavy-atom", "ala6-core-beta"],
              quick([10**4, 10**6], [10**4])]
    param_names = ["task", "n_samples"]
    timer = TIMER
    timeout = 1200

    def setup(self, task, n_samples):
        gate_mode()
        self.flow = task_flow(task)

    def time_sample_bank(self, task, n_samples):
        self.flow.sample_bank(n_samples, seed=0)


def task_flow(task: str):
    """The shipped flow of ``task`` (e.g. "ala2-core-beta"), or an untrained IC flow of its mapping."""
    import numpy as np

    from cgbg_bench.cg.mappings import get_mapping
    from cgbg_bench.cg.zmatrix import zmatrix_for
    from cgbg_bench.flows.internal import ICFlow

    shipped = tasks_root() / task / "flow.pt"
    if shipped.is_file():
        return ICFlow.load(shipped)
    system, representation = task.split("-", 1)
    m = get_mapping(system, representation)
    z = zmatrix_for(m)
    soft = [z.dihedral_index(q) for q in m.phi + m.psi]
    n = z.n_bonds + z.n_angles + z.n_dihedrals - len(soft)
    return ICFlow(z, np.full(n, 1.0), np.full(n, 0.1), soft)
