/// The model a gRPC inference call names. KServe's V2 gRPC API (`inference.GRPCInferenceService`)
/// puts the name in the request message, not the path, so the proxy reads it from the first
/// bytes of the request body as they pass: a 5-byte gRPC message prefix (compressed flag,
/// big-endian length), then protobuf fields, `model_name` being field 1 (a string). Encoders
/// write it first; earlier fields are skipped while they fit in the window. Never traps:
/// every length is checked against the bytes at hand.
enum GRPCModelName {
    /// Calls whose request message has `model_name` as field 1.
    static let paths: Set<String> = [
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelReady",
        "/inference.GRPCInferenceService/ModelMetadata",
    ]

    /// At most this many bytes of a request are looked at.
    static let window = 512

    enum Outcome: Equatable {
        case name(String)
        /// The prefix seen so far ends before the name does.
        case needMore
        /// Compressed, malformed, or no name in the window.
        case unknown
    }

    static func parse(_ bytes: [UInt8]) -> Outcome {
        let seen = min(bytes.count, window)
        guard seen >= 5 else { return bytes.count >= window ? .unknown : .needMore }
        if bytes[0] != 0 { return .unknown }  // compressed: not worth inflating for a label
        let length = Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4])
        let messageEnd = 5 + length  // below 2^33: no overflow
        let end = min(seen, messageEnd)
        // Where the bytes at hand end before a field does: more may come, unless the
        // window or the message is exhausted (then the message is not what it claims).
        func cut(_ position: Int) -> Outcome {
            position <= messageEnd && seen < messageEnd && seen < window ? .needMore : .unknown
        }
        var position = 5
        while position < messageEnd {
            let tag: UInt64
            switch varint(bytes, &position, end: end) {
            case .value(let value): tag = value
            case .short: return cut(position + 1)
            case .invalid: return .unknown
            }
            let field = tag >> 3
            if field == 0 { return .unknown }
            switch tag & 7 {
            case 0:
                switch varint(bytes, &position, end: end) {
                case .value: break
                case .short: return cut(position + 1)
                case .invalid: return .unknown
                }
            case 1:
                position += 8
            case 5:
                position += 4
            case 2:
                let size: UInt64
                switch varint(bytes, &position, end: end) {
                case .value(let value): size = value
                case .short: return cut(position + 1)
                case .invalid: return .unknown
                }
                // Longer than the window: neither a name nor skippable within it.
                guard size <= UInt64(window) else { return .unknown }
                let start = position
                position += Int(size)
                if position > end { return cut(position) }
                if field == 1 {
                    guard let name = String(validating: bytes[start..<position], as: UTF8.self) else {
                        return .unknown
                    }
                    return .name(name)
                }
            default:
                return .unknown  // groups and invalid wire types
            }
            if position > end { return cut(position) }
        }
        return .unknown
    }

    private enum Varint {
        case value(UInt64)
        /// The bytes at hand end inside it.
        case short
        /// Longer than ten bytes.
        case invalid
    }

    private static func varint(_ bytes: [UInt8], _ position: inout Int, end: Int) -> Varint {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < end {
            if shift >= 64 { return .invalid }
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return .value(value) }
            shift += 7
        }
        return .short
    }
}
