"""One force-matching training step: forces by autograd (create_graph), loss, backward, Adam step.

Mirrors the inner loop of cgbg_bench.fm.train.train_force_matching on the Mueller-Brown
RBF+MLP PMF with its default minibatch of 512 frames.
"""

import numpy as np
import torch

from benchmarks import TIMER, gate_mode
from cgbg_bench.fm import RBFMLP
from cgbg_bench.fm.train import _predicted_forces


class ForceMatchingStep:
    timer = TIMER

    def setup(self):
        gate_mode()
        rng = np.random.default_rng(0)
        self.r = torch.as_tensor(rng.uniform(10.0, 50.0, size=(512, 1)), dtype=torch.float32)
        self.f = torch.as_tensor(rng.normal(size=(512, 1)), dtype=torch.float32)
        self.model = RBFMLP(seed=0)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3)

    def time_step(self):
        pred = _predicted_forces(self.model, self.r, create_graph=True)
        loss = ((pred - self.f) ** 2).sum() / len(self.r)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
