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
    """Generating a peptide bank: the IC flow of each ala2 representation (10^6: the task's size).

    The shipped flow when the task exists, else an untrained one of the same architecture
    (same cost per sample). Not in the speed gate's quick set.
    """

    params = [["core-beta", "heavy-atom"], quick([10**4, 10**6], [10**4])]
    param_names = ["representation", "n_samples"]
    timer = TIMER
    timeout = 1200

    def setup(self, representation, n_samples):
        import numpy as np

        from cgbg_bench.cg.mappings import get_mapping
        from cgbg_bench.cg.zmatrix import zmatrix_for
        from cgbg_bench.flows.internal import ICFlow

        gate_mode()
        shipped = tasks_root() / f"ala2-{representation}" / "flow.pt"
        if shipped.is_file():
            self.flow = ICFlow.load(shipped)
        else:
            m = get_mapping("ala2", representation)
            z = zmatrix_for(m)
            soft = [z.dihedral_index(q) for q in m.phi + m.psi]
            n = z.n_bonds + z.n_angles + z.n_dihedrals - len(soft)
            self.flow = ICFlow(z, np.full(n, 1.0), np.full(n, 0.1), soft)

    def time_sample_bank(self, representation, n_samples):
        self.flow.sample_bank(n_samples, seed=0)
