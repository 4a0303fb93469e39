import NIOCore
import NIOHTTP1
import Testing

@testable import ModelAgent

struct HTTP1ParserTests {
    private func request(_ text: String) throws(HTTP1ParseError) -> (HTTP1RequestHead?, ByteBuffer) {
        var buffer = ByteBuffer(string: text)
        var scanned = 0
        let head = try HTTP1Parser.requestHead(&buffer, scanned: &scanned)
        return (head, buffer)
    }

    /// Feeds `text` to a body reader in pieces of `piece` bytes; the bytes emitted and
    /// whether the body ended, with what was left after it.
    private func body(
        _ framing: HTTP1BodyFraming, _ text: String, raw: Bool, piece: Int = .max
    ) throws(HTTP1ParseError) -> (emitted: String, ended: Bool, rest: String) {
        var reader = HTTP1BodyReader(framing)
        var emitted = ""
        var all = Array(text.utf8)[...]
        var ended = false
        var rest = ""
        while !all.isEmpty && !ended {
            var buffer = ByteBuffer(bytes: all.prefix(piece))
            all = all.dropFirst(min(piece, all.count))
            ended = try reader.next(&buffer, raw: raw) { emitted += String(buffer: $0) }
            if ended { rest = String(buffer: buffer) + String(decoding: all, as: UTF8.self) }
        }
        return (emitted, ended, rest)
    }

    @Test func requestHeadsAreParsedWhenComplete() throws {
        let (partial, _) = try request("GET /a HTTP/1.1\r\nHost: x\r\n")
        #expect(partial == nil)
        let (head, rest) = try request(
            "\r\nPOST /v2/models/m/infer?x=1 HTTP/1.1\r\nHost:  x \r\nA: 1\r\nA: 2\r\n\r\nbody")
        #expect(head?.method == .POST && head?.uri == "/v2/models/m/infer?x=1" && head?.version == .http1_1)
        #expect(head?.headers["host"] == ["x"] && head?.headers["a"] == ["1", "2"])
        #expect(String(buffer: rest) == "body")
        // A head delivered a byte at a time is found once, where it ends.
        var buffer = ByteBuffer()
        var scanned = 0
        var found: HTTP1RequestHead?
        for byte in "GET / HTTP/1.0\r\nX: y\r\n\r\n".utf8 {
            buffer.writeInteger(byte)
            found = try HTTP1Parser.requestHead(&buffer, scanned: &scanned)
        }
        #expect(found?.version == .http1_0 && found?.headers["x"] == ["y"] && buffer.readableBytes == 0)
    }

