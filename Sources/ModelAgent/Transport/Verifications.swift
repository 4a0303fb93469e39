/// How the files of a download were checked, by kind: a checksum's name ("crc64nvme",
/// "crc32c", "md5", …) or "size" when the store published no usable checksum (or
/// checksums are turned off) and only the length was compared.
package struct Verifications: Sendable, Equatable, CustomStringConvertible {
    package private(set) var counts: [String: Int] = [:]

    static let sizeOnly = "size"

    init() {}

    mutating func add(_ kind: String, count: Int = 1) {
        counts[kind, default: 0] += count
    }

    mutating func add(_ other: Verifications) {
        for (kind, count) in other.counts { add(kind, count: count) }
    }

    /// "crc64nvme:3 md5:1", kinds sorted by name.
    package var description: String {
        counts.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " ")
    }

    /// `{"crc64nvme":3,"md5":1}`.
    var json: String {
        JSONText.object(counts.sorted { $0.key < $1.key }.map { ($0.key, String($0.value)) })
    }
}
