"""optuna-dashboard on one study, or on every study under ``trials/`` side by side, served
read-only by default.

Every study keeps its own storage (``trials/<study>/study.db``); :class:`StudiesStorage`
(`srnas.results.dashboard_storage`) reads all of them as one Optuna storage (new studies appear
on the next page load), so optuna-dashboard lists and compares them, and each study's sample
images come from its own artifact store (its folder's ``artifacts/``, or the shared store it
recorded with ``--artifacts``).

:func:`make_dashboard_server` binds a threaded ``wsgiref`` server (the server optuna-dashboard's
own ``run_server`` uses) around optuna-dashboard's WSGI app, wrapped in :class:`DashboardGuard`:

- only ``GET`` and ``HEAD`` pass unless ``allow_edits=True`` (every ``POST``, ``PUT`` and
  ``DELETE`` of optuna-dashboard 0.21 writes: rename or delete a study, tell a trial, upload or
  delete an artifact, save a note; the UI reads everything with ``GET``, so it stays usable);
- a request whose ``Host`` header is not the bound address is refused (DNS rebinding: a web page
  whose name resolves to 127.0.0.1 would otherwise reach the API with the user's browser);
- with edits allowed, a write whose ``Origin`` is another site is refused too (cross-site forms).

>>> guard = DashboardGuard(lambda environ, start: [], allowed_hosts=allowed_hosts("127.0.0.1", 8080))
>>> sorted(guard.allowed_hosts)
['127.0.0.1:8080', '[::1]:8080', 'localhost:8080']
"""

from __future__ import annotations

import errno
import ipaddress
import json
import re
import socket
import threading
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from srnas.artifacts import artifact_location, is_s3_url, open_artifact_store
from srnas.results.dashboard_storage import DashboardError, StudiesStorage
from srnas.studies import StudyHome, trials_root

if TYPE_CHECKING:
    from srnas.artifacts import ArtifactStore

#: Methods that never change a study or its artifacts.
READ_METHODS = frozenset({"GET", "HEAD"})
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _bracket(host: str) -> str:
    """``host`` as it appears in a Host header (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header values (``name:port``, lower case) a server bound to ``host:port``
    answers: the bound address; on loopback also ``localhost``, ``127.0.0.1`` and ``[::1]``; on a
    wildcard address (``0.0.0.0``, ``::``) also this machine's names (IP literals are accepted
    there by :class:`DashboardGuard` itself). ``extra`` names (``NAME`` or ``NAME:PORT``) are
    added for reverse proxies or other DNS names of the machine."""
    names = {_bracket(host)}
    if _is_loopback(host):
        names.update(_LOOPBACK_NAMES)
    if host in _WILDCARD_HOSTS:
        names = {"localhost", socket.gethostname(), socket.getfqdn()}
    out = {f"{n.lower()}:{port}" for n in names if n}
    out.update(_with_port(name.strip().lower(), port) for name in extra if name.strip())
    return frozenset(out)


def _with_port(name: str, port: int) -> str:
    """``name`` as ``host:port`` (``NAME``, ``NAME:PORT``, ``[v6]``, ``[v6]:PORT`` or bare ``v6``)."""
    if name.startswith("["):
        return name if not name.endswith("]") else f"{name}:{port}"
    if name.count(":") == 1:
        return name
    return f"{_bracket(name)}:{port}"


class DashboardGuard:
    """WSGI middleware: refuses (with a JSON ``{"reason": ...}`` the dashboard UI shows) requests
    whose ``Host`` is not in ``allowed_hosts`` (421) and, unless ``allow_edits``, every method
    outside :data:`READ_METHODS` (403). ``accept_ip_literals`` (for wildcard binds) also lets any
    ``IP:port`` Host through, which DNS rebinding cannot forge. ``url`` is the address a refusal
    points to."""

    def __init__(self, app: WSGIApp, *, allowed_hosts: Collection[str], allow_edits: bool = False,
                 accept_ip_literals: bool = False, url: str | None = None) -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.allow_edits = allow_edits
        self.accept_ip_literals = accept_ip_literals
        self._ports = {h.rsplit(":", 1)[-1] for h in self.allowed_hosts}
        self.url = url or f"http://{min(self.allowed_hosts)}/dashboard/"

    def _host_ok(self, netloc: str) -> bool:
        netloc = netloc.strip().lower()
        if not netloc:
            return False
        if netloc in self.allowed_hosts:
            return True
        # A Host without a port means the scheme's default one.
        if f"{netloc}:80" in self.allowed_hosts and not netloc.rsplit(":", 1)[-1].isdigit():
            return True
        if self.accept_ip_literals:
            name, _, port = netloc.rpartition(":")
            if port in self._ports:
                try:
                    ipaddress.ip_address(name.strip("[]"))
                    return True
                except ValueError:
                    return False
        return False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        if not self._host_ok(host):
            return _refuse(start_response, "421 Misdirected Request",
                           f"Host {host!r} is not this dashboard's address; open {self.url} "
                           "(or pass --allow-host)")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method in READ_METHODS:
            return self.app(environ, start_response)
        if not self.allow_edits:
            return _refuse(start_response, "403 Forbidden",
                           f"read-only dashboard: {method} refused; restart it with "
                           "`srnas dashboard --allow-edits` to rename, delete or edit")
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin != "null" and not self._host_ok(urlsplit(origin).netloc):
            return _refuse(start_response, "403 Forbidden", f"cross-site {method} from {origin!r} refused")
        return self.app(environ, start_response)


