"""The fake provider over real HTTP (stdlib `http.server`, one thread per connection)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Small replies on a kept-alive connection would otherwise wait ~40 ms for the client's ACK (Nagle).
    disable_nagle_algorithm = True
    fake: Any = None

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        return

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.fake.reply(self.command, self.path, dict(self.headers.items()), body)
        if reply.timeout:
            time.sleep(30)  # longer than any test client waits
            return
        time.sleep(reply.latency)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.frames is None:
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i, frame in enumerate(reply.frames):
            if i and reply.frame_delay:
                time.sleep(reply.frame_delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    do_POST = do_GET = do_DELETE = _serve


def start(fake: Any, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = type("FakeHandler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="tokentrail-fake-provider", daemon=True)
    thread.start()
    return server, thread
