"""Commands that regenerate shipped task data from scratch (seeded, with provenance)."""
