import COpenSSL

/// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signatures with a PEM private key, for the
/// JWTs a Google service account exchanges for access tokens.
final class RSASigner: @unchecked Sendable {
    // The key is immutable after init; EVP_DigestSign uses a fresh context per call.
    private let key: OpaquePointer

    init(pem: String) throws(SigningError) {
        let bytes = Array(pem.utf8)
        let parsed: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let parsed else { throw SigningError("the private key is not a PEM-encoded key") }
        key = parsed
    }

    deinit { EVP_PKEY_free(key) }

    func sign(_ message: [UInt8]) throws(SigningError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw SigningError("out of memory") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1 else {
            throw SigningError("the key cannot sign with RS256")
        }
        var length = 0
        let sized = message.withUnsafeBufferPointer { EVP_DigestSign(context, nil, &length, $0.baseAddress, $0.count) }
        guard sized == 1 else { throw SigningError("signing failed") }
        var signature = [UInt8](repeating: 0, count: length)
        let signed = message.withUnsafeBufferPointer { m in
            signature.withUnsafeMutableBufferPointer {
                EVP_DigestSign(context, $0.baseAddress, &length, m.baseAddress, m.count)
            }
        }
        guard signed == 1 else { throw SigningError("signing failed") }
        return Array(signature.prefix(length))
    }
}

struct SigningError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}
