"""Background fine-tuning worker: cycles every ``training_interval`` events, live monitoring, rollback.

``Worker(settings).poll_once()`` for one step, ``start_worker_process(settings)`` for the service,
``luanti-tune worker`` on the command line (see :mod:`luanti_tune.worker.loop`).
"""
