"""The live view of a line (several cameras): `python -m runtime --line L --serve PORT`.

Each camera gets the single-camera live view of `runtime.serve` (its own LiveState and server on a free
127.0.0.1 port); the page on PORT shows them all side by side (one frame each, with its own verdict, counts,
FPS, latency and score trace), and `/state.json` there gives every camera's state at once:
``{"cameras": {NAME: state, ...}}``."""
from __future__ import annotations

import html
import http.server
import threading
from typing import Any, Dict

from runtime import strict_json
from runtime.errors import RuntimeInspectError
from runtime.serve import MAX_CONNECTIONS, REQUEST_TIMEOUT_S, LiveServer, LiveState, wait_for_interrupt
from runtime.serve_guard import BoundedThreadingServer, refuse_foreign_host

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>edge-inspect line</title><style>
body{{margin:0;background:#14171c;color:#e6e8eb;font:14px system-ui,sans-serif}}
header{{padding:10px 18px;background:#1d2129;border-bottom:1px solid #2c323c;font-size:17px}}
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:12px;padding:12px}}
figure{{margin:0}} figcaption{{padding:4px 2px;color:#8b94a3}}
iframe{{width:1280px;height:700px;border:0;transform:scale(.5);transform-origin:0 0}}
.box{{width:640px;height:350px;overflow:hidden;border:1px solid #2c323c;border-radius:6px}}
</style></head><body><header>edge-inspect &middot; line &middot; {n} cameras</header><main>{cells}</main></body></html>"""
CELL = ('<figure><figcaption>{name} &middot; <a href="{url}" style="color:#8fb8ff">{url}</a></figcaption>'
        '<div class="box"><iframe title="{name}" src="{url}"></iframe></div></figure>')


class LineView:
    """One LiveState and LiveServer per camera, and the page that shows them all."""

    def __init__(self, port: int, line: Any):
        backends = {c.name: f"{c.inspector.backend} ({c.inspector.device})" for c in line.cameras}
        self.states: Dict[str, LiveState] = {}
        self.servers: Dict[str, LiveServer] = {}
        self._line = line
        try:
            for c in line.cameras:
                self.states[c.name] = LiveState(c.threshold, backend=backends[c.name],
                                                source=f"{c.name}: {getattr(c.source, 'description', '')}")
                self.servers[c.name] = LiveServer(self.states[c.name], 0).start()
            page = PAGE.format(n=len(line.cameras), cells="".join(
                CELL.format(name=html.escape(n), url=html.escape(s.url)) for n, s in self.servers.items()))
            self._index = BoundedThreadingServer(("127.0.0.1", int(port)), _handler(page.encode("utf-8"), self.states),
                                                 MAX_CONNECTIONS)
        except OSError as e:
            self.close()
            raise RuntimeInspectError(f"cannot serve the live view on 127.0.0.1:{port} ({e.strerror or e}): choose "
                                      f"another --serve PORT") from None
        self.url = f"http://127.0.0.1:{self._index.server_address[1]}/"
        self._thread = threading.Thread(target=self._index.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="line-view", daemon=True)
        self._thread.start()

    def on_result(self, camera: str, result: Any) -> None:
        cam = next(c for c in self._line.cameras if c.name == camera)
        self.states[camera].add_result(result, drops=cam.reader.drops if cam.reader is not None else 0)

    def on_event(self, event: Dict[str, Any]) -> None:
        state = self.states.get(str(event.get("camera")))
        if state is not None:
            state.add_event(event)

    def serve_until_interrupted(self) -> None:
        for state in self.states.values():
            state.set_status("source ended")
        print(f"live view: sources ended; still serving {self.url} until Ctrl-C", flush=True)
        wait_for_interrupt()

    def close(self) -> None:
        index = getattr(self, "_index", None)
        if index is not None:
            index.shutdown()
            index.server_close()
        for server in self.servers.values():
            server.close()


def _handler(page: bytes, states: Dict[str, LiveState]) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # an idle or half-sent request gives its thread back (runtime.serve_guard)

        def log_message(self, *args: Any) -> None:  # stdout is for verdicts
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if refuse_foreign_host(self, "127.0.0.1"):  # DNS rebinding: only this machine's names
                return
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                body, ctype, code = page, "text/html; charset=utf-8", 200
            elif path == "/state.json":
                doc = {"cameras": {n: s.snapshot() for n, s in states.items()}}
                body, ctype, code = strict_json.dumps(doc).encode("utf-8"), "application/json", 200
            else:
                body, ctype, code = b"not found", "text/plain", 404
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the browser went away, or a send outlasted the timeout
                self.close_connection = True

    return Handler


__all__ = ["LineView"]
