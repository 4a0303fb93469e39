import Synchronization

/// Strips what may carry credentials from a URI before it is logged or reported:
/// user-info ("user:pass@") and the query string (pre-signed URL signatures, tokens).
package enum Redaction {
    package static func uri(_ uri: String) -> String {
        var text = uri
        var searchFrom = text.startIndex
        if let schemeEnd = text.firstRange(of: "://") {
            // A password may hold '#', '?' or '@', which would end the authority early for a
            // URL parser; for redaction the authority runs to the first '/' and everything
            // up to its last '@' is user-info.
            let authorityStart = schemeEnd.upperBound
            let authorityEnd = text[authorityStart...].firstIndex(of: "/") ?? text.endIndex
            if let at = text[authorityStart..<authorityEnd].lastIndex(of: "@") {
                text.replaceSubrange(authorityStart...at, with: "<redacted>@")
            }
            searchFrom = text.index(text.startIndex, offsetBy: text.distance(from: uri.startIndex, to: authorityStart))
        }
        if let query = text[searchFrom...].firstIndex(where: { $0 == "?" || $0 == "#" }) {
            text = String(text[..<query]) + (text[query] == "?" ? "?<redacted>" : "")
        }
        return SecretRedactor.shared.redact(text)
    }
}

/// Every secret value the agent has seen (credentials from the environment, tokens it
/// obtained, `<host>-headers` values, user-info and query strings of model URIs), so that
/// any text leaving the process — log lines, `/v1/models`, errors printed by `pull` — can
/// be scrubbed of them as a last guard, whatever code path produced the text.
package final class SecretRedactor: Sendable {
    package static let shared = SecretRedactor()
    static let placeholder = "<redacted>"
    /// Shorter values would turn ordinary words into placeholders; they are left to the
    /// structural redaction of URIs.
    static let minimumLength = 4
    /// Query values are often plain words ("download=true"); only longer ones, as
    /// signatures and tokens are, are registered one by one.
    static let minimumQueryValueLength = 8

    private struct State {
        var permanent: Set<String> = []
        /// Secrets that replace each other (the current token of one credential source),
        /// so a renewed token does not add to the list for the life of the pod.
        var current: [String: [String]] = [:]
        /// Every secret's bytes by its first four bytes, longest first: redaction looks up
        /// each position of a text once, whatever the number of secrets.
        var index: [UInt32: [[UInt8]]] = [:]

        mutating func rebuild() {
            var index: [UInt32: [[UInt8]]] = [:]
            for secret in permanent.union(current.values.joined()) {
                let bytes = Array(secret.utf8)
                index[SecretRedactor.prefix(bytes, at: 0), default: []].append(bytes)
            }
            for key in index.keys { index[key]!.sort { $0.count > $1.count } }
            self.index = index
        }
    }

    private let state = Mutex(State())

    init() {}

    /// Adds `secret` for good, or, with `key`, as the current secret(s) of that source,
    /// replacing what was registered under the key before.
    func register(_ secret: String, key: String? = nil) {
        register([secret], key: key)
    }

    func register(_ secrets: [String], key: String? = nil) {
        let values = secrets.map { $0.trimmingWhitespace() }.filter { $0.utf8.count >= Self.minimumLength }
        state.withLock { s in
            if let key {
                guard s.current[key] != values else { return }
                s.current[key] = values
            } else {
                let before = s.permanent.count
                s.permanent.formUnion(values)
                guard s.permanent.count != before else { return }
            }
            s.rebuild()
        }
    }

    /// User-info (whole, and the password alone) and the query string (whole, and each value).
    package func registerSecrets(inURI uri: String) {
        register(Self.secrets(inURI: uri))
    }

    /// The secrets of many URIs at once (a whole models.json): one update, not one per URI.
    func registerSecrets(inURIs uris: [String]) {
        register(uris.flatMap(Self.secrets(inURI:)))
    }

    static func secrets(inURI uri: String) -> [String] {
        guard let schemeEnd = uri.firstRange(of: "://") else { return [] }
        var found: [String] = []
        let authorityEnd = uri[schemeEnd.upperBound...].firstIndex(of: "/") ?? uri.endIndex
        if let at = uri[schemeEnd.upperBound..<authorityEnd].lastIndex(of: "@") {
            // As written, and as an http client decodes and sends it:
            // "Authorization: Basic <base64 of user:password>".
            for userInfo in [String(uri[schemeEnd.upperBound..<at]), percentDecoded(uri[schemeEnd.upperBound..<at])] {
                guard let userInfo else { continue }
                found += [userInfo, Base64.encode(Array(userInfo.utf8))]
                if let colon = userInfo.firstIndex(of: ":") {
                    found.append(String(userInfo[userInfo.index(after: colon)...]))
                }
            }
        }
        if let query = uri[authorityEnd...].firstIndex(of: "?") {
            let text = uri[uri.index(after: query)...]
            found.append(String(text))
            for pair in text.split(whereSeparator: { $0 == "&" || $0 == "#" }) {
                guard let equals = pair.firstIndex(of: "=") else { continue }
                let value = pair[pair.index(after: equals)...]
                guard value.utf8.count >= Self.minimumQueryValueLength else { continue }
                // As written and as a server quotes it back, decoded.
                found.append(String(value))
                if let decoded = percentDecoded(value) { found.append(decoded) }
                if let decoded = percentDecoded(Substring(String(value).replacingPlus())) { found.append(decoded) }
            }
        }
        return found
    }

    /// Credentials the environment hands the agent.
    package func registerSecrets(inEnvironment environment: [String: String]) {
        for key in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"] {
            if let value = environment[key] { register(value) }
        }
        for (key, value) in environment where key.hasSuffix("-headers") {
            if let headers = HostHeaders.decode(value) {
                for header in headers.values {
                    register(header)
                    // "Bearer <token>", "Basic <base64>": the credential alone too.
                    if let space = header.firstIndex(of: " ") {
                        register(String(header[header.index(after: space)...]))
                    }
                }
            }
        }
    }

    package func redact(_ text: String) -> String {
        let index = state.withLock { $0.index }
        guard !index.isEmpty else { return text }
        var bytes: [UInt8] = []
        var changed = false
        let input = Array(text.utf8)
        guard input.count >= Self.minimumLength else { return text }
        bytes.reserveCapacity(input.count)
        var i = 0
        let placeholder = Array(Self.placeholder.utf8)
        while i < input.count {
            if i + 4 <= input.count, let candidates = index[Self.prefix(input, at: i)],
                let match = candidates.first(where: {
                    i + $0.count <= input.count && input[i..<(i + $0.count)].elementsEqual($0)
                })
            {
                bytes += placeholder
                i += match.count
                changed = true
                continue
            }
            bytes.append(input[i])
            i += 1
        }
        // Secrets are whole UTF-8 strings, so a match never splits a character.
        return changed ? String(decoding: bytes, as: UTF8.self) : text
    }

    fileprivate static func prefix(_ bytes: [UInt8], at i: Int) -> UInt32 {
        UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
    }
}
