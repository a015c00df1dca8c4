"""Analysis of how players play and how agents behave.

* :mod:`luanti_tune.analysis.players`: per-player behaviour features, play-style clustering, and the
  stored per-player style labels (``style_of(player)``) that per-style adaptation reads;
* :mod:`luanti_tune.analysis.agents`: emergent-behaviour monitoring of agents per model version
  (action distribution and entropy, new frequent action sequences, team spacing, role switches,
  success rates), with a Prometheus collector the service registers.

Both work on wire event dicts (``luanti.event/1``) as streamed by :meth:`Store.iter_events`.
"""
