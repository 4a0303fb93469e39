#!/usr/bin/env python3
"""An HTTP/1.1 upstream for the agent's proxy tests, driven by the test through gates.

  ANY  /echo...            JSON: method, target, headers, body size and sha256 (Content-Length or chunked)
  GET  /bytes/<n>          n bytes of a fixed 1 MiB pattern, chunked (or sized with ?sized=1)
  POST /upload             reads the body as it comes; JSON: size and sha256
  GET  /sse/<g>?events=<k> text/event-stream; event i is sent once gate <g>.<i> opens
  GET  /hold/<g>           answers "released" once gate <g> opens
  POST /slow-upload/<g>    reads 1 MiB of the body, waits for gate <g>, then reads the rest; JSON: size
  GET  /reset-after-head   sends a head and part of a body, then resets the connection
  GET  /switch-protocols   answers 101 Switching Protocols, unasked
  GET  /drop/<g>           counts an arrival at gate <g>, then closes the connection without a byte back
  GET  /garbled/<g>        counts an arrival at gate <g>, then sends a malformed head and closes
  GET  /continue/<g>       counts an arrival at gate <g>, then sends 100 Continue and closes
  POST /_gate/<g>          opens gate <g>
  GET  /_arrived/<g>       how many requests have waited on gate <g> (an event to wait for)
Prints "PORT <n>" when listening on 127.0.0.1.
"""
import argparse
import hashlib
import json
import socket
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fixture_gates import PATTERN, arrivals, arrived, gate


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self, sink):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    block = self.rfile.read(min(left, 1 << 20))
                    sink(block)
                    left -= len(block)
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            block = self.rfile.read(min(left, 1 << 20))
            if not block:
                raise ConnectionError("body cut short")
            sink(block)
            left -= len(block)

    def digest_body(self):
        """Reads the body as it comes; returns its size and sha256."""
        digest, size = hashlib.sha256(), [0]

        def sink(block):
            digest.update(block)
            size[0] += len(block)

        self.read_body(sink)
        return size[0], digest.hexdigest()

    def send_json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def handle_any(self):
        path, _, query = self.path.partition("?")
        if path.startswith("/_gate/"):
            self.read_body(lambda b: None)
            gate(path[len("/_gate/"):]).set()
            return self.send_json(200, {})
        if path.startswith("/_arrived/"):
            count = arrivals(path[len("/_arrived/"):])
            return self.send_json(200, {"count": count})
        if path.startswith("/echo"):
            size, sha256 = self.digest_body()
            headers = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            return self.send_json(200, {"method": self.command, "target": self.path, "headers": headers,
                                        "size": size, "sha256": sha256})
        if path == "/upload":
            size, sha256 = self.digest_body()
            return self.send_json(200, {"size": size, "sha256": sha256})
        if path.startswith("/slow-upload/"):
            name = path[len("/slow-upload/"):]
            state = {"size": 0, "paused": False}

            def sink(block):
                state["size"] += len(block)
                if not state["paused"] and state["size"] >= 1 << 20:
                    state["paused"] = True
                    arrived(name)
                    gate(name).wait(120)

            self.read_body(sink)
            return self.send_json(200, {"size": state["size"]})
        if path.startswith("/bytes/"):
            total = int(path[len("/bytes/"):])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            sized = "sized=1" in query
            if sized:
                self.send_header("Content-Length", str(total))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < total:
                block = PATTERN[: min(len(PATTERN), total - sent)]
                if sized:
                    self.wfile.write(block)
                else:
                    self.chunk(block)
                sent += len(block)
            if not sized:
                self.wfile.write(b"0\r\n\r\n")
            return
        if path.startswith("/sse/"):
            name = path[len("/sse/"):]
            events = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("events", "3"))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            arrived(name)
            for i in range(events):
                if not gate("%s.%d" % (name, i)).wait(120):
                    break
                self.chunk(b"data: event %d\n\n" % i)
            self.wfile.write(b"0\r\n\r\n")
            return
        if path.startswith("/hold/"):
            name = path[len("/hold/"):]
            self.read_body(lambda b: None)
            arrived(name)
            gate(name).wait(120)
            data = b"released"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path.startswith("/framed/"):
            # Answers framed as they are written here, whatever the request said.
            raw = {
                "/framed/te-and-length": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         b"5\r\nhello\r\n0\r\n\r\n",
                "/framed/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n4\r\ndefg\r\n"
                                  b"0\r\nT: 1\r\n\r\n",
                "/framed/lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
                "/framed/until-close": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until the close",
            }[path]
            self.wfile.write(raw)
            self.wfile.flush()
            self.close_connection = path == "/framed/until-close"
            return
        if path == "/switch-protocols":
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if path.split("/")[1] in ("drop", "garbled", "continue"):
            kind = path.split("/")[1]
            arrived(path.split("/")[2])
            said = {"drop": b"", "garbled": b"HTTP/1.1 2x0 OK\r\n\r\n", "continue": b"HTTP/1.1 100 Continue\r\n\r\n"}
            if said[kind]:
                self.wfile.write(said[kind])
                self.wfile.flush()
            self.close_connection = True
            return
        if path == "/reset-after-head":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self.send_json(404, {"error": "no such fixture path"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
