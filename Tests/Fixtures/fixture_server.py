#!/usr/bin/env python3
"""A controllable HTTP server for the agent's tests.

Roles, combinable:
  --root DIR      serve DIR under /files/ (GET/HEAD, Range, ETag)
  --v2            act as an instant KServe V2 model server (load/unload/ready/health)
  --upstream URL  forward everything else to URL (a real MLServer), recording it

Fault rules, posted as JSON to /_control/rules, apply before any role. Every request is
recorded and listed by GET /_control/log. The chosen port is printed as "PORT <n>".
"""
import argparse
import email.utils
import hashlib
import io
import http.client
import http.server
import json
import mimetypes
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
RULES = []
LOG = []
LOADED = set()
ARGS = None


def match_rule(method, path, headers=None):
    with LOCK:
        for rule in RULES:
            if rule.get("times", -1) == 0:
                continue
            if rule.get("method") and rule["method"] != method:
                continue
            if "path" in rule and rule["path"] != path:
                continue
            if "path_prefix" in rule and not path.startswith(rule["path_prefix"]):
                continue
            # Only requests that carry this header (e.g. a store refusing x-amz-checksum-mode).
            if "if_header" in rule and (headers is None or headers.get(rule["if_header"]) is None):
                continue
            # Only ranged requests for one part (e.g. "bytes=0-": the first), whatever order
            # concurrent parts arrive in.
            if "range_prefix" in rule and not (headers or {}).get("Range", "").startswith(rule["range_prefix"]):
                continue
            if rule.get("times", -1) > 0:
                rule["times"] -= 1
            return dict(rule)
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, status, **extra):
        entry = {"method": self.command, "path": self.path, "status": status,
                 "range": self.headers.get("Range"), "time": time.time()}
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["v2", "repository", "models"]:
            entry.update(model=parts[3], op=parts[4])
        elif len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "ready":
            entry.update(model=parts[2], op="ready")
        for name in ("Authorization", "X-Test-Token", "If-Range", "If-Match", "X-Amz-Security-Token"):
            if self.headers.get(name) is not None:
                entry[name.lower()] = self.headers.get(name)
        entry.update(extra)
        with LOCK:
            LOG.append(entry)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status, payload=b"", content_type="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def hard_reset(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_control/"):
            return self.control(path)
        payload = self.body() if self.command in ("POST", "PUT") else b""
        rule = match_rule(self.command, path, self.headers)
        if rule and rule.get("delay"):
            time.sleep(rule["delay"])
        if rule and "redirect" in rule:
            self.record(rule.get("redirect_status", 302), injected=True)
            return self.send(rule.get("redirect_status", 302), b"", "text/plain", {"Location": rule["redirect"]})
        if rule and rule.get("echo"):
            # A careless server that copies the request (URL, every header) into its error body.
            self.record(rule.get("status", 403), injected=True)
            echoed = "%s %s\n%s" % (self.command, self.path, "".join("%s: %s\n" % kv for kv in self.headers.items()))
            if rule.get("echo") == "xml":
                echoed = "<Error><Code>AccessDenied</Code><Message>denied %s</Message><Request>%s</Request></Error>" % (
                    self.path, echoed)
            return self.send(rule.get("status", 403), echoed.encode(), "text/plain")
        if rule and rule.get("endless"):
            return self.endless_body(rule)
        if rule and "status" in rule:
            self.record(rule["status"], injected=True)
            return self.send(rule["status"], rule.get("body", "").encode(), rule.get("content_type", "text/plain"))
        if rule and rule.get("reset_before"):
            self.record(0, injected=True)
            return self.hard_reset()
        if ARGS.root and path.startswith("/files/"):
            return self.serve_file(path[len("/files/"):], rule)
        if ARGS.v2 and path.startswith("/v2"):
            return self.fake_v2(path)
        if ARGS.upstream:
            return self.forward(path, payload, rule)
        self.record(404)
        self.send(404, b'{"error":"not found"}')

    def control(self, path):
        if path == "/_control/rules" and self.command == "POST":
            rules = json.loads(self.body() or b"[]")
            with LOCK:
                RULES.extend(rules if isinstance(rules, list) else [rules])
            return self.send(200, b"{}")
        if path == "/_control/rules" and self.command == "DELETE":
            with LOCK:
                RULES.clear()
            return self.send(200, b"{}")
        if path == "/_control/log" and self.command == "GET":
            with LOCK:
                data = json.dumps(LOG).encode()
            return self.send(200, data)
        if path == "/_control/log" and self.command == "DELETE":
            with LOCK:
                LOG.clear()
            return self.send(200, b"{}")
        if path == "/_control/loaded" and self.command == "GET":
            with LOCK:
                data = json.dumps(sorted(LOADED)).encode()
            return self.send(200, data)
        self.send(404, b"{}")

    def serve_file(self, relative, rule):
        relative = urllib.parse.unquote(relative)
        full = os.path.realpath(os.path.join(ARGS.root, relative))
        if not full.startswith(os.path.realpath(ARGS.root) + os.sep) or not os.path.isfile(full):
            self.record(404)
            return self.send(404, b"no such file", "text/plain")
        size = os.path.getsize(full)
        stat = os.stat(full)
        etag = '"%s"' % hashlib.md5(("%s-%d-%d" % (full, size, stat.st_mtime_ns)).encode()).hexdigest()
        content_type = (rule or {}).get("content_type") or mimetypes.guess_type(full)[0] or "application/octet-stream"
        start, end, status = 0, size - 1, 200
        header_range = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        honour = header_range and not (rule or {}).get("ignore_range") and (if_range is None or if_range == etag)
        if honour and header_range.startswith("bytes="):
            first, _, last = header_range[6:].partition("-")
            start = int(first) if first else max(0, size - int(last))
            end = min(int(last), size - 1) if (last and first) else size - 1
            if start >= size:
                self.record(416)
                return self.send(416, b"", headers={"Content-Range": "bytes */%d" % size})
            status = 200 if (rule or {}).get("range_200") else 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        if honour:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        self.record(status, bytes=length)
        if self.command == "HEAD":
            return
        with open(full, "rb") as f:
            f.seek(start)
            self.write_body(lambda n: f.read(n), length, rule)

    def write_body(self, read, length, rule):
        """Sends `length` bytes from read(n), applying truncate/reset/stall/corrupt rules."""
        limit = length
        if rule and "truncate_after" in rule:
            limit = min(limit, rule["truncate_after"])
        if rule and "reset_after" in rule:
            limit = min(limit, rule["reset_after"])
        stall_at = rule.get("stall_after") if rule else None
        sent = 0
        while sent < limit:
            chunk_size = min(1 << 20, limit - sent)
            if stall_at is not None and sent < stall_at:
                chunk_size = min(chunk_size, stall_at - sent)
            chunk = read(chunk_size)
            if not chunk:
                break
            if rule and rule.get("corrupt") and sent == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            try:
                self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return
            sent += len(chunk)
            if stall_at is not None and sent == stall_at:
                time.sleep(rule.get("stall_seconds", 5))
                stall_at = None
        if rule and "reset_after" in rule:
            return self.hard_reset()
        if sent < length:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def endless_body(self, rule):
        """A body without Content-Length that does not end (bounded here: `endless` bytes at
        most, 1 GiB by default) until the client hangs up."""
        self.record(200, injected=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        limit = rule["endless"] if isinstance(rule["endless"], int) and rule["endless"] > 1 else 1 << 30
        chunk = b"\0" * (1 << 16)
        sent = 0
        try:
            while sent < limit:
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def fake_v2(self, path):
        parts = path.strip("/").split("/")
        if path in ("/v2/health/ready", "/v2/health/live"):
            self.record(200)
            return self.send(200, b"")
        if path == "/v2":
            self.record(200)
            return self.send(200, json.dumps({"name": "fake", "version": "0", "extensions": []}).encode())
        if len(parts) == 5 and parts[1] == "repository" and parts[2] == "models" and self.command == "POST":
            name, op = parts[3], parts[4]
            with LOCK:
                if op == "load":
                    LOADED.add(name)
                    status = 200
                elif op == "unload":
                    status = 200 if name in LOADED else 404
                    LOADED.discard(name)
                else:
                    status = 404
            self.record(status)
            return self.send(status, b"" if status == 200 else b'{"error":"Model %s not found"}' % name.encode())
        if len(parts) == 4 and parts[1] == "models" and parts[3] == "ready":
            with LOCK:
                status = 200 if parts[2] in LOADED else 404
            self.record(status)
            return self.send(status, b"")
        self.record(404)
        self.send(404, b'{"error":"not found"}')

    def forward(self, path, payload, rule):
        target = urllib.parse.urlsplit(ARGS.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
        # Host stays as the client sent it: it is part of a SigV4 signature.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
        if rule and rule.get("ignore_range"):
            # As a server without range support would: the whole object, status 200.
            headers = {k: v for k, v in headers.items() if k.lower() not in ("range", "if-match")}
        if rule and rule.get("open_end"):
            # As a server that honours where a range starts but not where it ends.
            headers = {k: (v.split("-")[0] + "-" if k.lower() == "range" else v) for k, v in headers.items()}
        try:
            connection.request(self.command, self.path, body=payload or None, headers=headers)
            response = connection.getresponse()
        except OSError as error:
            self.record(502, error=str(error))
            return self.send(502, json.dumps({"error": str(error)}).encode())
        try:
            self.send_response(response.status)
            length = None
            for name, value in response.getheaders():
                if name.lower() in ("connection", "transfer-encoding", "keep-alive"):
                    continue
                if name.lower() == "content-length":
                    length = int(value)
                if rule and "response_etag" in rule and name.lower() == "etag":
                    # Another version's tag (or none, when empty), as from a store that
                    # ignores If-Match.
                    if rule["response_etag"]:
                        self.send_header(name, rule["response_etag"])
                    continue
                self.send_header(name, value)
            if length is None:
                data = response.read()
                length = len(data)
                self.send_header("Content-Length", str(length))
                read = io.BytesIO(data).read
            else:
                read = response.read
            self.end_headers()
            self.record(response.status, bytes=length)
            if self.command != "HEAD":
                self.write_body(read, length, rule if response.status < 300 else None)
        finally:
            connection.close()

    def do_CONNECT(self):
        """Tunnels to the requested host (an HTTPS proxy), recording the target."""
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=30)
        except OSError as error:
            self.record(502, error=str(error))
            return self.send(502, b"")
        self.record(200, tunnel=True)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]

        def pump(source, sink):
            try:
                while True:
                    data = source.recv(1 << 16)
                    if not data:
                        break
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for s_ in sockets:
                    try:
                        s_.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        other = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        other.start()
        pump(self.connection, upstream)
        other.join()
        upstream.close()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root")
    parser.add_argument("--v2", action="store_true")
    parser.add_argument("--upstream")
    ARGS = parser.parse_args()
    server = Server(("127.0.0.1", ARGS.port), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
