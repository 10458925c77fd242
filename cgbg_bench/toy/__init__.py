"""Toy systems with exact answers (Mueller-Brown)."""

from cgbg_bench.toy import mueller_brown

__all__ = ["mueller_brown"]
