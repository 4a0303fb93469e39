#!/usr/bin/env python3
"""A strict stand-in for Google's OAuth token endpoint and the GCE metadata server.

POST /token
  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer: the assertion must be an RS256
  JWT signed by the key whose public half is --public-key, with iss == --client-email,
  aud == this endpoint's URL, scope == devstorage.read_only, exp - iat <= 3600.
  grant_type=refresh_token: client_id / client_secret / refresh_token must match.
GET /computeMetadata/v1/instance/service-accounts/default/token
  requires "Metadata-Flavor: Google".
Every request is recorded with the verdict; GET /_control/log lists them.
Tokens last --lifetime seconds. The chosen port is printed as "PORT <n>".
"""
import argparse
import base64
import http.server
import json
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

LOCK = threading.Lock()
LOG = []
COUNTER = [0]
FAIL_METADATA = [0]
ARGS = None
PUBLIC_KEY = None


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(prefix):
    with LOCK:
        COUNTER[0] += 1
        return "%s-%d" % (prefix, COUNTER[0])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, **entry):
        entry["path"] = self.path
        entry["method"] = self.command
        with LOCK:
            LOG.append(entry)

    def do_GET(self):
        if self.path == "/_control/log":
            with LOCK:
                return self.reply(200, LOG)
        if self.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            flavor = self.headers.get("Metadata-Flavor")
            if flavor != "Google":
                self.record(verdict="missing Metadata-Flavor")
                return self.reply(403, {"error": "Metadata-Flavor: Google header required"})
            with LOCK:
                failing = FAIL_METADATA[0] > 0
                if failing:
                    FAIL_METADATA[0] -= 1
            if failing:
                self.record(verdict="failed on purpose")
                return self.reply(503, {"error": "metadata server starting"})
            token = issue("metadata-token")
            self.record(verdict="ok", token=token)
            return self.reply(200, {"access_token": token, "expires_in": ARGS.lifetime, "token_type": "Bearer"})
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/token":
            return self.reply(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = self.check_jwt(form.get("assertion", ""))
        elif grant == "refresh_token":
            expected = (ARGS.client_id, ARGS.client_secret, ARGS.refresh_token)
            got = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
            problem = None if got == expected else "wrong refresh credentials"
        else:
            problem = "unsupported grant_type %r" % grant
        if problem:
            self.record(verdict=problem, grant=grant)
            return self.reply(400, {"error": "invalid_grant", "error_description": problem})
        token = issue("sa-token" if grant != "refresh_token" else "user-token")
        self.record(verdict="ok", grant=grant, token=token)
        self.reply(200, {"access_token": token, "expires_in": ARGS.lifetime, "token_type": "Bearer"})

    def check_jwt(self, assertion):
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(claims_b64))
            PUBLIC_KEY.verify(b64url_decode(signature_b64), (header_b64 + "." + claims_b64).encode(),
                              padding.PKCS1v15(), hashes.SHA256())
        except Exception as error:  # noqa: BLE001 - any defect is a rejection
            return "bad assertion: %s" % error
        if header.get("alg") != "RS256":
            return "alg is %r" % header.get("alg")
        if claims.get("iss") != ARGS.client_email:
            return "iss is %r" % claims.get("iss")
        audience = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        if claims.get("aud") != audience:
            return "aud is %r, expected %r" % (claims.get("aud"), audience)
        if claims.get("scope") != "https://www.googleapis.com/auth/devstorage.read_only":
            return "scope is %r" % claims.get("scope")
        now = time.time()
        if not (claims["iat"] - 60 <= now <= claims["exp"] and claims["exp"] - claims["iat"] <= 3600):
            return "bad iat/exp"
        return None


def main():
    global ARGS, PUBLIC_KEY
    parser = argparse.ArgumentParser()
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--client-email", required=True)
    parser.add_argument("--client-id", default="client-id")
    parser.add_argument("--client-secret", default="client-secret")
    parser.add_argument("--refresh-token", default="refresh-token")
    parser.add_argument("--lifetime", type=int, default=3600)
    parser.add_argument("--fail-metadata", type=int, default=0, help="answer the first N metadata requests with 503")
    ARGS = parser.parse_args()
    FAIL_METADATA[0] = ARGS.fail_metadata
    PUBLIC_KEY = serialization.load_pem_public_key(open(ARGS.public_key, "rb").read())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
