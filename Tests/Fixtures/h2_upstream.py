#!/usr/bin/env python3
"""An h2c (HTTP/2 prior knowledge) upstream for the agent's proxy tests, built on the h2
library so that flow control, resets and GOAWAY are the test's to decide.

  POST /upload             reads the body; JSON: size and sha256
  POST /slow-upload/<g>    takes 1 MiB of the body, then grants no flow-control window until
                           gate <g> opens; JSON: size
  GET  /bytes/<n>          n bytes of a fixed 1 MiB pattern, sent as the client's window allows
  GET  /reset-before-head  RST_STREAM (INTERNAL_ERROR) before any answer
  GET  /reset-after-head   a head and 64 KiB, then RST_STREAM (INTERNAL_ERROR)
  GET  /goaway             answers 200, then sends GOAWAY and closes the connection
  POST /_gate/<g>          opens gate <g>
  GET  /_arrived/<g>       how many requests have waited on gate <g>
Each connection runs in its own thread. Prints "PORT <n>" when listening on 127.0.0.1.
"""
import argparse
import hashlib
import json
import socket
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from fixture_gates import PATTERN, arrivals, arrived, gate


class Stream:
    def __init__(self, headers):
        self.headers = dict(headers)
        self.path = self.headers.get(":path", "/")
        self.size = 0
        self.sha = hashlib.sha256()
        self.held = 0  # bytes received but not yet granted back as window
        self.gated = False
        self.ended = False


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams = {}
        # The h2 state machine is touched by this connection's loop and by gate waiters.
        self.lock = threading.Lock()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        with self.lock:
            self.conn.initiate_connection()
            self.flush()
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            with self.lock:
                for event in self.conn.receive_data(data):
                    self.handle(event)
                self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.RequestReceived):
            stream = Stream(event.headers)
            self.streams[event.stream_id] = stream
            self.started(event.stream_id, stream)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                return
            stream.size += len(event.data)
            stream.sha.update(event.data)
            if stream.path.startswith("/slow-upload/") and not stream.gated and stream.size >= 1 << 20:
                stream.path = "/slow-upload-waiting/"
                stream.gated = True
                name = stream.headers[":path"][len("/slow-upload/"):]
                arrived(name)
                threading.Thread(target=self.release_after_gate, args=(event.stream_id, name), daemon=True).start()
            if stream.gated:
                stream.held += event.flow_controlled_length
            else:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ended = True
                self.finished(event.stream_id, stream)
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)

    def release_after_gate(self, stream_id, name):
        gate(name).wait(120)
        with self.lock:
            stream = self.streams.get(stream_id)
            if stream is None:
                return
            stream.gated = False
            stream.path = "/upload"  # from here on, read as it comes
            if stream.held:
                self.conn.acknowledge_received_data(stream.held, stream_id)
                stream.held = 0
            self.flush()

    def started(self, stream_id, stream):
        path = stream.path
        if path == "/reset-before-head":
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == "/reset-after-head":
            self.conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/octet-stream")])
            self.conn.send_data(stream_id, PATTERN[: 16 << 10])
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path.startswith("/bytes/"):
            self.send_bytes(stream_id, int(path[len("/bytes/"):]))

    def finished(self, stream_id, stream):
        path = stream.path
        if path == "/goaway":
            self.reply(stream_id, 200, {"bye": True})
            self.conn.close_connection()
            self.flush()
            self.sock.shutdown(socket.SHUT_RDWR)
        elif path.startswith("/_gate/"):
            gate(path[len("/_gate/"):]).set()
            self.reply(stream_id, 200, {"opened": True})
        elif path.startswith("/_arrived/"):
            count = arrivals(path[len("/_arrived/"):])
            self.reply(stream_id, 200, {"arrived": count})
        elif path == "/upload" or path.startswith("/slow-upload"):
            self.reply(stream_id, 200, {"size": stream.size, "sha256": stream.sha.hexdigest()})
        elif path.startswith("/bytes/") or path.startswith("/reset-"):
            pass
        else:
            self.reply(stream_id, 404, {"error": "no such fixture path " + path})

    def reply(self, stream_id, status, body):
        data = json.dumps(body).encode()
        self.conn.send_headers(
            stream_id, [(":status", str(status)), ("content-type", "application/json"), ("content-length", str(len(data)))]
        )
        self.conn.send_data(stream_id, data, end_stream=True)

    def send_bytes(self, stream_id, n):
        self.conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(n))])
        sent = 0
        while sent < n:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    return
                for event in self.conn.receive_data(data):
                    if not isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                        self.handle(event)
                continue
            chunk = min(window, n - sent)
            offset = sent % len(PATTERN)
            piece = (PATTERN[offset:] + PATTERN)[:chunk]
            sent += chunk
            self.conn.send_data(stream_id, piece, end_stream=sent == n)
        self.flush()


def serve(sock):
    connection = Connection(sock)
    try:
        connection.run()
    except (OSError, h2.exceptions.ProtocolError):
        pass
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print("PORT %d" % listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
