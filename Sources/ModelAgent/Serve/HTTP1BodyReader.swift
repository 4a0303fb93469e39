import NIOCore

/// Finds where one message's body ends in the bytes that follow its head, checking chunked
/// framing byte by byte (sizes, extensions, CRLFs, trailer fields) and passing data
/// through in bulk. `next` hands out the body's bytes as they came: framing included
/// (`raw`, for a hop that reads the same framing) or only the data (for an HTTP/1.0 client,
/// which gets the body delimited by the connection's close).
struct HTTP1BodyReader {
    private enum Chunked {
        /// In a chunk-size line: `digits` read so far, then `inExtension` once past them.
        case size(value: Int64, digits: Int, inExtension: Bool, lineBytes: Int)
        /// After the CR of a size line.
        case sizeLF(value: Int64)
        case data(remaining: Int64)
        case dataCR
        case dataLF
        /// In the trailer section (after the last chunk): `lineBytes` of the current line.
        case trailer(lineBytes: Int, sectionBytes: Int, sawCR: Bool)
    }

    private enum Mode {
        case length(remaining: Int64)
        case chunked(Chunked)
        case untilClose
        case done
    }

    private var mode: Mode
    /// Bytes of the current trailer line, kept to check it once complete.
    private var trailerLine: [UInt8] = []

    init(_ framing: HTTP1BodyFraming) {
        switch framing {
        case .none: mode = .done
        case .length(let length): mode = .length(remaining: length)
        case .chunked: mode = .chunked(.size(value: 0, digits: 0, inExtension: false, lineBytes: 0))
        case .untilClose: mode = .untilClose
        }
    }

    /// The body ends with the connection.
    var isUntilClose: Bool {
        if case .untilClose = mode { return true }
        return false
    }

    /// Takes the body's next bytes from `buffer` (leaving what follows the body) and passes
    /// them to `emit`; returns true once the body is complete.
    mutating func next(
        _ buffer: inout ByteBuffer, raw: Bool, _ emit: (ByteBuffer) -> Void
    ) throws(HTTP1ParseError) -> Bool {
        switch mode {
        case .done:
            return true
        case .untilClose:
            if buffer.readableBytes > 0, let slice = buffer.readSlice(length: buffer.readableBytes) { emit(slice) }
            return false
        case .length(let remaining):
            let count = Int(min(remaining, Int64(buffer.readableBytes)))
            if count > 0, let slice = buffer.readSlice(length: count) { emit(slice) }
            let left = remaining - Int64(count)
            mode = left == 0 ? .done : .length(remaining: left)
            return left == 0
        case .chunked(var state):
            // Raw: one slice of everything consumed; else the data runs only.
            // (A copy shares the storage; its readable bytes still start where this call did.)
            let original = buffer
            defer {
                let consumed = buffer.readerIndex - original.readerIndex
                if raw, consumed > 0, let slice = original.getSlice(at: original.readerIndex, length: consumed) {
                    emit(slice)
                }
            }
            while buffer.readableBytes > 0 {
                if case .data(let remaining) = state {
                    let count = Int(min(remaining, Int64(buffer.readableBytes)))
                    if raw {
                        buffer.moveReaderIndex(forwardBy: count)
                    } else if let slice = buffer.readSlice(length: count) {
                        emit(slice)
                    }
                    let left = remaining - Int64(count)
                    state = left == 0 ? .dataCR : .data(remaining: left)
                    continue
                }
                guard let byte = buffer.readInteger(as: UInt8.self) else { break }
                switch try step(state, byte) {
                case .some(let next):
                    state = next
                case .none:
                    mode = .done
                    return true
                }
            }
            mode = .chunked(state)
            return false
        }
    }

    /// One framing byte; nil when it ended the body.
    private mutating func step(_ state: Chunked, _ byte: UInt8) throws(HTTP1ParseError) -> Chunked? {
        switch state {
        case .size(let value, let digits, let inExtension, let lineBytes):
            if lineBytes >= HTTP1Parser.maxChunkLineBytes { throw .malformed("chunk size line too long") }
            if byte == 0x0D {
                guard digits > 0 else { throw .malformed("bad chunk size") }
                return .sizeLF(value: value)
            }
            if !inExtension, let digit = ASCIIByte.hexValue(byte) {
                // 15 hex digits stay below Int64.max.
                guard digits < 15 else { throw .malformed("chunk too large") }
                return .size(
                    value: value << 4 | Int64(digit), digits: digits + 1, inExtension: false,
                    lineBytes: lineBytes + 1)
            }
            // Extensions follow the size, right after it (no whitespace, which parsers read
            // differently); their bytes are checked as a field value's are.
            guard digits > 0, byte == 0x3B || inExtension,
                HTTP1Parser.isFieldValueByte(byte)
            else { throw .malformed("bad chunk size") }
            return .size(value: value, digits: digits, inExtension: true, lineBytes: lineBytes + 1)
        case .sizeLF(let value):
            guard byte == 0x0A else { throw .malformed("bad chunk size line end") }
            return value == 0 ? .trailer(lineBytes: 0, sectionBytes: 0, sawCR: false) : .data(remaining: value)
        case .data:
            return state  // not reached: data is taken in bulk
        case .dataCR:
            guard byte == 0x0D else { throw .malformed("chunk data longer than its size") }
            return .dataLF
        case .dataLF:
            guard byte == 0x0A else { throw .malformed("bad chunk end") }
            return .size(value: 0, digits: 0, inExtension: false, lineBytes: 0)
        case .trailer(let lineBytes, let sectionBytes, let sawCR):
            if sectionBytes >= HTTP1Parser.maxTrailerBytes { throw .malformed("trailer section too large") }
            if sawCR {
                guard byte == 0x0A else { throw .malformed("bad trailer line end") }
                if lineBytes == 0 { return nil }
                try checkTrailerLine()
                return .trailer(lineBytes: 0, sectionBytes: sectionBytes + 1, sawCR: false)
            }
            if byte == 0x0D { return .trailer(lineBytes: lineBytes, sectionBytes: sectionBytes + 1, sawCR: true) }
            trailerLine.append(byte)
            return .trailer(lineBytes: lineBytes + 1, sectionBytes: sectionBytes + 1, sawCR: false)
        }
    }

    private mutating func checkTrailerLine() throws(HTTP1ParseError) {
        defer { trailerLine.removeAll(keepingCapacity: true) }
        let valid = trailerLine.withUnsafeBytes { bytes in (try? HTTP1Parser.parseField(bytes[...])) != nil }
        if !valid { throw .malformed("bad trailer field") }
    }
}
