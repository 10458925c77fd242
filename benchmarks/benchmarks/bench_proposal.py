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
