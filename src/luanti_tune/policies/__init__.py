"""Policies: how observations become actions (scripted baselines and learned model families)."""
