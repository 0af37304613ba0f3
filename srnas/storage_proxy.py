"""``srnas storage-proxy``: Optuna's gRPC storage proxy in front of one database, so that
hundreds of workers (``--storage grpc://HOST:PORT``, `srnas.storages.open_storage`) share a
handful of database connections (docs/cluster.md). Optuna's proxy is experimental (4.2+) and
serves no journal storage.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from srnas.errors import StudyError
from srnas.storages import is_grpc_url, is_journal_url, open_storage, redact, storage_location


def serve_storage_proxy(url: str, *, host: str = "127.0.0.1", port: int = 13000, threads: int = 10,
                        announce: Any = print) -> None:
    """Serve the storage ``url`` (PostgreSQL, MySQL or SQLite; not a journal file) through
    Optuna's gRPC storage proxy on ``host:port`` until interrupted; workers then use
    ``--storage grpc://HOST:PORT``, so that hundreds of them share a handful of database
    connections. ``announce`` receives the line saying where it listens."""
    if is_journal_url(url) or is_grpc_url(url):
        raise StudyError(f"--storage {redact(url)}: the gRPC storage proxy serves a database (PostgreSQL, MySQL, "
                         "SQLite), not a journal file or another proxy (Optuna supports no other)")
    storage = open_storage(url)
    # lazy: optional grpc (the cluster extra); optuna (start-up)
    import grpc
    from optuna.storages._grpc.auto_generated import api_pb2_grpc  # what run_grpc_proxy_server builds
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    # No SO_REUSEPORT (gRPC's default): a second proxy on a port in use must fail, not share it.
    server = grpc.server(ThreadPoolExecutor(max_workers=threads), options=[("grpc.so_reuseport", 0)])
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise StudyError(f"srnas storage-proxy: cannot listen on {host}:{port} ({exc}); is another process using "
                         "that port? pass --port") from None
    server.start()
    announce(f"serving {storage_location(storage)} on grpc://{host}:{port} (workers: --storage grpc://{host}:{port}; "
             "Ctrl-C ends it)")
    try:
        server.wait_for_termination()
    finally:
        server.stop(grace=5)
