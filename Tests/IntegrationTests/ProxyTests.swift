import Foundation
import TestSupport
import Testing

/// The proxied port (`--port`): inference traffic streamed to the model server, probes
/// answered by the agent, failures, drain. The model server here is a small upstream whose
/// slow answers move on when the test says so; MLServer and Triton are reached through the
/// proxy in AgentLifecycleTests and TritonTests.
@Suite(.timeLimit(.minutes(5)))
struct ProxyTests {
    struct World {
        let temp: TemporaryDirectory
        let upstream: ProxyUpstream
        let config: ConfigDirectory

        init() async throws {
            temp = try TemporaryDirectory("proxy")
            upstream = try await ProxyUpstream(logDirectory: temp.path)
            config = try ConfigDirectory(path: temp.path + "/configs")
            try config.write([])
        }

        func agent(
            serverURL: String? = nil, arguments: [String] = [], environment: [String: String] = [:]
        ) async throws -> AgentProcess {
            try await AgentProcess(
                configDir: config.path, modelDir: temp.path + "/models", serverURL: serverURL ?? upstream.baseURL,
                arguments: AgentProcess.quickRetries + arguments, environment: environment, logDirectory: temp.path)
        }
    }

    struct Echo: Decodable {
        let method: String
        let target: String
        let headers: [String: [String]]
        let size: Int
    }

    @Test func forwardsRequestsAndAnswersProbesItself() async throws {
        let w = try await World()
        let agent = try await w.agent()
        try await eventually("readiness") { await agent.isReady() }

        let echo = try await TestHTTP.get(
            agent.proxyURL + "/echo/a?x=1&y=%2F",
            headers: [
                "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5",
                "Proxy-Authorization": "Basic c2VjcmV0", "X-Custom": "kept", "X-Forwarded-For": "10.0.0.1",
            ]
        ).json(Echo.self)
        #expect(echo.method == "GET" && echo.target == "/echo/a?x=1&y=%2F")
        #expect(echo.headers["x-custom"] == ["kept"])
        #expect(echo.headers["x-hop"] == nil && echo.headers["keep-alive"] == nil)
        #expect(echo.headers["proxy-authorization"] == nil)
        #expect(echo.headers["x-forwarded-for"] == ["10.0.0.1, 127.0.0.1"])
        #expect(echo.headers["x-forwarded-proto"] == ["http"])
        #expect(echo.headers["x-forwarded-host"] == ["127.0.0.1:\(agent.proxyPort)"])

        // A chunked upload, and one that waits for 100 Continue, arrive whole.
        let chunked = try await runShell(
            "head -c 3000000 /dev/zero | curl -sS -T - -X POST \(agent.proxyURL)/echo/up", in: w.temp.path)
        #expect(chunked.status == 0 && chunked.output.contains(#""size": 3000000"#), "\(chunked.output)")
        let continued = try await runShell(
            "head -c 2000000 /dev/zero > \(w.temp.path)/two.bin && curl -sS -v --expect100-timeout 60"
                + " -H 'Expect: 100-continue' --data-binary @\(w.temp.path)/two.bin \(agent.proxyURL)/echo/c 2>&1",
            in: w.temp.path)
        #expect(continued.output.contains("HTTP/1.1 100 Continue"), "\(continued.output)")
        #expect(continued.output.contains(#""size": 2000000"#))

        // The agent's own endpoints are not on this port: those paths belong to the server.
        for path in ["/v1/models", "/v1/models/alpha", "/metrics", "/readyz", "/livez"] {
            let answer = try await TestHTTP.get(agent.proxyURL + path)
            #expect(answer.status == 404 && answer.text.contains("no such fixture path"), "\(path)")
        }

        // Probes, on any path, never reach the server.
        let kubelet = try await TestHTTP.get(agent.proxyURL + "/any", headers: ["User-Agent": "kube-probe/1.30"])
        #expect(kubelet.status == 200)
        let queue = try await TestHTTP.get(agent.proxyURL + "/", headers: ["K-Network-Probe": "queue"])
        #expect(queue.status == 200)
        let network = try await runShell(
            "curl -si -H 'K-Network-Probe: probe' -H 'K-Network-Hash: h1' \(agent.proxyURL)/x", in: w.temp.path)
        #expect(network.output.contains("HTTP/1.1 200") && network.output.contains("K-Network-Hash: h1"))
        let noHash = try await TestHTTP.get(agent.proxyURL + "/x", headers: ["K-Network-Probe": "probe"])
        #expect(noHash.status == 400)
        await agent.stop()
        await w.upstream.stop()
    }

