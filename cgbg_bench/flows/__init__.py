"""Exact-likelihood proposal flows."""

from cgbg_bench.flows.spline1d import Flow1D, train_flow

__all__ = ["Flow1D", "train_flow"]
