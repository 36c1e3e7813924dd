"""A real ClickHouse engine (chdb, ClickHouse in-process) behind the part of ClickHouse's
HTTP interface that migrator3000 and PostHog's own migration script use: POST / with the
query as the body (or ?query=), the user in X-ClickHouse-User / X-ClickHouse-Key (or
basic auth), the default database in ?database= (or X-ClickHouse-Database), answers in
the query's FORMAT, gzipped when the client asks with ?enable_http_compression=1 and
Accept-Encoding (at ClickHouse's default level, 3), errors as ClickHouse words them
("Code: N. DB::Exception: ..."), and the rows each query read from storage in the
X-ClickHouse-Summary header, as ClickHouse reports them. A cluster `posthog` of one
local shard stands for PostHog's, so that `events` can be the Distributed table PostHog
reads. `GET /queries` lists the queries answered so far with the rows each read (the
tests' measure of how much a migration reads); --log FILE appends each query answered
(its path and body, one JSON line), for the bench to replay. For the tests and the
bench only; it prints "READY <url>" once it listens.

    python server.py --data DIR [--user default] [--password ''] [--port 0] [--log FILE]
"""

import argparse
import base64
import gzip
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from chdb import session

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--user", default="default")
parser.add_argument("--password", default="")
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--log")
args = parser.parse_args()

# The cluster `posthog`: one shard, this engine itself (a replica on the engine's own
# port is local, so the Distributed table reads the shard in process).
config = os.path.join(args.data, "config.xml")
with open(config, "w") as out:
    out.write(
        "<clickhouse><tcp_port>9000</tcp_port><remote_servers><posthog><shard><replica>"
        "<host>localhost</host><port>9000</port></replica></shard></posthog></remote_servers></clickhouse>"
    )
engine = session.Session(f"file:{os.path.join(args.data, 'db')}?config-file={config}")
lock = threading.Lock()
log = open(args.log, "a", encoding="utf-8") if args.log else None
# ClickHouse's default for http_zlib_compression_level.
COMPRESSION_LEVEL = 3
answered = []


def credentials(handler):
    user = handler.headers.get("X-ClickHouse-User")
    key = handler.headers.get("X-ClickHouse-Key")
    auth = handler.headers.get("Authorization", "")
    if user is None and auth.startswith("Basic "):
        user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
    return user or "default", key or ""


def database(handler, params):
    return params.get("database", [None])[0] or handler.headers.get("X-ClickHouse-Database") or "default"


def gzipped(handler, params):
    """Whether the answer is to be gzipped, as ClickHouse decides it."""
    asked = params.get("enable_http_compression", ["0"])[0] == "1"
    accepted = "gzip" in handler.headers.get("Accept-Encoding", "").lower()
    return asked and accepted


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if urlparse(self.path).path == "/queries":
            with lock:
                text = "".join(json.dumps(q) + "\n" for q in answered)
            return self.answer(200, text)
        return self.answer(404, "Code: 1001. DB::Exception: only POST / and GET /queries are served here")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        params = parse_qs(urlparse(self.path).query)
        query = params.get("query", [""])[0] + body
        if credentials(self) != (args.user, args.password):
            return self.answer(
                403,
                f"Code: 516. DB::Exception: {credentials(self)[0]}: Authentication failed: password is incorrect, "
                "or there is no user with such name. (AUTHENTICATION_FAILED)\n",
            )
        fmt = re.search(r"\bFORMAT\s+(\w+)\s*;?\s*$", query, re.IGNORECASE)
        sql = query[: fmt.start()] if fmt else query
        try:
            with lock:
                engine.query(f"USE `{database(self, params)}`")
                result = engine.query(sql, fmt.group(1) if fmt else "TabSeparated")
        except Exception as error:  # the engine's own error text, as ClickHouse sends it
            message = str(error)
            code = re.search(r"Code: (\d+)", message)
            status = 404 if code and code.group(1) in ("60", "81") else 500
            return self.answer(status, message if message.startswith("Code:") else f"Code: 1001. DB::Exception: {message}")
        data = result.bytes() if hasattr(result, "bytes") else str(result).encode()
        read_rows = result.storage_rows_read()
        with lock:
            answered.append({"query": sql[:2000], "read_rows": read_rows})
        if log:
            log.write(json.dumps({"path": self.path, "body": body}) + "\n")
            log.flush()
        self.send_response(200)
        self.send_header(
            "X-ClickHouse-Summary",
            json.dumps({"read_rows": str(read_rows), "read_bytes": str(result.storage_bytes_read())}),
        )
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        if gzipped(self, params):
            data = gzip.compress(data, COMPRESSION_LEVEL)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
