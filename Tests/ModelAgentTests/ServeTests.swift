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

    @Test func requestHeadsLoseHopByHopHeadersAndGainForwardedOnes() {
        let head = HTTPRequestHead(
            version: .http1_0, method: .POST, uri: "/v2/models/m/infer?x=%2F",
            headers: HTTPHeaders([
                ("Host", "svc.example"), ("Connection", "keep-alive, X-Private"), ("X-Private", "1"),
                ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Upgrade", "h2c"), ("Proxy-Authorization", "s"),
                ("Transfer-Encoding", "chunked"), ("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-Proto", "https"),
                ("Content-Type", "application/json"),
            ]))
        let out = ProxyHeaders.upstreamRequest(head, clientAddress: "127.0.0.1")
        #expect(out.version == .http1_1 && out.method == .POST && out.uri == head.uri)
        for name in ["connection", "x-private", "keep-alive", "te", "upgrade", "proxy-authorization"] {
            #expect(!out.headers.contains(name: name), "\(name)")
        }
        #expect(out.headers["transfer-encoding"] == ["chunked"])
        #expect(out.headers["x-forwarded-for"] == ["10.0.0.1, 127.0.0.1"])
        #expect(out.headers["x-forwarded-proto"] == ["https"])
        #expect(out.headers["x-forwarded-host"] == ["svc.example"])
        #expect(out.headers["host"] == ["svc.example"] && out.headers["content-type"] == ["application/json"])

        let empty = ProxyHeaders.upstreamRequest(
            HTTPRequestHead(version: .http1_1, method: .POST, uri: "/", headers: HTTPHeaders()), clientAddress: nil)
        #expect(empty.headers["content-length"] == ["0"] && empty.headers["x-forwarded-for"].isEmpty)
        let get = ProxyHeaders.upstreamRequest(
            HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: HTTPHeaders()), clientAddress: nil)
        #expect(!get.headers.contains(name: "content-length"))
    }

    @Test func responseHeadsAreFramedForTheClient() {
        let upstream = HTTPResponseHead(
            version: .http1_1, status: .ok,
            headers: HTTPHeaders([("Transfer-Encoding", "chunked"), ("Connection", "close"), ("X-A", "1")]))
        let kept = ProxyHeaders.downstreamResponse(upstream, requestVersion: .http1_1, keepAlive: true)
        #expect(!kept.closeAfter && kept.head.headers["x-a"] == ["1"])
        #expect(
            !kept.head.headers.contains(name: "transfer-encoding") && !kept.head.headers.contains(name: "connection"))
        let old = ProxyHeaders.downstreamResponse(upstream, requestVersion: .http1_0, keepAlive: true)
        #expect(old.closeAfter && old.head.version == .http1_0 && old.head.headers["connection"] == ["close"])
        let closing = ProxyHeaders.downstreamResponse(upstream, requestVersion: .http1_1, keepAlive: false)
        #expect(closing.closeAfter && closing.head.headers["connection"] == ["close"])
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
}
