/// The few things the agent reads from a Triton `config.pbtxt` (protobuf text format):
/// top-level scalar fields, found by a scan that skips nested messages, strings and
/// comments.
enum ProtoText {
    struct Field {
        let key: String
        /// The value as written, quotes included for strings.
        let valueRange: Range<String.Index>
        let value: String
    }

    static func topLevelFields(_ text: String) -> [Field] {
        var fields: [Field] = []
        var depth = 0
        var i = text.startIndex
        func skipSpace() {
            while i < text.endIndex, text[i].isWhitespace { i = text.index(after: i) }
        }
        while i < text.endIndex {
            let c = text[i]
            if c == "#" {
                while i < text.endIndex, text[i] != "\n" { i = text.index(after: i) }
                continue
            }
            if c == "\"" || c == "'" {
                guard let end = endOfString(text, from: i) else { break }
                i = end
                continue
            }
            if c == "{" || c == "[" || c == "<" {
                depth += 1
                i = text.index(after: i)
                continue
            }
            if c == "}" || c == "]" || c == ">" {
                depth -= 1
                i = text.index(after: i)
                continue
            }
            if depth == 0, c.isLetter || c == "_" {
                let start = i
                while i < text.endIndex, text[i].isLetter || text[i].isNumber || text[i] == "_" {
                    i = text.index(after: i)
                }
                let key = String(text[start..<i])
                skipSpace()
                guard i < text.endIndex, text[i] == ":" else { continue }
                i = text.index(after: i)
                skipSpace()
                guard i < text.endIndex else { break }
                let valueStart = i
                if text[i] == "\"" || text[i] == "'" {
                    // An unterminated string runs to the end of the text: no field there.
                    guard let end = endOfString(text, from: i) else { break }
                    i = end
                    let raw = text[text.index(after: valueStart)..<text.index(before: i)]
                    fields.append(Field(key: key, valueRange: valueStart..<i, value: String(raw)))
                } else if text[i] != "{" && text[i] != "[" && text[i] != "<" {
                    while i < text.endIndex, !text[i].isWhitespace, text[i] != "#" { i = text.index(after: i) }
                    fields.append(Field(key: key, valueRange: valueStart..<i, value: String(text[valueStart..<i])))
                }
                continue
            }
            i = text.index(after: i)
        }
        return fields
    }

    /// The index after the closing quote of the string starting at `start`; nil when the
    /// string is not closed.
    private static func endOfString(_ text: String, from start: String.Index) -> String.Index? {
        let quote = text[start]
        var i = text.index(after: start)
        while i < text.endIndex {
            if text[i] == "\\" {
                i = text.index(after: i)
                if i < text.endIndex { i = text.index(after: i) }
                continue
            }
            if text[i] == quote { return text.index(after: i) }
            i = text.index(after: i)
        }
        return nil
    }

    /// `text` with the top-level `name` set to `name` (replaced, or added first).
    static func settingName(_ name: String, in text: String) -> (text: String, changed: Bool) {
        let quoted = "\"" + name + "\""
        if let field = topLevelFields(text).first(where: { $0.key == "name" }) {
            if field.value == name { return (text, false) }
            var updated = text
            updated.replaceSubrange(field.valueRange, with: quoted)
            return (updated, true)
        }
        return ("name: \(quoted)\n" + text, true)
    }
}
