"""A loopback stand-in for the Hugging Face Hub's file API, for ``HF_ENDPOINT`` tests without internet.

It answers what ``huggingface_hub`` asks when transformers loads a processor and a config:

- ``HEAD|GET /{org}/{name}/resolve/{revision}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``; a missing file is ``404`` with ``X-Error-Code: EntryNotFound`` (optional files),
  an unknown repository ``404`` with ``RepoNotFound``;
- ``GET /api/models/{org}/{name}/tree/{revision}[/{path}]``: the file listing (JSON);
- ``GET /api/models/{org}/{name}[/revision/{revision}]``: minimal model info;
- anything else under ``/api/``: an empty ``200`` (the preflight only needs an answer).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LoopbackHub:
    """``with LoopbackHub({"org/name": {"config.json": b"..."}}) as hub: hub.endpoint``; ``hub.requests``."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._answer(self, head=True)

            def do_GET(self):
                hub._answer(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LoopbackHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _send(self, handler, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        handler.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _answer(self, handler, head: bool) -> None:
        path = handler.path.split("?", 1)[0]
        self.requests.append(f"{handler.command} {path}")
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            repo, _, name = resolve.groups()
            files = self.repos.get(repo)
            if files is None:
                return self._send(handler, 404, headers={"X-Error-Code": "RepoNotFound"}, head=head)
            if name not in files:
                return self._send(
                    handler, 404, headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, head=head
                )
            data = files[name]
            return self._send(
                handler,
                200,
                data,
                {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                    "Content-Type": "application/octet-stream",
                },
                head=head,
            )
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(tree|revision)/([^/]+)(?:/(.*))?)?", path)
        if api:
            repo, kind, _, sub = api.groups()
            files = self.repos.get(repo)
            if files is None:
                return self._send(handler, 404, headers={"X-Error-Code": "RepoNotFound"}, head=head)
            if kind == "tree":
                prefix = (sub or "").rstrip("/")
                entries = [
                    {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for n, d in sorted(files.items())
                    if not prefix or n.startswith(prefix + "/")
                ]
                if prefix and not entries:
                    return self._send(handler, 404, headers={"X-Error-Code": "EntryNotFound"}, head=head)
                return self._send(
                    handler, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head=head
                )
            info = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in sorted(files)]}
            return self._send(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head=head)
        if path.startswith("/api/"):
            return self._send(handler, 200, b"{}", {"Content-Type": "application/json"}, head=head)
        return self._send(handler, 404, head=head)
