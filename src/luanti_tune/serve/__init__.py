"""HTTP service (FastAPI + uvicorn): ingest, stats, health, metrics; other components add routers.

Entry point: :func:`luanti_tune.serve.app.create_app`. Nothing is imported here on purpose, so
importing the package stays free of side effects.
"""
