"""Reproducible datasets derived from the event store, each with a JSON manifest.

:mod:`.common` (manifest, content hash, episode/time split, save/load), :mod:`.pursuit`
(player trajectory windows -> future displacement), :mod:`.navigation` (traversal experience).
"""
