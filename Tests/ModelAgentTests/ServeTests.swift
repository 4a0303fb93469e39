import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import Testing

@testable import ModelAgent

/// The proxied port's pure parts: probe recognition, header rewriting, the readiness probe
/// spec, model names in paths, the drain's bookkeeping.
struct ServeTests {
    @Test func probesAreRecognisedAsKnativeDoes() {
        func kind(_ headers: [(String, String)]) -> ProbeRequest? { ProbeRequest.classify(HTTPHeaders(headers)) }
        #expect(kind([("User-Agent", "kube-probe/1.30")]) == .health)
        #expect(kind([("K-Kubelet-Probe", "queue")]) == .health)
        #expect(kind([("K-Network-Probe", "queue")]) == .health)
        #expect(kind([("User-Agent", "Knative-Activator-Probe")]) == .health)
        #expect(kind([("K-Network-Probe", "probe"), ("K-Network-Hash", "abc")]) == .network(hash: "abc"))
        #expect(kind([("K-Network-Probe", "probe")]) == .network(hash: nil))
        #expect(kind([("User-Agent", "curl/8"), ("K-Network-Probe", "")]) == nil)
        #expect(kind([]) == nil)
    }

    /// The head the proxy sends upstream for the request `text`, parsed back.
    private func upstream(_ text: String, clientAddress: String?) throws -> HTTP1RequestHead {
        var input = ByteBuffer(string: text)
        var scanned = 0
        let head = try #require(try HTTP1Parser.requestHead(&input, scanned: &scanned))
        // What the proxy refuses is never forwarded.
        try HTTP1Parser.checkHost(head)
        _ = try HTTP1Parser.requestFraming(head)
        var out = ByteBuffer()
        ProxyHeaders.upstreamRequest(head, clientAddress: clientAddress, serverAuthority: "127.0.0.1:8080", into: &out)
        scanned = 0
        let sent = try #require(try HTTP1Parser.requestHead(&out, scanned: &scanned))
        #expect(out.readableBytes == 0)
        try HTTP1Parser.checkHost(sent)
        return sent
    }

    /// The head the proxy sends the client for the response `text`, parsed back, and
    /// whether the connection closes after it.
    private func downstream(
        _ text: String, requestVersion: HTTPVersion, keepAlive: Bool
    ) throws -> (head: HTTP1ResponseHead, closeAfter: Bool) {
        var input = ByteBuffer(string: text)
        var scanned = 0
        let head = try #require(try HTTP1Parser.responseHead(&input, scanned: &scanned))
        let framing = try HTTP1Parser.responseFraming(head, requestMethod: .GET)
        var out = ByteBuffer()
        let closeAfter = ProxyHeaders.downstreamResponse(
            head, framing: framing, requestVersion: requestVersion, keepAlive: keepAlive, into: &out)
        scanned = 0
        let sent = try #require(try HTTP1Parser.responseHead(&out, scanned: &scanned))
        #expect(out.readableBytes == 0)
        return (sent, closeAfter)
    }