    @Test func countsTrafficPerManagedModel() async throws {
        let w = try await World()
        let source = try w.temp.subdirectory("artifact")
        try write("w", to: source + "/w.bin")
        // The upstream is no V2 server: the model stays Loading, but it is managed.
        try w.config.write([ConfigDirectory.Entry("alpha", source)])
        let agent = try await w.agent()
        try await eventually("alpha to be known") { try await agent.model("alpha") != nil }

        for path in ["/echo/v2/models/alpha/infer", "/v2/models/alpha/infer", "/v2/models/alpha/versions/1/infer"] {
            _ = try await TestHTTP.post(agent.proxyURL + path, json: "{}")
        }
        _ = try await TestHTTP.get(agent.proxyURL + "/v1/models/alpha:predict")
        _ = try await TestHTTP.post(agent.proxyURL + "/v2/models/invented-\(UUID())/infer", json: "{}")

        let metrics = try await TestHTTP.get(agent.statusURL + "/metrics").text
        #expect(metrics.contains(#"model_agent_proxy_requests_total{model="alpha"} 3"#), "\(metrics)")
        #expect(metrics.contains(#"model_agent_proxy_requests_total{model=""} 2"#))
        #expect(!metrics.contains("invented-"))
        #expect(metrics.contains(#"model_agent_proxy_request_duration_seconds_count{model="alpha"} 3"#))
        let status = try await TestHTTP.get(agent.statusURL + "/v1/models/alpha").text
        #expect(status.contains(#""inFlightRequests":0"#) && status.contains(#""lastRequest":"#), "\(status)")
        await agent.stop()
        await w.upstream.stop()
    }

    @Test func streamsAGibibyteEachWayInBoundedMemory() async throws {
        let w = try await World()
        let agent = try await w.agent()
        let size = 1 << 30
        let zeros = try await runShell("head -c \(size) /dev/zero | sha256sum", in: w.temp.path)
        let upload = try await runShell(
            "head -c \(size) /dev/zero | curl -sS -T - -X POST \(agent.proxyURL)/upload", in: w.temp.path)
        #expect(upload.output.contains(#""size": \#(size)"#), "\(upload.output)")
        #expect(upload.output.contains(String(zeros.output.prefix(64))))

        let direct = try await runShell("curl -sS \(w.upstream.baseURL)/bytes/\(size) | sha256sum", in: w.temp.path)
        let proxied = try await runShell("curl -sS \(agent.proxyURL)/bytes/\(size) | sha256sum", in: w.temp.path)
        #expect(direct.output.count >= 64 && proxied.output == direct.output)
        let sized = try await runShell(
            "curl -sS '\(agent.proxyURL)/bytes/\(size)?sized=1' | sha256sum", in: w.temp.path)
        #expect(sized.output == direct.output)

        let peak = peakResidentBytes(of: agent.process.pid) ?? .max
        #expect(peak < 64 << 20, "peak RSS \(peak >> 20) MiB")
        await agent.stop()
        await w.upstream.stop()
    }

    @Test func aServerThatStopsReadingPausesTheUploadAndResumesIt() async throws {
        let w = try await World()
        let agent = try await w.agent()
        let size = 256 << 20
        let upload = try ChildProcess(
            name: "curl", executable: "/bin/sh",
            arguments: ["-c", "head -c \(size) /dev/zero | curl -sS -T - -X POST \(agent.proxyURL)/slow-upload/u1"],
            logPath: w.temp.path + "/slow-upload.log")
        try await eventually("the server to stop reading") { try await w.upstream.arrived("u1") == 1 }
        try await w.upstream.open("u1")
        #expect(try await upload.waitForExit(timeout: .seconds(120)) == 0)
        #expect(upload.output.contains(#""size": \#(size)"#), "\(upload.output)")
        let peak = peakResidentBytes(of: agent.process.pid) ?? .max
        #expect(peak < 64 << 20, "peak RSS \(peak >> 20) MiB")
        await agent.stop()
        await w.upstream.stop()
    }