def _refuse(start_response: Callable[..., Any], status: str, reason: str) -> list[bytes]:
    body = json.dumps({"reason": reason}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request: the terminal keeps the one line that says where to look."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class DashboardServer(ThreadingMixIn, WSGIServer):
    """The bound server; ``url`` is the dashboard's address (the real port when 0 was asked)."""

    daemon_threads = True
    bound_host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        # A wildcard bind is opened through loopback (browsers need a real address).
        shown = self.bound_host
        if shown in _WILDCARD_HOSTS:
            shown = "::1" if shown == "::" else "127.0.0.1"
        return f"http://{_bracket(shown)}:{self.server_address[1]}/dashboard/"


class _DashboardServer6(DashboardServer):
    address_family = socket.AF_INET6


# ---- every study side by side --------------------------------------------------------------

#: The study a dashboard request for an artifact names (``/artifacts/<study id>/...``).
_ARTIFACT_PATH = re.compile(r"^/(?:api/)?artifacts/(\d+)(?:/|$)")


class _RoutedArtifacts:
    """The artifact store of the study the current request names: each study of a
    `StudiesStorage` keeps its own store. `_ArtifactRoute` sets the study per request thread."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.current = threading.local()

    def _store(self) -> Any:
        from optuna.artifacts.exceptions import ArtifactNotFound  # lazy: optuna.artifacts imports boto3 (see srnas.artifacts)

        study_id = getattr(self.current, "study_id", None)
        store = self.storage.artifact_store(study_id) if study_id is not None else None
        if store is None:
            raise ArtifactNotFound("this study has no artifact store")
        return store

    def open_reader(self, artifact_id: str) -> Any:
        return self._store().open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: Any) -> None:
        self._store().write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._store().remove(artifact_id)


class _ArtifactRoute:
    """WSGI middleware: tells `_RoutedArtifacts` which study an artifact request is for."""

    def __init__(self, app: WSGIApp, routed: _RoutedArtifacts) -> None:
        self.app = app
        self.routed = routed

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _ARTIFACT_PATH.match(environ.get("PATH_INFO", ""))
        self.routed.current.study_id = int(match.group(1)) if match else None
        return self.app(environ, start_response)


#: ``/artifacts/<study id>/<trial id>/<artifact id>`` (the trial part absent for study artifacts).
_ARTIFACT_IDS = re.compile(r"^/(?:api/)?artifacts/(\d+)/(?:(\d+)/)?[^/]+/?$")


class _KnownIds:
    """WSGI middleware: an artifact URL naming a study or trial the storage does not hold is a
    404 with one line, not a 500 and a traceback in the log."""

    def __init__(self, app: WSGIApp, storage: Any) -> None:
        self.app = app
        self.storage = storage

    def _missing(self, study_id: int, trial_id: int | None) -> str | None:
        try:
            self.storage.get_study_name_from_id(study_id)
        except (KeyError, ValueError):
            return f"no study {study_id}"
        if trial_id is not None:
            try:
                self.storage.get_trial(trial_id)
            except (KeyError, ValueError):
                return f"no trial {trial_id}"
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _ARTIFACT_IDS.match(environ.get("PATH_INFO", ""))
        if match:
            why = self._missing(int(match.group(1)), int(match.group(2)) if match.group(2) else None)
            if why is not None:
                body = f"not found: {why}\n".encode()
                start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                                 ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


class _IdentityByDefault:
    """WSGI middleware: a request without ``Accept-Encoding`` (curl, scripts, some proxies) asks
    for the uncompressed body; optuna-dashboard 0.21 reads the header unguarded and answered such
    a request for its bundle or favicon with a 500 and a traceback."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ.setdefault("HTTP_ACCEPT_ENCODING", "identity")
        return self.app(environ, start_response)


def make_dashboard_server(study: Any, artifacts: "str | Path | ArtifactStore | None", *, host: str = "127.0.0.1",
                          port: int = 8080, allow_edits: bool = False,
                          extra_hosts: Iterable[str] = ()) -> DashboardServer:
    """A bound (not yet serving) dashboard on ``study``: an ``optuna.Study`` (its own storage
    object is used, so journal files work too) with the artifact store ``artifacts`` (a folder,
    ``s3://bucket/prefix`` or a store), or a `StudiesStorage` (every study with its own store;
    ``artifacts`` is then ignored).

    Read-only unless ``allow_edits`` (then a folder store is created for uploads). ``port=0``
    takes a free port (see ``server.url``). Call ``serve_forever()`` and, at the end,
    ``server_close()``. A busy port, a host that is not this machine's or a privileged port is
    one :class:`DashboardError` line."""
    from optuna_dashboard import wsgi  # lazy: optuna_dashboard (1.8 s to import): bad arguments fail first

    if not 0 <= port <= 65535:
        raise DashboardError(f"--port {port} is not a TCP port; use 1..65535")
    storage = getattr(study, "_storage", study)
    routed = None
    if hasattr(storage, "artifact_store"):  # a StudiesStorage: each study its own store
        routed = _RoutedArtifacts(storage)
        store: Any = routed
    elif artifacts is None or hasattr(artifacts, "open_reader"):
        store = artifacts
    else:
        if allow_edits and not is_s3_url(str(artifacts)):
            Path(artifacts).mkdir(parents=True, exist_ok=True)
        store = open_artifact_store(str(artifacts))
    app: Any = _IdentityByDefault(_KnownIds(wsgi(storage, artifact_store=store), storage))
    if routed is not None:
        app = _ArtifactRoute(app, routed)
    server_class = _DashboardServer6 if ":" in host else DashboardServer
    try:
        server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    except socket.gaierror:
        raise DashboardError(f"--host {host!r} is not a known host name or address") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DashboardError(f"port {port} on {host} is in use; pass --port N") from None
        if exc.errno == errno.EACCES:
            raise DashboardError(f"port {port} on {host} needs privileges; pass --port N (1024 or above)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise DashboardError(f"--host {host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
        raise DashboardError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    bound_port = server.server_address[1]
    server.bound_host = host
    server.set_app(DashboardGuard(app, allowed_hosts=allowed_hosts(host, bound_port, extra_hosts),
                                  allow_edits=allow_edits, accept_ip_literals=host in _WILDCARD_HOSTS,
                                  url=server.url))
    return server


def serve_dashboard(study_name: str | None, storage: str | None = None, *, host: str = "127.0.0.1",
                    port: int = 8080, allow_edits: bool = False, extra_hosts: Iterable[str] = (),
                    root: Path | None = None, announce: Callable[[str], None] = print) -> None:
    """Serve ``study_name`` (default storage ``trials/<study>/study.db``, its recorded artifact
    store, else ``trials/<study>/artifacts``), or with no name every study under ``trials/``
    side by side (or every study of ``storage``), until Ctrl-C; ``announce`` gets the line with
    the URL once the port is bound. Unknown study, busy port, ...: one :class:`SrnasError`
    line."""
    base = Path(root) if root is not None else trials_root()
    if study_name is None:
        target: Any = StudiesStorage(base, [storage] if storage else [])
        studies = target.get_all_studies()
        if not studies:
            where = f"storage {storage}" if storage else f"{base}/"
            raise DashboardError(f"no studies in {where}: run srnas search first")
        what = f"{len(studies)} studies ({', '.join(s.study_name for s in studies[:6])}{', ...' if len(studies) > 6 else ''})"
        artifacts = None
    else:
        home = StudyHome(study_name, base)
        target = home.load(storage)
        what = f"study {target.study_name!r}"
        artifacts = artifact_location(target.user_attrs, home)
    server = make_dashboard_server(target, artifacts, host=host, port=port,
                                   allow_edits=allow_edits, extra_hosts=extra_hosts)
    mode = "editable" if allow_edits else "read-only"
    announce(f"optuna-dashboard ({mode}) for {what}: {server.url}  (Ctrl-C stops)")
    for name, why in getattr(target, "skipped", {}).items():
        announce(f"note: study {name} not shown: {why}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is how a dashboard ends: not an error
        pass
    finally:
        server.server_close()
