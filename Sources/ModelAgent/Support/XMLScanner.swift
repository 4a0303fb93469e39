/// Reads the few flat XML documents the agent receives (S3 listings and errors, STS
/// answers). Not a general parser: it finds elements by name and decodes entities, which
/// is all these responses need.
struct XMLScanner: Sendable {
    let text: Substring

    init(_ text: Substring) { self.text = text }
    init(_ bytes: [UInt8]) { self.text = Substring(String(decoding: bytes, as: UTF8.self)) }

    /// The raw inner text of every `<name>…</name>` (or nothing for `<name/>`), in order.
    func elements(_ name: String) -> [XMLScanner] {
        var result: [XMLScanner] = []
        var rest = text[...]
        let open = "<" + name
        let close = "</" + name + ">"
        while let start = rest.firstRange(of: open) {
            let afterName = rest[start.upperBound...]
            guard let next = afterName.first, next == ">" || next == " " || next == "/" else {
                rest = afterName
                continue
            }
            guard let tagEnd = afterName.firstIndex(of: ">") else { break }
            if tagEnd > afterName.startIndex && afterName[afterName.index(before: tagEnd)] == "/" {
                result.append(XMLScanner(afterName[tagEnd..<tagEnd]))
                rest = afterName[afterName.index(after: tagEnd)...]
                continue
            }
            let inner = afterName[afterName.index(after: tagEnd)...]
            guard let end = inner.firstRange(of: close) else { break }
            result.append(XMLScanner(inner[..<end.lowerBound]))
            rest = inner[end.upperBound...]
        }
        return result
    }

    /// The decoded text of the first `<name>` element.
    func value(_ name: String) -> String? {
        elements(name).first.map { Self.decodeEntities($0.text) }
    }

    static func decodeEntities(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = text[...]
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else {
                out += rest[amp...]
                return out
            }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                var scalar: Unicode.Scalar?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init)
                }
                if let scalar { out.unicodeScalars.append(scalar) } else { out += rest[amp...semicolon] }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return out + rest
    }
}
