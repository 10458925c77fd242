"""The block bootstrap alone (500 replicates), on histograms shaped like the tasks'."""

import numpy as np

from benchmarks import TIMER, gate_mode
from cgbg_bench.bootstrap import bootstrap_scores

# name: (n_bins, 1-D observable, reference blocks, exact reference)
SHAPES = {
    "mueller-brown-1d": (100, True, 1, True),
    "ala2-2d": (10_000, False, 100, False),
}


class Bootstrap:
    params = [list(SHAPES)]
    param_names = ["histograms"]
    timer = TIMER

    def setup(self, histograms):
        gate_mode()
        n_bins, self.one_d, n_ref, self.exact = SHAPES[histograms]
        rng = np.random.default_rng(0)
        self.q = rng.gamma(0.5, size=(100, 1, n_bins))  # 100 proposal blocks of summed weights
        self.p = rng.poisson(0.5, size=(n_ref, 1, n_bins)).astype(np.float64)
        self.s1, self.s2 = self.q.sum(axis=(1, 2)), (self.q ** 2).sum(axis=(1, 2))

    def time_bootstrap_500(self, histograms):
        bootstrap_scores(self.q, self.p, observable_names=["o"], one_dimensional=[self.one_d],
                         n_bootstrap=500, seed=0, ess_blocks=(self.s1, self.s2), n_samples=10**5,
                         p_exact=self.exact)