    @Test func requestHeadsLoseHopByHopHeadersAndGainForwardedOnes() throws {
        let out = try upstream(
            "POST /v2/models/m/infer?x=%2F HTTP/1.1\r\nHost: svc.example\r\nConnection: keep-alive, X-Private\r\n"
                + "X-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
                + "Proxy-Authorization: s\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.1\r\n"
                + "x-forwarded-for: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nContent-Type:  application/json \r\n\r\n",
            clientAddress: "127.0.0.1")
        #expect(out.version == .http1_1 && out.method == .POST && out.uri == "/v2/models/m/infer?x=%2F")
        let headers = out.headers
        for name in ["connection", "x-private", "keep-alive", "te", "upgrade", "proxy-authorization"] {
            #expect(!headers.contains(name: name), "\(name)")
        }
        #expect(headers["transfer-encoding"] == ["chunked"])
        #expect(headers["x-forwarded-for"] == ["10.0.0.1, 10.0.0.2, 127.0.0.1"])
        #expect(headers["x-forwarded-proto"] == ["https"])
        #expect(headers["x-forwarded-host"] == ["svc.example"])
        #expect(headers["host"] == ["svc.example"] && headers["content-type"] == ["application/json"])

        let empty = try upstream("POST / HTTP/1.1\r\nHost: a\r\n\r\n", clientAddress: nil).headers
        #expect(empty["content-length"] == ["0"] && empty["x-forwarded-for"].isEmpty)
        #expect(empty["x-forwarded-proto"] == ["http"] && empty["x-forwarded-host"] == ["a"])
        let get = try upstream("GET / HTTP/1.1\r\nHost: a\r\n\r\n", clientAddress: nil)
        #expect(!get.headers.contains(name: "content-length"))
        // A list or repeats of one length go on as one field; a length named in Connection stays.
        let listed = try upstream(
            "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nConnection: Content-Length\r\ncontent-length: 5\r\n\r\n",
            clientAddress: nil)
        #expect(listed.headers["content-length"] == ["5"])
        // The forwarded chain goes on even when a client lists it in Connection.
        let chain = try upstream(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n",
            clientAddress: "127.0.0.1")
        #expect(chain.headers["x-forwarded-for"] == ["9.9.9.9, 127.0.0.1"])
        #expect(throws: HTTP1ParseError.malformed("too many connection options")) {
            let options = (0...HTTP1Parser.maxConnectionTokens).map { "o\($0)" }.joined(separator: ",")
            _ = try upstream("GET / HTTP/1.1\r\nHost: a\r\nConnection: \(options)\r\n\r\n", clientAddress: nil)
        }
    }

    /// RFC 9112 §3.2: one Host field (none from an HTTP/1.0 client, which the proxy
    /// completes), holding a host and port, else 400.
    @Test func requestsNameOneHost() throws {
        let old = try upstream("GET / HTTP/1.0\r\n\r\n", clientAddress: nil).headers
        #expect(old["host"] == ["127.0.0.1:8080"] && !old.contains(name: "x-forwarded-host"))
        let named = try upstream("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", clientAddress: nil).headers
        #expect(named["host"] == ["[::1]:80"] && named["x-forwarded-host"] == ["[::1]:80"])
        let oldNamed = try upstream("GET / HTTP/1.0\r\nHost: a\r\n\r\n", clientAddress: nil).headers
        #expect(oldNamed["host"] == ["a"] && oldNamed["x-forwarded-host"] == ["a"])
        // Host is never dropped as hop-by-hop: the next hop needs it.
        let listed = try upstream("GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n", clientAddress: nil)
        #expect(listed.headers["host"] == ["a"])
        let refused: [(String, String)] = [
            ("GET / HTTP/1.1\r\n\r\n", "no Host field"),
            ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "more than one Host field"),
            ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host field"),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "bad Host field"),
            ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "bad Host field"),
            ("GET / HTTP/1.1\r\nHost:\r\n\r\n", "bad Host field"),
        ]
        for (text, reason) in refused {
            #expect(throws: HTTP1ParseError.malformed(reason), "\(text)") { _ = try upstream(text, clientAddress: nil) }
        }
        func valid(_ value: String) -> Bool {
            Array(value.utf8).withUnsafeBytes { HostField.isValid($0[...]) }
        }
        for good in [
            "a", "a.b-c_d~", "a:80", "a:", "10.0.0.1:65535", "%41b", "[::1]:8080", "[::1]:", "[::ffff:1.2.3.4]",
            "[v1.x:y]",
        ] {
            #expect(valid(good), "\(good)")
        }
        for bad in [
            "", ":80", "a:b:c", "a:x", "a:80:90", "a:65536", "a:000080", "[", "[]", "a]b", "[::1]x", "[::1", "[1.2]",
            "[v.x]", "[vz.x]", "%zz", "%4", "a%", "a%4", "a b", "a/b", "a@b", "a,b", "a%00b", "a%0a", "a%1F", "a%7f",
        ] {
            #expect(!valid(bad), "\(bad)")
        }
        // A key the server is not given makes no request idempotent.
        func forwardsKey(_ fields: String) throws -> Bool {
            var input = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n")
            var scanned = 0
            return try #require(try HTTP1Parser.requestHead(&input, scanned: &scanned)).fields.forwardsValue(
                named: "idempotency-key")
        }
        #expect(try forwardsKey("Idempotency-Key: k\r\n"))
        #expect(try !forwardsKey("Idempotency-Key:\r\n"))
        #expect(try !forwardsKey("Connection: idempotency-key\r\nIdempotency-Key: k\r\n"))
        let loop = EmbeddedEventLoop()
        #expect(UpstreamPool(eventLoop: loop, host: "::1", port: 8080).authority == "[::1]:8080")
        #expect(UpstreamPool(eventLoop: loop, host: "127.0.0.1", port: 80).authority == "127.0.0.1:80")
    }

    /// Repository calls are recognised however a server might read their path.
    @Test func repositoryCallsAreRecognisedInEverySpelling() {
        let calls = [
            "/v2/repository/models/m/load", "/v2/repository/models/m/unload?x=1", "//v2/repository/models/m/load",
            "/v2//repository/models/m/load", "/v2/./repository/models/m/load", "/v2/%72epository/models/m/load",
            "/V2/Repository/Models/m/load", "/x/../v2/repository/models/m/load", "/v2%2Frepository%2fmodels/m/load",
            "/inference.GRPCInferenceService/RepositoryModelLoad",
            "/inference.GRPCInferenceService/RepositoryModelUnload",
            "/v2/repository/models/../load", "/v2/repository/x/models/m/load", "/v2/repository/models/m/%2e%2e/load",
            "/v2/x/.%2e/repository/models/m/load", "/v2/repository/../models/m/load",
            "/v2/repository/%2e%2e/models/m/load",
        ]
        for path in calls { #expect(InferenceRoute.changesRepository(path: path), "\(path)") }
        let others = [
            "/v2/models/m/infer", "/v2/repository/index", "/v2/repository/index?ready=1", "/v2/repository",
            "/v1/models/m:predict", "/v2/x/../models/m",
            "/inference.GRPCInferenceService/ModelInfer", "/v2/%zz/repository/models/m/load",
        ]
        for path in others { #expect(!InferenceRoute.changesRepository(path: path), "\(path)") }
        #expect(InferenceRoute.lenientPath("/A/%41/./b/../c//d?q=/x") == "/a/a/c/d")
    }

    /// HTTP/2 streams are checked as HTTP/1 requests are: a path, and one valid host.
    @Test func h2RequestsNameAPathAndOneHost() {
        let fine: [HPACKHeaders] = [
            [":method": "GET", ":path": "/a", ":authority": "a:80"],
            [":method": "OPTIONS", ":path": "*", ":authority": "a"],
            HPACKHeaders([(":method", "GET"), (":path", "/a"), (":authority", "A"), ("host", "a")]),
            [":method": "CONNECT", ":authority": "a:443"],
            [":method": "POST", ":path": "/inference.GRPCInferenceService/ModelInfer"],
        ]
        for headers in fine { #expect(H2ProxyHeaders.requestProblem(headers) == nil, "\(headers)") }
        let refused: [(HPACKHeaders, String)] = [
            ([":method": "GET", ":path": "http://other/a", ":authority": "a"], "request target not a path"),
            ([":method": "GET", ":path": "*", ":authority": "a"], "request target not a path"),
            ([":method": "GET", ":authority": "a"], "request target not a path"),
            (
                HPACKHeaders([(":method", "GET"), (":path", "/"), (":authority", "a"), (":authority", "b")]),
                "more than one Host field"
            ),
            (
                HPACKHeaders([(":method", "GET"), (":path", "/"), ("host", "a"), ("host", "a")]),
                "more than one Host field"
            ),
            ([":method": "GET", ":path": "/", ":authority": "a b"], "bad Host field"),
            (
                HPACKHeaders([(":method", "GET"), (":path", "/"), (":authority", "a"), ("host", "b")]),
                "Host differs from :authority"
            ),
        ]
        for (headers, reason) in refused { #expect(H2ProxyHeaders.requestProblem(headers) == reason, "\(headers)") }
    }

    @Test func responseHeadsAreFramedForTheClient() throws {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nX-A: 1\r\n\r\n"
        let kept = try downstream(chunked, requestVersion: .http1_1, keepAlive: true)
        #expect(!kept.closeAfter && kept.head.headers["x-a"] == ["1"] && kept.head.code == 200)
        #expect(
            kept.head.headers["transfer-encoding"] == ["chunked"] && !kept.head.headers.contains(name: "connection"))
        let old = try downstream(chunked, requestVersion: .http1_0, keepAlive: true)
        #expect(old.closeAfter && old.head.version == .http1_0 && old.head.headers["connection"] == ["close"])
        #expect(!old.head.headers.contains(name: "transfer-encoding"))
        let closing = try downstream(chunked, requestVersion: .http1_1, keepAlive: false)
        #expect(closing.closeAfter && closing.head.headers["connection"] == ["close"])
        let sized = try downstream(
            "HTTP/1.1 201 Made\r\nContent-Length: 2,2\r\nKeep-Alive: x\r\n\r\n", requestVersion: .http1_0,
            keepAlive: true)
        #expect(!sized.closeAfter && sized.head.code == 201 && sized.head.headers["content-length"] == ["2"])
        #expect(sized.head.headers["connection"] == ["keep-alive"] && !sized.head.headers.contains(name: "keep-alive"))
        let unsized = try downstream(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: gzip\r\n\r\n",
            requestVersion: .http1_1, keepAlive: true)
        #expect(unsized.closeAfter && !unsized.head.headers.contains(name: "content-length"))
        // A coding field naming nothing: the body is read until the server closes.
        let blank = try downstream(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n", requestVersion: .http1_1,
            keepAlive: true)
        #expect(blank.closeAfter && !blank.head.headers.contains(name: "transfer-encoding"))
        // No reason phrase: the status line keeps the space before it.
        var bare = ByteBuffer()
        var scanned = 0
        var input = ByteBuffer(string: "HTTP/1.1 204\r\n\r\n")
        let head = try #require(try HTTP1Parser.responseHead(&input, scanned: &scanned))
        _ = ProxyHeaders.downstreamResponse(
            head, framing: .none, requestVersion: .http1_1, keepAlive: true, into: &bare)
        #expect(String(buffer: bare) == "HTTP/1.1 204 \r\n\r\n")
        // Where no body follows, a list of one length is still restated, and a 204 has none.
        let notModified = try downstream(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 0, 0\r\n\r\n", requestVersion: .http1_1, keepAlive: true)
        #expect(notModified.head.headers["content-length"] == ["0"])
        let noContent = try downstream(
            "HTTP/1.1 204 No Content\r\nContent-Length: 42\r\n\r\n", requestVersion: .http1_1, keepAlive: true)
        #expect(!noContent.head.headers.contains(name: "content-length"))
        #expect(throws: HTTP1ParseError.self) {
            _ = try downstream(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5, 6\r\n\r\n", requestVersion: .http1_1, keepAlive: true)
        }
    }

    @Test func readinessProbeSpecsAreParsedAndBounded() throws {
        #expect(try ReadinessProbeSpec.parse(nil, defaultPort: 8080) == .none)
        #expect(try ReadinessProbeSpec.parse("  ", defaultPort: 8080) == .none)
        let single = try ReadinessProbeSpec.parse(
            #"{"tcpSocket":{"port":0,"host":"127.0.0.1"},"successThreshold":1}"#, defaultPort: 8080)
        #expect(single.probes == [.init(check: .tcp(host: "127.0.0.1", port: 8080), timeout: .seconds(1))])
        let list = try ReadinessProbeSpec.parse(
            #"[{"httpGet":{"path":"ready","port":"9000","scheme":"HTTPS","httpHeaders":[{"name":"A","value":"b"}]},"#
                + #""timeoutSeconds":3},{"exec":{"command":["true"]}},{"grpc":{"port":9001}}]"#, defaultPort: 8080)
        #expect(
            list.probes == [
                .init(
                    check: .http(
                        scheme: "https", host: "127.0.0.1", port: 9000, path: "/ready",
                        headers: [.init(name: "A", value: "b")]), timeout: .seconds(3)),
                .init(check: .tcp(host: "127.0.0.1", port: 9001), timeout: .seconds(1)),
            ])
        #expect(list.skipped == ["probe 1: exec"])
        for bad in [
            "{", "[]x", #"{"httpGet":{"port":"http"}}"#, #"{"httpGet":{"port":65536}}"#, #"{"tcpSocket":{"port":-1}}"#,
            #"{"httpGet":{"scheme":"FTP"}}"#, #"{"httpGet":{"httpHeaders":[{"name":"a b","value":"c"}]}}"#,
            #"{"httpGet":{"host":"a/b"}}"#, #"{"timeoutSeconds":1}"#, #"{"httpGet":{"port":1e30}}"#,
            "[" + Array(repeating: #"{"tcpSocket":{}}"#, count: 17).joined(separator: ",") + "]",
        ] {
            #expect(throws: ReadinessProbeSpec.Invalid.self, "\(bad)") {
                try ReadinessProbeSpec.parse(bad, defaultPort: 8080)
            }
        }
    }

    @Test func modelNamesAreTakenFromV1AndV2Paths() {
        func name(_ path: String) -> String? { ModelTraffic.modelName(inPath: path)?.rawValue }
        #expect(name("/v2/models/iris/infer") == "iris")
        #expect(name("/v2/models/iris/versions/3/infer?x=1") == "iris")
        #expect(name("/v2/models/iris") == "iris")
        #expect(name("/v1/models/iris:predict") == "iris")
        #expect(name("/v1/models/iris") == "iris")
        #expect(name("/v2/models/../infer") == nil)
        #expect(name("/v2/models/") == nil)
        #expect(name("/v2/health/ready") == nil)
        #expect(name("/openai/v1/completions") == nil)
    }

    @Test func drainCountsRequestsAndStartsOnce() async {
        let drain = TrafficDrain()
        #expect(!drain.isDraining)
        drain.requestStarted()
        drain.begin()
        #expect(drain.isDraining && drain.inFlight == 1)
        drain.requestFinished()
        #expect(drain.inFlight == 0)
        // A zero quiet period with nothing in flight returns at once.
        await drain.waitUntilQuiet(.zero)
        await drain.waitForInFlight(upTo: .zero)
    }

    @Test func theHTTP2PrefaceSelectsH2cAndAnythingElseHTTP1() {
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        #expect(ProxyProtocolDetector.decide(preface) == .h2)
        #expect(ProxyProtocolDetector.decide(preface + [0, 0, 18]) == .h2)
        for cut in [0, 1, 3, 16, 23] { #expect(ProxyProtocolDetector.decide(preface.prefix(cut)) == nil, "\(cut)") }
        #expect(ProxyProtocolDetector.decide(Array("POST /v2".utf8)) == .http1)
        #expect(ProxyProtocolDetector.decide(Array("PRI * HTTP/1.1\r\n".utf8)) == .http1)
        #expect(ProxyProtocolDetector.decide(Array("P".utf8)) == nil)
    }

    @Test func gRPCRequestsNameTheirModelInTheFirstField() {
        func frame(_ message: [UInt8], compressed: UInt8 = 0) -> [UInt8] {
            let n = UInt32(message.count)
            return [compressed, UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + message
        }
        func string(_ field: UInt8, _ text: String) -> [UInt8] {
            [field << 3 | 2, UInt8(text.utf8.count)] + Array(text.utf8)
        }
        let inputs: [UInt8] = [5 << 3 | 2, 3, 1, 2, 3]
        let iris = frame(string(1, "iris") + string(2, "1") + inputs)
        #expect(GRPCModelName.parse(iris) == .name("iris"))
        // Every cut before the name ends asks for more; from there on the name is known.
        let nameEnd = 5 + 2 + 4
        for cut in 0..<nameEnd { #expect(GRPCModelName.parse(Array(iris.prefix(cut))) == .needMore, "\(cut)") }
        #expect(GRPCModelName.parse(Array(iris.prefix(nameEnd))) == .name("iris"))
        // Fields before it are skipped: a string, a varint, fixed64 and fixed32.
        let skipped =
            string(3, "req-7") + [4 << 3 | 0, 0x96, 0x01] + [6 << 3 | 1] + [UInt8](repeating: 9, count: 8)
            + [7 << 3 | 5, 1, 2, 3, 4]
        #expect(GRPCModelName.parse(frame(skipped + string(1, "m-2"))) == .name("m-2"))
        // Compressed, nameless, malformed or oversized: unknown, never a guess.
        #expect(GRPCModelName.parse(frame(string(1, "iris"), compressed: 1)) == .unknown)
        #expect(GRPCModelName.parse(frame(string(2, "1"))) == .unknown)
        #expect(GRPCModelName.parse(frame([1 << 3 | 3])) == .unknown)  // a group
        #expect(GRPCModelName.parse(frame([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])) == .unknown)
        #expect(GRPCModelName.parse(frame([0x08] + [UInt8](repeating: 0xff, count: 11))) == .unknown)
        #expect(GRPCModelName.parse(frame([0x0a, 0x05, 0x61])) == .unknown)  // the message ends inside the name
        #expect(GRPCModelName.parse(frame([0x0a, 0x02, 0xff, 0xfe])) == .unknown)  // not UTF-8
        // A first field longer than the window hides the name.
        let long = [UInt8](repeating: 0x61, count: 600)
        let bigFirst = frame([3 << 3 | 2, 0xd8, 0x04] + long + string(1, "late"))
        #expect(GRPCModelName.parse(bigFirst) == .unknown)
        #expect(GRPCModelName.parse(Array(bigFirst.prefix(GRPCModelName.window))) == .unknown)
    }

    @Test func h2RequestsKeepPseudoHeadersAndTrailersTE() {
        let headers: HPACKHeaders = [
            ":method": "POST", ":scheme": "http", ":authority": "svc.example", ":path": "/inference.X/ModelInfer",
            "te": "trailers", "content-type": "application/grpc", "connection": "close", "proxy-authorization": "s",
            "x-forwarded-for": "10.0.0.1",
        ]
        let out = H2ProxyHeaders.upstreamRequest(headers, clientAddress: "127.0.0.1")
        #expect(Array(out.map(\.name).prefix(4)) == [":method", ":scheme", ":authority", ":path"])
        #expect(out[":path"] == ["/inference.X/ModelInfer"] && out["te"] == ["trailers"])
        #expect(out["connection"].isEmpty && out["proxy-authorization"].isEmpty)
        #expect(out["x-forwarded-for"] == ["10.0.0.1, 127.0.0.1"])
        #expect(out["x-forwarded-proto"] == ["http"] && out["x-forwarded-host"] == ["svc.example"])
        let gzipTE = H2ProxyHeaders.upstreamRequest([":method": "GET", "te": "gzip"], clientAddress: nil)
        #expect(gzipTE["te"].isEmpty && gzipTE["x-forwarded-for"].isEmpty)
        let response = H2ProxyHeaders.downstreamResponse([":status": "200", "keep-alive": "x", "grpc-status": "0"])
        #expect(response.map(\.name) == [":status", "grpc-status"])
    }
}
