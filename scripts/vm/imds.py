"""The VM test's stand-in for EC2's instance metadata service, in the
mode the launcher sets (HttpTokens=required, IMDSv2 only).

As the real service does (EC2 User Guide, "Use the Instance Metadata
Service to access instance metadata", IMDSv2):
  - a session token comes from PUT /latest/api/token, which needs the
    X-aws-ec2-metadata-token-ttl-seconds header (1-21600), else 400;
  - a token request carrying X-Forwarded-For is refused (403);
  - with tokens required, a metadata GET without a valid token gets 401.

Every request is logged as one JSON line, so the test can check that each
metadata read carried a token. `--refuse` answers every request 403, as
when the metadata endpoint is disabled: the boot script must then fail.

Usage: imds.py PORT LOG [--refuse]; prints nothing, serves until killed.
       imds.py relay PORT: carries one connection between stdin/stdout and
       the server (QEMU's guestfwd runs it for each guest connection).
"""

import json
import os
import secrets
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if sys.argv[1] == "relay":
    upstream = socket.create_connection(("127.0.0.1", int(sys.argv[2])))

    def pump_in():
        while data := os.read(0, 65536):
            upstream.sendall(data)
        upstream.shutdown(socket.SHUT_WR)

    threading.Thread(target=pump_in, daemon=True).start()
    while data := upstream.recv(65536):
        os.write(1, data)
    sys.exit(0)

PORT = int(sys.argv[1])
LOG = open(sys.argv[2], "a", buffering=1)
REFUSE = "--refuse" in sys.argv[3:]
TOKENS = set()
METADATA = {
    "instance-id": "i-0123456789abcdef0",
    "instance-type": "vm.test",
    "placement/availability-zone": "vm-test-1a",
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=""):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        token = self.headers.get("X-aws-ec2-metadata-token")
        LOG.write(
            json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "status": status,
                    "token": token is not None and token in TOKENS,
                }
            )
            + "\n"
        )

    def do_PUT(self):
        if REFUSE:
            return self.answer(403)
        if self.path != "/latest/api/token":
            return self.answer(404)
        if self.headers.get("X-Forwarded-For") is not None:
            return self.answer(403)
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.answer(400)
        token = secrets.token_urlsafe(32)
        TOKENS.add(token)
        self.answer(200, token)

    def do_GET(self):
        if REFUSE:
            return self.answer(403)
        if self.headers.get("X-aws-ec2-metadata-token") not in TOKENS:
            return self.answer(401)
        prefix = "/latest/meta-data/"
        if not self.path.startswith(prefix):
            return self.answer(404)
        value = METADATA.get(self.path[len(prefix) :])
        if value is None:
            return self.answer(404)
        self.answer(200, value)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
