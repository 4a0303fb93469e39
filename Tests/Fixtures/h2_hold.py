#!/usr/bin/env python3
"""A client that holds HTTP/2 streams open: it opens N POST streams on one h2c connection,
sends 10 bytes of each body and never ends them, prints "HOLDING <n>", and keeps the
connection until it is killed (the agent's proxy tests: held streams must not block others).

  h2_hold.py <port> <n> [path]
"""
import socket
import sys

import h2.config
import h2.connection


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    path = sys.argv[3] if len(sys.argv) > 3 else "/upload"
    sock = socket.create_connection(("127.0.0.1", port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    for i in range(n):
        stream = 1 + 2 * i
        conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", path)])
        conn.send_data(stream, b"0123456789")
    sock.sendall(conn.data_to_send())
    print("HOLDING %d" % n, flush=True)
    while True:
        data = sock.recv(65536)
        if not data:
            return
        conn.receive_data(data)
        sock.sendall(conn.data_to_send())


if __name__ == "__main__":
    main()
