/// AWS Signature Version 4 (header form), computed with OpenSSL's HMAC-SHA256.
struct SigV4Signer: Sendable {
    let region: String
    let service: String

    static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    init(region: String, service: String) {
        self.region = region
        self.service = service
    }

    /// Adds `Host`, `x-amz-date`, `x-amz-content-sha256`, the session token if any, and
    /// `Authorization` to `request`, whose URL must already be encoded as sent. Every
    /// x-amz-* header the request carries is signed too (one value per name).
    func sign(
        _ request: inout HTTPRequest, credentials: AWSCredentials, at time: UTCTime = .now(),
        payloadHash: String = emptyPayloadHash
    ) {
        guard let url = URLParts(request.url) else { return }
        var signed: [(name: String, value: String)] = [
            ("host", url.authority), ("x-amz-content-sha256", payloadHash), ("x-amz-date", time.amzDate),
        ]
        if let token = credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        // S3 refuses x-amz-* headers left out of the signature (x-amz-checksum-mode).
        for header in request.headers {
            let name = header.name.lowercased()
            if name.hasPrefix("x-amz-") && !signed.contains(where: { $0.name == name }) {
                signed.append((name, header.value))
            }
        }
        signed.sort { $0.name < $1.name }
        let signedNames = signed.map(\.name).joined(separator: ";")
        let canonical = [
            request.method,
            url.path,
            Self.canonicalQuery(url.pathAndQuery),
            signed.map { "\($0.name):\(Self.trimmed($0.value))\n" }.joined(),
            signedNames,
            payloadHash,
        ].joined(separator: "\n")
        let scope = "\(time.dateStamp)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", time.amzDate, scope, hex(Digest.hash(.sha256, Array(canonical.utf8))),
        ].joined(separator: "\n")
        let signature = hex(
            hmacSHA256(key: signingKey(credentials.secretAccessKey, time), data: Array(stringToSign.utf8)))

        request.headers.removeAll { ["host", "x-amz-date", "x-amz-content-sha256"].contains($0.name.lowercased()) }
        request.headers.append(("Host", url.authority))
        request.headers.append(("x-amz-date", time.amzDate))
        request.headers.append(("x-amz-content-sha256", payloadHash))
        var credentialHeaders: [(name: String, value: String)] = [
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedNames), Signature=\(signature)"
            )
        ]
        if let token = credentials.sessionToken { credentialHeaders.append(("x-amz-security-token", token)) }
        request.credentials = credentialHeaders
    }

    func signingKey(_ secret: String, _ time: UTCTime) -> [UInt8] {
        let date = hmacSHA256(key: Array(("AWS4" + secret).utf8), data: Array(time.dateStamp.utf8))
        let region = hmacSHA256(key: date, data: Array(self.region.utf8))
        let service = hmacSHA256(key: region, data: Array(self.service.utf8))
        return hmacSHA256(key: service, data: Array("aws4_request".utf8))
    }

    /// The query re-encoded strictly and sorted by name, then value.
    static func canonicalQuery(_ pathAndQuery: String) -> String {
        guard let question = pathAndQuery.firstIndex(of: "?") else { return "" }
        let query = pathAndQuery[pathAndQuery.index(after: question)...]
        let pairs: [(String, String)] = query.split(separator: "&").map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecoded(parts[0]) ?? String(parts[0])
            let value = parts.count > 1 ? (percentDecoded(parts[1]) ?? String(parts[1])) : ""
            return (uriEncode(name), uriEncode(value))
        }
        return pairs.sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    static func trimmed(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }
}

/// RFC 3986 encoding as SigV4 wants it: everything but A–Z a–z 0–9 - _ . ~ is %XX
/// (upper case), and "/" too unless `keepSlash`.
func uriEncode(_ text: String, keepSlash: Bool = false) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    let hexDigits = Array("0123456789ABCDEF")
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        case UInt8(ascii: "/") where keepSlash:
            out.append("/")
        default:
            out.append("%")
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0f)])
        }
    }
    return out
}
