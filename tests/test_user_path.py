"""The friction a new user met on the path from "my PMF" to the leaderboard (issue 31): one test each."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cgbg_bench import metrics as M


# --------------------------------------------------------------- item 7: raw numpy warnings ---
def test_normalized_weights_of_a_pmf_in_wrong_units_raise_no_numpy_warning():
    """A PMF in the wrong units spreads log-weights over thousands of kT: the clipped samples
    (far above the kept ones) must not be exponentiated (overflow) nor warn."""
    rng = np.random.default_rng(0)
    log_w = rng.normal(size=10_000) * 3000.0
    keep = M.clip_mask(log_w, 99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        w = M.normalized_weights(log_w, keep)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0)
    assert (w[~keep] == 0).all() and w[keep].max() > 0
    assert w[np.argmax(np.where(keep, log_w, -np.inf))] == w.max()


def test_normalized_weights_unchanged_for_ordinary_log_weights():
    rng = np.random.default_rng(1)
    log_w = rng.normal(size=1000)
    keep = M.clip_mask(log_w, 99)
    expected = np.where(keep, np.exp(log_w - log_w[keep].max()), 0.0)
    np.testing.assert_array_equal(M.normalized_weights(log_w, keep), expected / expected.sum())


def test_normalized_weights_reject_non_finite_kept_log_weights():
    with pytest.raises(ValueError, match="not finite"):
        M.normalized_weights(np.array([0.0, np.inf, 1.0]))
