"""PostgreSQL stopped under a running service: 503 with a clear message, never 200; then recovery."""

from __future__ import annotations

from typing import Any

from live_server import Server

from luanti_tune.bench.ingest import make_events
from pgcluster import own_cluster


def test_postgres_down_gives_503_then_recovers(server_factory: Any) -> None:
    with own_cluster() as cluster:
        server: Server = server_factory(db_url=cluster.url)
        assert server.post_events(make_events("pg", 0, 20)) == (200, {"accepted": 20, "duplicates": 0})

        cluster.stop("fast")
        status, body = server.post_events(make_events("pg", 20, 20))
        assert status == 503, body
        assert "unavailable" in body["detail"] and "nothing stored" in body["detail"]
        status, body = server.request("GET", "/healthz")
        assert status == 503 and body["status"] == "unavailable"
        assert server.request("GET", "/v1/events/stats")[0] == 503

        cluster.start()
        # the refused batch was not stored; the client's retry now goes through, once
        assert server.stats()["events"] == 20
        assert server.post_events(make_events("pg", 20, 20)) == (200, {"accepted": 20, "duplicates": 0})
        assert server.post_events(make_events("pg", 0, 40)) == (200, {"accepted": 0, "duplicates": 40})
        assert server.request("GET", "/healthz")[0] == 200
        # a restart between two requests is invisible to clients: stale connections are replaced
        cluster.stop("fast")
        cluster.start()
        assert server.post_events(make_events("pg", 40, 10)) == (200, {"accepted": 10, "duplicates": 0})
        assert server.stats()["events"] == 50
        status, text = server.request("GET", "/metrics")
        assert 'luanti_tune_event_batches_rejected_total{reason="store_unavailable"} 1.0' in text
