"""Reproductions of the three methods' claims on this machine's data: `python -m experiments.reproduce`."""
