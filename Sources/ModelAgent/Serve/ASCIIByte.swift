/// What the HTTP parsers ask of single bytes of ASCII text, on bytes, with no String made.
enum ASCIIByte {
    /// `byte` with an upper-case letter turned lower case (header names and paths compared
    /// without regard to case).
    @inline(__always)
    static func folded(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }

    /// The value of a hexadecimal digit (chunk sizes, percent-escapes), or nil.
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}
