"""A stand-in for the Node.js telepty 0.1.96 daemon, answering as it answers.

The answers are the ones that daemon gave (recorded by hand: spawn, list, inject, delete,
publish, its errors, and the HTML page of a route it does not have); each request is
kept, so a test can say what this project's CLI sent. ``with_meta=False`` plays an older
Node.js daemon that has ``/api/health`` but no ``/api/meta``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.1.96"
META = {"name": "@dmsdc-ai/aigentry-telepty", "version": VERSION, "pid": 28973, "host": "127.0.0.1",
        "port": 3848, "machine_id": "vm", "terminal": "headless",
        "capabilities": ["sessions", "wrapped-sessions", "skill-installer", "singleton-daemon",
                         "handoff-inbox", "deliberation-threads", "cross-machine", "mailbox"]}
INJECT_ID = "13d39b5a-7dd3-4c05-a3bc-d8f0f6834e64"
HTML_404 = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
            "</head>\n<body>\n<pre>Cannot {method} {path}</pre>\n</body>\n</html>\n")


def node_session(sid: str, command: str, cwd: str = "/tmp/proj") -> dict[str, Any]:
    """One element of its GET /api/sessions (the fields that matter, as it sent them)."""
    return {"id": sid, "locator": {"machine_id": "vm", "session_id": sid, "project_id": "proj"},
            "type": "spawned", "command": command, "cwd": cwd, "backend": "kitty", "terminal": "daemon-pty",
            "createdAt": "2026-12-06T21:26:07.366Z", "lastActivityAt": "2026-12-06T21:26:07.366Z",
            "idleSeconds": 0, "active_clients": 0, "ready": True, "healthStatus": "CONNECTED",
            "healthReason": "PTY_RUNNING", "semantic": None, "autoState": None,
            "mailbox": {"pending": 0, "dead_letter": 0}}


@dataclass
class NodeDaemonStub:
    with_meta: bool = True
    version: str = VERSION
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.requests]

    def start(self) -> NodeDaemonStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                return json.loads(raw) if raw else None

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _html_404(self) -> None:
                data = HTML_404.format(method=self.command, path=self.path.split("?")[0]).encode()
                self.send_response(404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> None:
                body = self._body()
                path = self.path.split("?")[0]
                stub.requests.append((self.command, self.path, body))
                parts = path.strip("/").split("/")
                if (self.command, path) == ("GET", "/api/health"):
                    return self._answer(200, {"status": "ok", "version": stub.version})
                if (self.command, path) == ("GET", "/api/meta") and stub.with_meta:
                    return self._answer(200, {**META, "version": stub.version})
                if (self.command, path) == ("GET", "/api/sessions"):
                    return self._answer(200, list(stub.sessions.values()))
                if (self.command, path) == ("POST", "/api/sessions/spawn"):
                    sid = body["session_id"]
                    if sid in stub.sessions:
                        return self._answer(409, {"error": f"Session ID '{sid}' is already active."})
                    stub.sessions[sid] = node_session(sid, body["command"], body.get("cwd", "/tmp"))
                    return self._answer(201, {"session_id": sid, "command": body["command"],
                                              "cwd": body.get("cwd")})
                if (self.command, path) == ("POST", "/api/bus/publish"):
                    return self._answer(200, {"success": True, "delivered": 0})
                if len(parts) == 4 and parts[:2] == ["api", "sessions"] and parts[3] == "inject" \
                        and self.command == "POST":
                    if parts[2] not in stub.sessions:
                        return self._answer(404, {"success": False, "code": "SESSION_NOT_FOUND",
                                                  "error": "Session not found", "requested": parts[2]})
                    return self._answer(200, {"success": True, "inject_id": INJECT_ID, "strategy": "mailbox",
                                              "submit": "deferred"})
                if len(parts) == 3 and parts[:2] == ["api", "sessions"] and self.command == "DELETE":
                    if stub.sessions.pop(parts[2], None) is None:
                        return self._answer(404, {"error": "Session not found", "requested": parts[2]})
                    return self._answer(200, {"success": True, "status": "closing"})
                return self._html_404()

            do_GET = do_POST = do_DELETE = do_PATCH = _route

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
