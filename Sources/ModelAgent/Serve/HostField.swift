/// The grammar of a request's Host field (RFC 9112 §3.2, RFC 3986 §3.2.2):
/// `uri-host [":" port]`, where the host is a bracketed IPv6 address or IPvFuture, or a
/// registered name or IPv4 address (percent-encoding and sub-delimiters allowed, but not a
/// comma, which is how a hop that combines field lines writes two Host fields, nor an
/// escaped control character). An empty host is refused too (RFC 9110 §4.2.1: an `http` URI must name
/// one). The model server may route or log by this field, so it must read it as the agent
/// did.
enum HostField {
    static func isValid(_ value: Slice<UnsafeRawBufferPointer>) -> Bool {
        var index = value.startIndex
        let end = value.endIndex
        guard index < end else { return false }
        if value[index] == UInt8(ascii: "[") {
            guard let close = value[index...].firstIndex(of: UInt8(ascii: "]")),
                isIPLiteral(value[(index + 1)..<close])
            else { return false }
            index = close + 1
        } else {
            let nameEnd = value[index...].firstIndex(of: UInt8(ascii: ":")) ?? end
            guard nameEnd > index, isRegisteredName(value[index..<nameEnd]) else { return false }
            index = nameEnd
        }
        guard index < end else { return true }
        guard value[index] == UInt8(ascii: ":") else { return false }
        return isPort(value[(index + 1)...])
    }

    /// `*DIGIT` (empty allowed, as RFC 3986 has it), at most 65535.
    private static func isPort(_ digits: Slice<UnsafeRawBufferPointer>) -> Bool {
        guard digits.count <= 5 else { return false }
        var number = 0
        for byte in digits {
            guard isDigit(byte) else { return false }
            number = number * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return number <= 65535
    }

    /// `IPv6address / IPvFuture` between the brackets. An IPv6 address is checked for its
    /// characters only: the server parses it, and none of them can end the field early.
    private static func isIPLiteral(_ bytes: Slice<UnsafeRawBufferPointer>) -> Bool {
        guard let first = bytes.first else { return false }
        if first == UInt8(ascii: "v") || first == UInt8(ascii: "V") {
            // "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
            let rest = bytes.dropFirst()
            guard let dot = rest.firstIndex(of: UInt8(ascii: ".")), dot > rest.startIndex,
                rest[rest.startIndex..<dot].allSatisfy(isHexDigit)
            else { return false }
            let tail = rest[(dot + 1)...]
            return !tail.isEmpty
                && tail.allSatisfy { isUnreserved($0) || isSubDelimiter($0) || $0 == UInt8(ascii: ":") }
        }
        return bytes.contains(UInt8(ascii: ":"))
            && bytes.allSatisfy { isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }
    }

    /// `*( unreserved / pct-encoded / sub-delims )`, non-empty here.
    private static func isRegisteredName(_ bytes: Slice<UnsafeRawBufferPointer>) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard bytes.endIndex - index >= 3, let high = ASCIIByte.hexValue(bytes[index + 1]),
                    let low = ASCIIByte.hexValue(bytes[index + 2]), high >= 2 && !(high == 7 && low == 15)
                else {
                    return false
                }
                index += 3
                continue
            }
            guard isUnreserved(byte) || (isSubDelimiter(byte) && byte != UInt8(ascii: ",")) else { return false }
            index += 1
        }
        return true
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool { ASCIIByte.hexValue(byte) != nil }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    private static func isSubDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
            UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
            UInt8(ascii: "="):
            return true
        default: return false
        }
    }
}
