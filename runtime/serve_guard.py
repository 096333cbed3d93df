"""Guards of the toolkit's small HTTP servers (the live view, and any endpoint added beside it).

- `host_allowed`: DNS rebinding. A web page from anywhere can make the browser on the line's PC send requests to
  127.0.0.1 under the page's own host name, and then read the answers (the line's frames). Such a request
  carries that foreign name in its Host header, so only the address the server is bound to, `localhost`, IP
  literals when it is bound to every interface, and names the caller allows are answered.
- `refuse_foreign_host`: the check as a request handler uses it (answers 403 itself).
- `exposure_warning`: binding every interface makes the frames readable by the whole network: said loudly.
- `BoundedThreadingServer`: a threading HTTP server with a cap on concurrent connections (the ones over it are
  closed at once) and quiet about clients that go away; handlers get a socket timeout (`Handler.timeout`) so an
  idle, half-sent request cannot hold its thread.
Stdlib only.
"""
from __future__ import annotations

import http.server
import ipaddress
import logging
import threading
import warnings
from typing import Any, Iterable, Optional

log = logging.getLogger("runtime.serve")

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOCAL_NAMES = ("localhost",)
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


def _host_name(header: str) -> str:
    """The name of a Host header without its port: 'a:80' -> 'a', '[::1]:80' -> '::1'."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _host_port(header: str) -> Optional[str]:
    """The port of a Host header, or None: 'a:80' -> '80', '[::1]:80' -> '80', '::1' -> None."""
    h = header.strip()
    if h.startswith("["):
        rest = h[h.find("]") + 1:] if "]" in h else ""
        return rest[1:] if rest.startswith(":") else None
    return h.rsplit(":", 1)[1] if h.count(":") == 1 else None


def host_allowed(host_header: Optional[str], bound_host: str, allowed: Iterable[str] = (),
                 port: Optional[int] = None) -> bool:
    """True when a request's Host header names this server: its bound address, `localhost` (and the other
    loopback address when bound to one), a name in `allowed`, or (bound to every interface) any IP literal;
    with `port`, a port in the header must be that one. A missing Host header is refused (browsers always send
    one; a rebinding page cannot leave it out)."""
    if not host_header:
        return False
    if port is not None and _host_port(host_header) not in (None, str(int(port))):
        return False
    name = _host_name(host_header)
    names = {n.lower() for n in allowed} | set(LOCAL_NAMES) | {bound_host.lower()}
    if bound_host in LOOPBACK_HOSTS:
        names |= set(LOOPBACK_HOSTS)
    if name in names:
        return True
    return bound_host in WILDCARD_HOSTS and _is_ip(name)


def refuse_foreign_host(handler: http.server.BaseHTTPRequestHandler, bound_host: str,
                        allowed: Iterable[str] = ()) -> bool:
    """In a handler's do_GET/do_POST, first: answers 403 and returns True when the Host header is foreign."""
    if host_allowed(handler.headers.get("Host"), bound_host, allowed):
        return False
    body = b"host not allowed: open the live view as http://localhost:PORT/ or by its IP address\n"
    handler.send_response(403)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    return True


def exposure_warning(host: str, what: str = "the live view") -> None:
    """Say loudly (a warning and a log line) when a server binds every interface."""
    if host in WILDCARD_HOSTS:
        msg = (f"{what} is bound to {host or 'every interface'}: every machine on the network can read the line's "
               f"frames; bind 127.0.0.1 unless that is meant")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)


class BoundedThreadingServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `max_connections` connections served at once (more are closed on
    arrival and counted in `refused`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Any, handler: Any, max_connections: int = 32):
        self._slots = threading.BoundedSemaphore(int(max_connections))
        self.refused = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys  # noqa: PLC0415

        if isinstance(sys.exc_info()[1], OSError):  # a client that went away or timed out: not our error
            return
        super().handle_error(request, client_address)


__all__ = ["host_allowed", "refuse_foreign_host", "exposure_warning", "BoundedThreadingServer", "WILDCARD_HOSTS"]
