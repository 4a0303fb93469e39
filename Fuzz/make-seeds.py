#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into Fuzz/corpus/<target>/: small valid
inputs of each format (and a few near misses), so the fuzzers start past the magic
numbers. Re-run after changing it; the files are committed."""
import gzip, io, json, os, shutil, tarfile, zipfile, zlib

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


shutil.rmtree(root, ignore_errors=True)

entry = {"modelName": "iris", "modelSpec": {"storageUri": "s3://models/iris", "framework": "sklearn", "memory": "256Mi"}}
put("models-json", "one", json.dumps([entry]))
put("models-json", "many", json.dumps([entry, {"modelName": "b", "modelSpec": {"storageUri": "gs://b/x", "memory": 1e9}},
                                        {"modelName": "../x", "modelSpec": {}}, {"modelName": "c"}]))
put("models-json", "null", "null")
put("models-json", "empty", "[]")

for i, q in enumerate(["256Mi", "1G", "0.5Gi", "1e9", "100m", "7Ei", "+1Ki", "0.000000001", "12345678901234567890"]):
    put("quantity", "q%d" % i, q)

put("marker", "spec", json.dumps({"storageUri": "s3://b/m", "framework": "sklearn", "memory": "1Gi"}))
put("marker", "minimal", json.dumps({"storageUri": "s3://b/m"}))


def tar_bytes(fmt, entries, compress=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


files = [("model.joblib", b"weights" * 10, "file"), ("sub", b"", "dir"), ("sub/config.pbtxt", b'name: "m"\n', "file")]
long_name = "d/" * 60 + "long.bin"
put("tar", "ustar", tar_bytes(tarfile.USTAR_FORMAT, files))
put("tar", "pax", tar_bytes(tarfile.PAX_FORMAT, files + [(long_name, b"x", "file")]))
put("tar", "gnu", tar_bytes(tarfile.GNU_FORMAT, files + [(long_name, b"x", "file")]))

for name, zip64 in (("plain", False), ("zip64", True)):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("dir/", b"")
        with z.open(zipfile.ZipInfo("a.txt"), "w", force_zip64=zip64) as e:
            e.write(b"abc" * 20)
        z.writestr(zipfile.ZipInfo("b.bin"), b"\x00\x01" * 40, compress_type=zipfile.ZIP_DEFLATED)
    put("zip", name, buf.getvalue())

# gzip target: the first byte picks the wrapper (bit 0: raw) and whether to untar (bit 1).
deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
put("gzip", "raw", b"\x01" + deflater.compress(b"hello hello hello" * 20) + deflater.flush())
put("gzip", "gzip", b"\x00" + gzip.compress(b"model weights " * 50, mtime=0))
put("gzip", "members", b"\x00" + gzip.compress(b"first ", mtime=0) + gzip.compress(b"second", mtime=0) + bytes(16))
put("gzip", "targz", b"\x02" + tar_bytes(tarfile.PAX_FORMAT, files, compress=True))

put("xml", "list", """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><Prefix>m/</Prefix><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<Contents><Key>m/a+b%2Fc.bin</Key><Size>10</Size><ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag></Contents>
<Contents><Key>m/dir/</Key><Size>0</Size><ETag>"x-2"</ETag></Contents>
<NextContinuationToken>tok&amp;en</NextContinuationToken></ListBucketResult>""")
put("xml", "sts", """<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
<AccessKeyId>AKID</AccessKeyId><SecretAccessKey>secret</SecretAccessKey><SessionToken>token</SessionToken>
<Expiration>2026-11-22T06:00:00.123+01:00</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>""")
put("xml", "error", "<Error><Code>SlowDown</Code><Message>Please &#x41;&#66; reduce</Message></Error>")

put("pbtxt", "config", """name: "add_one"  # the model
backend: "python"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
parameters { key: "k" value: { string_value: 'it\\'s' } }
default_model_filename: "model.py"
""")
put("pbtxt", "nameless", "platform: \"onnxruntime_onnx\"\n")
put("pbtxt", "unterminated", 'pname: "')  # trapped once (found by this target)

put("gcs-json", "page", json.dumps({"items": [{"name": "m/a.bin", "size": "12", "crc32c": "AAAAAA==", "md5Hash": "XrY7u+Ae7tCTyyK7j1rNww==",
                                                 "generation": "1700000000"}], "nextPageToken": "p2"}))
put("gcs-json", "token", json.dumps({"access_token": "ya29.token", "expires_in": 3599, "token_type": "Bearer"}))
put("gcs-json", "error", json.dumps({"error": {"code": 403, "message": "denied", "errors": []}}))
put("gcs-json", "mlserver", json.dumps({"error": "Model iris not found"}))
put("gcs-json", "headers", json.dumps({"Authorization": "Bearer x", "X-Test": "y"}))

for i, u in enumerate(["s3://bucket/models/iris", "gs://b/", "https://user:pw@host:8443/m/model.tar.gz?X-Amz-Signature=ab#f",
                       "file:///mnt/pvc/m", "pvc://claim/models/x", "/abs/path", "http://[::1]:80/a%20b.bin",
                       "http://admin:p%3Fw@h/x", "2026-11-22T06:00:00Z", "hdfs://n/p", "5QfnJC6n+V0=", "pUaqcg==-3"]):
    put("uri", "u%d" % i, u)

for i, p in enumerate([
        '{"tcpSocket":{"port":0,"host":"127.0.0.1"},"successThreshold":1}',
        '[{"httpGet":{"path":"/v2/health/ready","port":"8080","scheme":"HTTP","httpHeaders":[{"name":"K-Kubelet-Probe","value":"queue"}]},'
        '"timeoutSeconds":3},{"exec":{"command":["true"]}},{"grpc":{"port":9001}}]',
        '{"httpGet":{"port":1e30}}', "/v2/models/iris/versions/1/infer?x=1", "/v1/models/iris:predict"]):
    put("readiness-probe", "p%d" % i, p)


def grpc_frame(message, compressed=0):
    return bytes([compressed]) + len(message).to_bytes(4, "big") + message


def field(number, wire, payload):
    return bytes([number << 3 | wire]) + payload


def lengthed(data):
    return bytes([len(data)]) + data


iris = field(1, 2, lengthed(b"iris")) + field(2, 2, lengthed(b"1")) + field(5, 2, lengthed(b"\x0a\x07predict"))
for i, m in enumerate([
        grpc_frame(iris), grpc_frame(field(3, 2, lengthed(b"req-1")) + iris), grpc_frame(iris, compressed=1),
        grpc_frame(field(3, 0, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01") + iris),
        grpc_frame(field(1, 2, b"\xff\xff\xff\xff\x0f")), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + grpc_frame(iris),
        b"POST /v2/models/iris/infer HTTP/1.1\r\n"]):
    put("grpc-message", "g%d" % i, m)

# The memory cache's recency file: model names, one per line, most recent first.
for i, m in enumerate([b"iris\nm2\nm1\n", b"a\n\n../b\nc\r\n\xff\xfe\nc\n", b"x" * 300 + b"\nok"]):
    put("recency", "r%d" % i, m)

# The proxy's HTTP/1 parser: the first byte picks requests (even) or responses (odd), raw or
# decoded chunks (bit 1) and the size of each read (the rest); then the connection's bytes.
for name, m in [
        ("request-length", b"\x00POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: host\r\n\r\n"),
        ("request-chunked", b"\x04POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n"),
        ("request-pieces", b"\x08GET /a?b=c HTTP/1.0\r\nConnection: keep-alive, X\r\nX: 1\r\n\r\n"),
        ("response-chunked", b"\x01HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"),
        ("response-decoded", b"\x03HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"),
        ("response-close", b"\x01HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"),
        ("response-204", b"\x01HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok")]:
    put("http1", name, m)