    /// Requests sent back to back on one connection get their own answers in order; HEAD
    /// gets none of a body; CONNECT is refused and ends the connection.
    @Test func pipelinedRequestsKeepTheirOrder() async throws {
        let w = try await World()
        let agent = try await w.agent()
        let pipelined =
            "GET /echo/1 HTTP/1.1\r\nHost: a\r\n\r\n" + "HEAD /echo/2 HTTP/1.1\r\nHost: a\r\n\r\n"
            + "POST /echo/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            + "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
            + "GET /echo/never HTTP/1.1\r\nHost: a\r\n\r\n"
        let text = try exchangeTextOnLoopback(port: agent.proxyPort, pipelined)
        let first = text.range(of: #""target": "/echo/1""#)
        let third = text.range(of: #""target": "/echo/3""#)
        #expect(first != nil && third != nil && first!.lowerBound < third!.lowerBound, "\(text)")
        #expect(text.contains(#""size": 3"#))
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 4, "\(text)")
        #expect(text.contains("HTTP/1.1 405"))
        #expect(!text.contains("/echo/never"))
        await agent.stop()
        await w.upstream.stop()
    }

    /// Bodies pass through with their framing; heads say how they are framed, and nothing
    /// else: no length beside a transfer coding, one length for a list of equal ones, a
    /// close for a body that ends with it or that an HTTP/1.0 client cannot get chunked.
    @Test func answersAreFramedForEachClient() async throws {
        let w = try await World()
        let agent = try await w.agent()
        func exchange(_ request: String) throws -> String {
            try exchangeTextOnLoopback(port: agent.proxyPort, request).lowercased()
        }
        let host = "Host: a\r\n"
        let answers = try [
            exchange("GET /framed/te-and-length HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"),
            exchange("GET /framed/chunked HTTP/1.0\r\n" + host + "\r\n"),
            exchange("GET /framed/chunked HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"),
            exchange("GET /framed/lengths HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"),
            exchange("GET /framed/until-close HTTP/1.1\r\n" + host + "\r\n"),
            exchange(
                "POST /echo/n HTTP/1.1\r\n" + host + "Content-Length: 3, 3\r\nConnection: close\r\n\r\nabc"),
            // A length named hop-by-hop still frames the body on the next hop.
            exchange(
                "POST /echo/hop HTTP/1.1\r\n" + host + "Connection: Content-Length, close\r\n"
                    + "Content-Length: 40\r\n\r\nGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]
        // A length beside chunked framing goes; the chunks go on as they came.
        #expect(!answers[0].contains("content-length") && answers[0].contains("transfer-encoding: chunked"))
        #expect(answers[0].hasSuffix("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "\(answers[0])")
        // HTTP/1.0: the data only, delimited by the close.
        #expect(!answers[1].contains("transfer-encoding") && answers[1].contains("connection: close"))
        #expect(answers[1].hasSuffix("\r\n\r\nabcdefg"), "\(answers[1])")
        #expect(answers[2].hasSuffix("\r\n\r\n3;x=y\r\nabc\r\n4\r\ndefg\r\n0\r\nt: 1\r\n\r\n"), "\(answers[2])")
        #expect(answers[3].components(separatedBy: "content-length").count == 2, "\(answers[3])")
        #expect(answers[3].contains("content-length: 2\r\n") && answers[3].hasSuffix("\r\n\r\nok"))
        #expect(answers[4].contains("connection: close") && answers[4].hasSuffix("\r\n\r\nbody until the close"))
        #expect(answers[5].contains(#""content-length": ["3"]"#) && answers[5].contains(#""size": 3"#), "\(answers[5])")
        #expect(
            answers[6].contains(#""content-length": ["40"]"#) && answers[6].contains(#""size": 40"#), "\(answers[6])")
        #expect(!answers[6].contains("/echo/smuggled") && answers[6].components(separatedBy: "http/1.1 200").count == 2)
        // An HTTP/1.0 client that asks to keep the connection is told it is kept, by the
        // agent's own answers too.
        let probe = "GET /ready HTTP/1.0\r\nUser-Agent: kube-probe/1.30\r\n"
        let kept = try exchange(probe + "Connection: keep-alive\r\n\r\n" + probe + "\r\n")
        #expect(kept.components(separatedBy: "http/1.0 ").count == 3, "\(kept)")
        #expect(kept.components(separatedBy: "connection: keep-alive").count == 2, "\(kept)")
        await agent.stop()
        await w.upstream.stop()
    }

    /// One Host per request (RFC 9112 §3.2): an HTTP/1.1 request without one, or any with
    /// two, is refused; an HTTP/1.0 request without one reaches the server naming it. The
    /// agent's own answers to HEAD have no body.
    @Test func requestsNameOneHost() async throws {
        let w = try await World()
        let agent = try await w.agent()
        func exchange(_ request: String) throws -> String {
            try exchangeTextOnLoopback(port: agent.proxyPort, request)
        }
        let missing = try exchange("GET /echo/a HTTP/1.1\r\n\r\n")
        let twice = try exchange("HEAD /echo/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        let old = try exchange("GET /echo/a HTTP/1.0\r\n\r\n")
        #expect(missing.hasPrefix("HTTP/1.1 400 Bad Request") && missing.hasSuffix("\r\n\r\nno Host field\n"))
        #expect(twice.hasPrefix("HTTP/1.1 400 Bad Request") && twice.hasSuffix("\r\n\r\n"), "\(twice)")
        #expect(old.hasPrefix("HTTP/1.0 200") && old.contains(#""host": ["127.0.0.1:\#(w.upstream.port)"]"#), "\(old)")
        await agent.stop()
        await w.upstream.stop()
    }

    /// An idempotent request that fails on a kept-alive upstream connection is sent again,
    /// once, on a new one, only when the server closed it without a byte back: a server that
    /// began to answer, even with a malformed head, may have acted on the request.
    @Test func aRequestIsSentAgainOnlyWhenTheServerAnsweredNothing() async throws {
        let w = try await World()
        let agent = try await w.agent()
        // The first request leaves a kept-alive connection in the pool; the second takes it.
        func afterAnother(_ path: String, version: String = "1.1", then head: String? = nil) throws -> String {
            let first = "GET /echo/first HTTP/\(version)\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
            let second =
                head.map { $0 + "\r\nok" } ?? "GET \(path) HTTP/\(version)\r\nHost: a\r\nConnection: close\r\n\r\n"
            return try exchangeTextOnLoopback(port: agent.proxyPort, first + second)
        }
        let dropped = try afterAnother("/drop/d")
        let garbled = try afterAnother("/garbled/g")
        // 100 Continue means nothing to an HTTP/1.0 client, which does not see it; it is still
        // an answer begun.
        let continued = try afterAnother("/continue/c", version: "1.0")
        for answers in [dropped, garbled, continued] {
            #expect(answers.hasPrefix("HTTP/1.") && answers.contains(" 502 Bad Gateway"), "\(answers)")
            #expect(answers.components(separatedBy: " 200 OK").count == 2 && !answers.contains("100 Continue"))
        }
        #expect(try await w.upstream.arrived("d") == 2, "closed without an answer: sent again once")
        #expect(try await w.upstream.arrived("g") == 1, "a malformed answer began: not sent again")
        #expect(try await w.upstream.arrived("c") == 1, "an informational answer came: not sent again")
        // A POST is sent again only with an idempotency key the server is given.
        let post = "POST /drop/p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nIdempotency-Key: k\r\n"
        let keyed = try afterAnother("/drop/k", then: post.replacingOccurrences(of: "/drop/p", with: "/drop/k"))
        let hidden = try afterAnother("/drop/p", then: post + "Connection: idempotency-key\r\n")
        #expect(keyed.contains(" 502 Bad Gateway") && hidden.contains(" 502 Bad Gateway"), "\(keyed) \(hidden)")
        #expect(try await w.upstream.arrived("k") == 2, "a key the server sees: sent again once")
        #expect(try await w.upstream.arrived("p") == 1, "a key listed in Connection is dropped: not sent again")
        await agent.stop()
        await w.upstream.stop()
    }

    /// A kept-alive connection may idle between requests for the idle timeout (3 minutes),
    /// but once a head starts it must be complete within the header timeout.
    @Test func aHeadStartedOnAKeptAliveConnectionMustEndInTime() async throws {
        let w = try await World()
        let agent = try await w.agent(arguments: ["--header-timeout", "1"])
        let script = """
            import socket, sys, time
            s = socket.create_connection(("127.0.0.1", \(agent.proxyPort)))
            s.settimeout(60)
            s.sendall(b"GET /echo/first HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
            data = b""
            while b"/echo/first" not in data:
                data += s.recv(65536)
            started = time.monotonic()
            s.sendall(b"GET /echo/second HT")
            rest = s.recv(65536)
            sys.stdout.write("closed %r after %.1f s" % (rest, time.monotonic() - started))
            """
        try write(script, to: w.temp.path + "/stall.py")
        let python = try TestPaths.venvTool("tools", "python3")
        let run = try await runShell("\(python) \(w.temp.path)/stall.py", in: w.temp.path)
        let seconds = run.output.split(separator: " ").dropLast().last.flatMap { Double($0) } ?? -1
        #expect(run.output.hasPrefix("closed b''") && seconds >= 0.5 && seconds < 50, "\(run.output)")
        await agent.stop()
        await w.upstream.stop()
    }

    @Test func eventStreamChunksArriveOneByOne() async throws {
        let w = try await World()
        let agent = try await w.agent()
        let output = w.temp.path + "/sse.txt"
        let client = try ChildProcess(
            name: "curl", executable: "/bin/sh",
            arguments: ["-c", "curl -sSN '\(agent.proxyURL)/sse/s1?events=3' > \(output)"],
            logPath: w.temp.path + "/curl-sse.log")
        try await eventually("the stream to reach the server") { try await w.upstream.arrived("s1") == 1 }
        for event in 0..<3 {
            try await w.upstream.open("s1.\(event)")
            try await eventually("event \(event) through the proxy") {
                ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("data: event \(event)")
            }
        }
        #expect(try await client.waitForExit() == 0)
        await agent.stop()
        await w.upstream.stop()
    }

    @Test func unreachableServerGets502OnceLoggedThenRecovers() async throws {
        let w = try await World()
        let port = try freePort()
        let agent = try await w.agent(serverURL: "http://127.0.0.1:\(port)")
        for _ in 0..<5 {
            let answer = try await TestHTTP.post(agent.proxyURL + "/v2/models/m/infer", json: "{}")
            #expect(answer.status == 502)
            #expect(answer.text.contains(#""error":"model server unavailable: cannot connect"#), "\(answer.text)")
        }
        // To HEAD, the head only.
        let head = try exchangeTextOnLoopback(port: agent.proxyPort, "HEAD /v2/models/m HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(head.hasPrefix("HTTP/1.1 502 Bad Gateway") && head.hasSuffix("\r\n\r\n"), "\(head)")
        #expect(try agent.messages(containing: "Proxy cannot reach the model server").count == 1)

        let upstream = try await ProxyUpstream(port: port, logDirectory: w.temp.path)
        #expect(try await TestHTTP.get(agent.proxyURL + "/echo/back").status == 200)
        #expect(try agent.messages(containing: "again (6 requests failed)").count == 1)

        // A server that resets mid-answer: the client sees the cut, the next request works.
        let cut = try await runShell("curl -sS -o /dev/null \(agent.proxyURL)/reset-after-head", in: w.temp.path)
        #expect(cut.status != 0)
        #expect(try await TestHTTP.get(agent.proxyURL + "/echo/after").status == 200)
        // One that switches protocols unasked (it once tripped a NIO precondition).
        let switched = try await TestHTTP.get(agent.proxyURL + "/switch-protocols")
        #expect(switched.status == 502 && switched.text.contains("switched protocols"), "\(switched.text)")
        #expect(try await TestHTTP.get(agent.proxyURL + "/echo/still-up").status == 200)
        await agent.stop()
        await upstream.stop()
        await w.upstream.stop()
    }

    @Test func h2cRequestsGoToTheirOwnServerAndGet502WhenItIsDown() async throws {
        let w = try await World()
        let h2Port = try freePort()
        let agent = try await w.agent(arguments: ["--h2c-server-url", "http://127.0.0.1:\(h2Port)"])
        for _ in 0..<3 {
            let answer = try await runShell(
                "curl -sS -i --http2-prior-knowledge -d '{}' \(agent.proxyURL)/v2/models/m/infer", in: w.temp.path)
            #expect(answer.output.hasPrefix("HTTP/2 502"), "\(answer.output)")
            #expect(answer.output.contains(#"{"error":"model server unavailable: cannot connect"#))
        }
        #expect(
            try agent.messages(containing: "Proxy cannot reach the model server at http://127.0.0.1:\(h2Port)").count
                == 1)
        // An upload still being sent when the 502 goes out is read and dropped, not left to
        // stall once its flow-control window (64 KiB) fills.
        let upload = try await runShell(
            "head -c 800000 /dev/zero | curl -sS -i --http2-prior-knowledge --max-time 60 -T - \(agent.proxyURL)/up",
            in: w.temp.path)
        #expect(upload.output.hasPrefix("HTTP/2 502"), "\(upload.output)")
        // A connection error (DATA on stream 0) closes the connection: NIO only sends
        // GOAWAY, and bytes that kept coming piled up until a trap (the hostile run).
        let garbage = """
            import socket
            s = socket.create_connection(("127.0.0.1", \(agent.proxyPort)))
            s.settimeout(60)
            s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            try:
                for _ in range(1 << 14):
                    s.sendall(bytes(65536))
                print("still open")
            except OSError:
                print("closed")
            """
        try write(garbage, to: w.temp.path + "/garbage.py")
        let flood = try await runShell("python3 \(w.temp.path)/garbage.py", in: w.temp.path)
        #expect(flood.output.contains("closed"), "\(flood.output)")
        // A stream whose :path is a URL (naming another host) is refused, as over HTTP/1.
        let url = """
            import socket, h2.config, h2.connection, h2.events
            s = socket.create_connection(("127.0.0.1", \(agent.proxyPort)))
            s.settimeout(60)
            c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, validate_outbound_headers=False))
            c.initiate_connection()
            c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                               (":path", "http://other/v2/repository/models/m/load")], end_stream=True)
            s.sendall(c.data_to_send())
            while True:
                data = s.recv(65536)
                if not data:
                    break
                for event in c.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        print("status", dict(event.headers)[b":status"].decode())
                        raise SystemExit
                s.sendall(c.data_to_send())
            print("closed")
            """
        try write(url, to: w.temp.path + "/url.py")
        let python = try TestPaths.venvTool("tools", "python3")
        let refused = try await runShell("\(python) \(w.temp.path)/url.py", in: w.temp.path)
        #expect(refused.output.contains("status 400"), "\(refused.output)")
        // HTTP/1.1 clients of the same port still reach the HTTP/1.1 server.
        #expect(try await TestHTTP.get(agent.proxyURL + "/echo/h1").status == 200)
        // A client that sends a few bytes of something that is not the HTTP/2 preface is HTTP/1.
        let bogus = try await runShell(
            "printf 'PRX / HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n' | curl -sS -i telnet://127.0.0.1:\(agent.proxyPort) --max-time 60 || true",
            in: w.temp.path)
        #expect(bogus.output.hasPrefix("HTTP/1.1 "), "\(bogus.output)")
        await agent.stop()
        await w.upstream.stop()
    }

    @Test func h2cStreamsBothWaysUnderFlowControlAndPassesResets() async throws {
        let w = try await World()
        let h2 = try await H2Upstream(logDirectory: w.temp.path)
        let agent = try await w.agent(arguments: ["--h2c-server-url", h2.baseURL])
        let h2c = "curl -sS --http2-prior-knowledge"
        // The server grants no window after 1 MiB: the upload waits, the agent holding no
        // more than its windows, and goes on once the server reads again.
        let size = 128 << 20
        let upload = try ChildProcess(
            name: "curl", executable: "/bin/sh",
            arguments: ["-c", "head -c \(size) /dev/zero | \(h2c) -T - \(agent.proxyURL)/slow-upload/h1"],
            logPath: w.temp.path + "/h2-slow-upload.log")
        try await eventually("the server to stop reading") { try await h2.arrived("h1") == 1 }
        try await h2.open("h1")
        #expect(try await upload.waitForExit(timeout: .seconds(180)) == 0)
        #expect(upload.output.contains(#""size": \#(size)"#), "\(upload.output)")
        let download = try await runShell("\(h2c) \(agent.proxyURL)/bytes/\(size) | sha256sum", in: w.temp.path)
        let direct = try await runShell("\(h2c) \(h2.baseURL)/bytes/\(size) | sha256sum", in: w.temp.path)
        #expect(download.output == direct.output && direct.output.count > 64, "\(download.output)")
        let peak = peakResidentBytes(of: agent.process.pid) ?? .max
        #expect(peak < 64 << 20, "peak RSS \(peak >> 20) MiB")

        // A reset before any answer is a 502; after the head, the client's stream is reset.
        let before = try await runShell("\(h2c) -i \(agent.proxyURL)/reset-before-head", in: w.temp.path)
        #expect(before.output.hasPrefix("HTTP/2 502") && before.output.contains("reset the stream"), "\(before.output)")
        let after = try await runShell("\(h2c) -o /dev/null \(agent.proxyURL)/reset-after-head", in: w.temp.path)
        #expect(after.status == 92 && after.output.contains("INTERNAL_ERROR"), "\(after.output)")
        // Clients holding 300 unfinished streams (each upstream connection takes 100) do
        // not queue anyone else's request behind theirs.
        var holders: [ChildProcess] = []
        for i in 0..<3 {
            let holder = try ChildProcess(
                name: "h2-hold", executable: try TestPaths.venvTool("tools", "python3"),
                arguments: [TestPaths.fixtures + "/h2_hold.py", String(agent.proxyPort), "100"],
                logPath: w.temp.path + "/h2-hold-\(i).log")
            _ = try await holder.waitForLine(containing: "HOLDING", timeout: .seconds(60))
            holders.append(holder)
        }
        let beside = try await runShell("\(h2c) -m 60 -d abc \(agent.proxyURL)/upload", in: w.temp.path)
        #expect(beside.output.contains(#""size": 3"#), "\(beside.output)")
        for holder in holders { await holder.stop() }
        // A server that says GOAWAY after answering: the answer arrives, and the next
        // request goes out on a new connection.
        let bye = try await runShell("\(h2c) \(agent.proxyURL)/goaway", in: w.temp.path)
        #expect(bye.output.contains("bye"), "\(bye.output)")
        let next = try await runShell("\(h2c) -d x \(agent.proxyURL)/upload", in: w.temp.path)
        #expect(next.output.contains(#""size": 1"#), "\(next.output)")
        await agent.stop()
        await h2.stop()
        await w.upstream.stop()
    }

    @Test func sigtermFailsHealthChecksButKeepsServingUntilQuiet() async throws {
        let w = try await World()
        let agent = try await w.agent(arguments: ["--drain-timeout", "2"])
        try await eventually("readiness") { await agent.isReady() }
        let held = try ChildProcess(
            name: "curl", executable: "/bin/sh", arguments: ["-c", "curl -sS \(agent.proxyURL)/hold/h1"],
            logPath: w.temp.path + "/held.log")
        try await eventually("the held request to reach the server") { try await w.upstream.arrived("h1") == 1 }

        kill(agent.process.pid, SIGTERM)
        try await eventually("health checks to fail") {
            let probe = try? await TestHTTP.get(agent.proxyURL + "/", headers: ["User-Agent": "kube-probe/1.30"])
            return probe?.status == 503
        }
        #expect(try await TestHTTP.get(agent.statusURL + "/readyz").status == 503)
        // New requests still pass while the endpoints update (the port stays open at least
        // until the held request ends).
        let late = try await runShell("curl -si \(agent.proxyURL)/echo/late", in: w.temp.path)
        #expect(late.output.contains("HTTP/1.1 200") && late.output.contains("Connection: close"), "\(late.output)")
        // The quiet period passes; the held request is still served.
        _ = try await agent.process.waitForLine(containing: "Quiet period over; waiting for 1 requests in flight")
        #expect(agent.process.isRunning)
        try await w.upstream.open("h1")
        #expect(try await held.waitForExit() == 0)
        #expect(held.output == "released")
        #expect(try await agent.process.waitForExit(timeout: .seconds(60)) == 0)
        let messages = try agent.logLines().map(\.msg)
        let sleeping = messages.firstIndex { $0.hasPrefix("Sleeping 2.0 seconds") }
        let closed = messages.firstIndex { $0 == "Shutting down server: main" }
        #expect(sleeping != nil && closed != nil && sleeping! < closed!)
        await w.upstream.stop()
    }

    @Test func servingReadinessProbeGatesHealthChecks() async throws {
        let w = try await World()
        let tcpPort = try freePort()
        let probe = """
            [{"httpGet":{"path":"/echo/ready","port":\(w.upstream.port),"host":"127.0.0.1","scheme":"HTTP",
              "httpHeaders":[{"name":"K-Kubelet-Probe","value":"queue"}]},"timeoutSeconds":5},
             {"tcpSocket":{"port":"\(tcpPort)"},"timeoutSeconds":5}]
            """
        let agent = try await w.agent(environment: ["SERVING_READINESS_PROBE": probe])
        try await eventually("readiness of the agent itself") { await agent.isReady() }
        func health() async throws -> Int {
            try await TestHTTP.get(agent.proxyURL + "/", headers: ["User-Agent": "kube-probe/1.30"]).status
        }
        // Nothing listens on the TCP probe's port yet.
        #expect(try await health() == 503)
        let listener = try await ProxyUpstream(port: tcpPort, logDirectory: w.temp.path)
        #expect(try await health() == 200)
        await listener.stop()
        await w.upstream.stop()
        #expect(try await health() == 503)
        await agent.stop()
    }

    @Test func anUnusableReadinessProbeStopsStartupAndBlankMeansNone() async throws {
        let w = try await World()
        for bad in ["{not json", #"{"exec":null}"#, #"{"httpGet":{"port":"http"}}"#, #"{"tcpSocket":{"port":70000}}"#] {
            let child = try ChildProcess(
                name: "model-agent", executable: try TestPaths.agentBinary(),
                arguments: [
                    "--config-dir", w.config.path, "--model-dir", w.temp.path + "/bad-models", "--port", "0",
                    "--admin-port", "0", "--bind-address", "127.0.0.1", "--server-url", w.upstream.baseURL,
                ],
                environment: ProcessInfo.processInfo.environment.merging(["SERVING_READINESS_PROBE": bad]) { $1 },
                logPath: w.temp.path + "/bad-probe-\(UUID().uuidString.prefix(6)).log")
            #expect(try await child.waitForExit() == 2, "\(bad)")
            #expect(child.output.contains("SERVING_READINESS_PROBE") || child.output.contains("probe 0"), "\(bad)")
        }
        let agent = try await w.agent(environment: ["SERVING_READINESS_PROBE": " "])
        try await eventually("readiness") {
            (try? await TestHTTP.get(agent.proxyURL + "/", headers: ["K-Network-Probe": "queue"]).status) == 200
        }
        await agent.stop()
        await w.upstream.stop()
    }
}
