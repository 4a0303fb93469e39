/// Strips what may carry credentials from a URI before it is logged or reported:
/// user-info ("user:pass@") and the query string (pre-signed URL signatures, tokens).
public enum Redaction {
    public static func uri(_ uri: String) -> String {
        var text = uri
        if let query = text.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            text = String(text[..<query]) + (text[query] == "?" ? "?<redacted>" : "")
        }
        if let schemeEnd = text.firstRange(of: "://") {
            let authorityStart = schemeEnd.upperBound
            let authorityEnd = text[authorityStart...].firstIndex(of: "/") ?? text.endIndex
            if let at = text[authorityStart..<authorityEnd].lastIndex(of: "@") {
                text.replaceSubrange(authorityStart...at, with: "<redacted>@")
            }
        }
        return text
    }
}
