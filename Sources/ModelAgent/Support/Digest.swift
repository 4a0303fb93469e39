import COpenSSL

/// Incremental message digest over OpenSSL's EVP interface.
final class Digest {
    enum Algorithm: Sendable {
        case sha256, md5

        fileprivate var evp: OpaquePointer? {
            switch self {
            case .sha256: return EVP_sha256()
            case .md5: return EVP_md5()
            }
        }
    }

    private let context: OpaquePointer

    init(_ algorithm: Algorithm) {
        context = EVP_MD_CTX_new()!
        EVP_DigestInit_ex(context, algorithm.evp, nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) }
    }

    func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest; the object must not be updated afterwards.
    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &out, &length)
        return Array(out.prefix(Int(length)))
    }

    static func hash(_ algorithm: Algorithm, _ bytes: [UInt8]) -> [UInt8] {
        let d = Digest(algorithm)
        d.update(bytes)
        return d.finish()
    }

    static func sha256Hex(_ text: String) -> String {
        hex(hash(.sha256, Array(text.utf8)))
    }
}

func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var length: UInt32 = 0
    key.withUnsafeBufferPointer { k in
        data.withUnsafeBufferPointer { d in
            _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), d.baseAddress, d.count, &out, &length)
        }
    }
    return Array(out.prefix(Int(length)))
}

private let hexDigits = Array("0123456789abcdef".utf8)

func hex(_ bytes: some Sequence<UInt8>) -> String {
    var out: [UInt8] = []
    for b in bytes {
        out.append(hexDigits[Int(b >> 4)])
        out.append(hexDigits[Int(b & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// 16 random hex characters, for staging directory names and request ids.
func randomID() -> String {
    var g = SystemRandomNumberGenerator()
    return hex((0..<8).map { _ in UInt8.random(in: 0...255, using: &g) })
}