    /// A bare LF is refused as soon as it arrives, also when the head comes in pieces.
    @Test func bareLineFeedsAreRefusedAsTheyArrive() throws {
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r")
        var scanned = 0
        #expect(try HTTP1Parser.requestHead(&buffer, scanned: &scanned) == nil)
        buffer.writeString("\nX: y\r\n")
        #expect(try HTTP1Parser.requestHead(&buffer, scanned: &scanned) == nil)
        buffer.writeString("\n")
        #expect(throws: HTTP1ParseError.malformed("bare LF line ends")) {
            _ = try HTTP1Parser.requestHead(&buffer, scanned: &scanned)
        }
    }

    @Test func malformedHeadsAreRefused() {
        let bad = [
            "GET /a HTTP/1.1\r\nHost : x\r\n\r\n",  // space before the colon
            "GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  // obs-fold
            "GET /a HTTP/1.1\r\nHost: x\ny\r\n\r\n",  // bare LF in a value
            "GET /a HTTP/1.1\nHost: x\n\n",  // bare LF line ends: refused, not waited on
            "GET /a HTTP/1.1\r\nHost: x\r\n\n",
            "GET /a HTTP/1.1\r\nHost: x\n\r\n",
            "GET /a HTTP/1.1\r\nX: \u{0}\r\n\r\n",
            "GET  /a HTTP/1.1\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "G@T /a HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.1\r\n: x\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://other/v2/repository/models/m/load HTTP/1.1\r\nHost: x\r\n\r\n",  // absolute form
            "GET other:80 HTTP/1.1\r\nHost: x\r\n\r\n",  // authority form
            "GET * HTTP/1.1\r\nHost: x\r\n\r\n",  // asterisk form is for OPTIONS
        ]
        for text in bad {
            #expect(throws: HTTP1ParseError.self, "\(text.debugDescription)") {
                let (head, _) = try request(text)
                if let head { _ = try HTTP1Parser.requestFraming(head) }
            }
        }
        #expect(throws: HTTP1ParseError(status: .httpVersionNotSupported, reason: "HTTP version not supported")) {
            _ = try request("GET / HTTP/2.0\r\n\r\n")
        }
        #expect(throws: HTTP1ParseError(status: .notImplemented, reason: "transfer coding not supported")) {
            _ = try HTTP1Parser.requestFraming(
                try request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").0!)
        }
        #expect(throws: HTTP1ParseError.headTooLarge) {
            _ = try request("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HTTP1Parser.maxHeadBytes))
        }
    }

    @Test func framingFollowsTheHeadAndTheRequest() throws {
        let post = try #require(try request("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").0)
        #expect(try HTTP1Parser.requestFraming(post) == .length(5))
        let chunked = try #require(try request("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").0)
        #expect(try HTTP1Parser.requestFraming(chunked) == .chunked)
        let get = try #require(try request("GET / HTTP/1.1\r\n\r\n").0)
        #expect(try HTTP1Parser.requestFraming(get) == HTTP1BodyFraming.none)

        func response(_ text: String, _ method: HTTPMethod = .GET) throws -> HTTP1BodyFraming {
            var buffer = ByteBuffer(string: text)
            var scanned = 0
            let head = try #require(try HTTP1Parser.responseHead(&buffer, scanned: &scanned))
            return try HTTP1Parser.responseFraming(head, requestMethod: method)
        }
        #expect(try response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n") == .length(3))
        #expect(try response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", .HEAD) == HTTP1BodyFraming.none)
        #expect(try response("HTTP/1.1 204 No Content\r\n\r\n") == HTTP1BodyFraming.none)
        #expect(try response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == .chunked)
        #expect(try response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n") == .untilClose)
        #expect(try response("HTTP/1.0 200 OK\r\n\r\n") == .untilClose)
        #expect(try response("HTTP/1.1 200\r\n\r\n") == .untilClose)
        #expect(throws: HTTP1ParseError.self) { try response("HTTP/1.1 20 OK\r\n\r\n") }
        #expect(throws: HTTP1ParseError.self) { try response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n") }
    }

    @Test func chunkedBodiesEndWhereTheirFramingSays() throws {
        let text = "5;name=v\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer-Field: 1\r\n\r\nNEXT"
        for piece in [1, 2, 3, 7, Int.max] {
            let raw = try body(.chunked, text, raw: true, piece: piece)
            #expect(raw.ended && raw.rest == "NEXT", "piece \(piece)")
            #expect(raw.emitted == String(text.dropLast(4)), "piece \(piece)")
            let data = try body(.chunked, text, raw: false, piece: piece)
            #expect(data.ended && data.emitted == "hello0123456789" && data.rest == "NEXT", "piece \(piece)")
        }
        let simple = try body(.chunked, "5\r\nhello\r\n0\r\n\r\n", raw: true)
        #expect(simple.ended && simple.emitted == "5\r\nhello\r\n0\r\n\r\n")
        let open = try body(.chunked, "5\r\nhel", raw: true)
        #expect(!open.ended && open.emitted == "5\r\nhel")
        for bad in [
            "x\r\n", "5 \r\nhello\r\n", "5\nhello\r\n", "5\r\nhelloX\r\n", "\r\n", "1000000000000000\r\n",
            "0\r\nBad Field\r\n\r\n", "3;\u{1}\r\n",
        ] {
            #expect(throws: HTTP1ParseError.self, "\(bad.debugDescription)") { _ = try body(.chunked, bad, raw: true) }
        }
    }

    @Test func lengthAndCloseDelimitedBodies() throws {
        let sized = try body(.length(5), "helloNEXT", raw: true, piece: 2)
        #expect(sized.ended && sized.emitted == "hello" && sized.rest == "NEXT")
        let open = try body(.untilClose, "all of it", raw: true, piece: 3)
        #expect(!open.ended && open.emitted == "all of it")
    }
}
