"""The speed gate's yardstick: a fixed kernel whose code never changes.

benchmarks/gate_speed.py divides every quick benchmark by this kernel's time from
the same run, which cancels most of the machine's speed and its momentary load.
It mixes what the scoring engine spends time on: numpy sorting, binning and
transcendental functions over arrays, and small float32 matrix products in torch.
Do not edit it: a change invalidates every stored ratio in speed_baseline.json.
"""

import numpy as np
import torch

from benchmarks import TIMER, gate_mode


class Calibration:
    timer = TIMER

    def setup(self):
        gate_mode()
        rng = np.random.default_rng(12345)
        self.x = rng.normal(size=1_000_000)
        self.a = torch.from_numpy(rng.normal(size=(16384, 64)).astype(np.float32))
        self.w = torch.from_numpy(rng.normal(size=(64, 64)).astype(np.float32) / 8)

    def time_kernel(self):
        x = np.sort(self.x)
        idx = np.clip(((x + 5.0) * 10.0).astype(np.int64), 0, 99)
        np.bincount(idx, weights=np.exp(-0.5 * x * x), minlength=100)
        np.log1p(np.abs(x)).sum()
        with torch.no_grad():
            h = self.a
            for _ in range(8):
                h = torch.nn.functional.silu(h @ self.w)
