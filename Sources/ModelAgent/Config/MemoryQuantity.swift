/// A Kubernetes resource quantity ("256Mi", "1G", "0.5Gi", "1e9", 1073741824) kept as
/// written and compared by value, so "1Gi" and "1024Mi" are the same spec.
public struct MemoryQuantity: Hashable, Sendable, CustomStringConvertible {
    /// The text as it appeared in models.json; written back into markers unchanged.
    public let original: String
    /// The value in nano-units, rounded up as Kubernetes does.
    public let nanos: Int128

    public init(parsing text: String) throws(InvalidQuantity) {
        original = text
        nanos = try Self.parse(text)
    }

    public static let zero = try! MemoryQuantity(parsing: "0")

    public var description: String { original }

    /// The value as a plain decimal number of bytes ("1073741824", "0.1"): the form
    /// hashed into marker names, independent of how the quantity was written.
    public var normalized: String {
        let billion: Int128 = 1_000_000_000
        let negative = nanos < 0
        let magnitude = negative ? -nanos : nanos
        let whole = magnitude / billion
        var fraction = String(magnitude % billion)
        var text = String(whole)
        if fraction != "0" {
            fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return negative ? "-" + text : text
    }

    public static func == (a: MemoryQuantity, b: MemoryQuantity) -> Bool { a.nanos == b.nanos }
    public func hash(into hasher: inout Hasher) { hasher.combine(nanos) }

    private static func parse(_ text: String) throws(InvalidQuantity) -> Int128 {
        let fail = InvalidQuantity(text: text)
        var bytes = Array(text.utf8)[...]
        guard !bytes.isEmpty, bytes.count <= 64 else { throw fail }
        var negative = false
        if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") {
            negative = bytes.first == UInt8(ascii: "-")
            bytes = bytes.dropFirst()
        }
        var mantissa: Int128 = 0
        var fractionDigits = 0
        var sawDigit = false
        var sawPoint = false
        while let b = bytes.first, (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            if b == UInt8(ascii: ".") {
                if sawPoint { throw fail }
                sawPoint = true
                continue
            }
            sawDigit = true
            if mantissa > Int128(1) << 100 { throw fail }
            mantissa = mantissa * 10 + Int128(b - 0x30)
            if sawPoint { fractionDigits += 1 }
        }
        guard sawDigit else { throw fail }

        // value = mantissa * 10^-fractionDigits * 2^binaryShift * 10^decimalExponent
        var binaryShift = 0
        var decimalExponent = 0
        let suffix = String(decoding: bytes, as: UTF8.self)
        switch suffix {
        case "": break
        case "Ki": binaryShift = 10
        case "Mi": binaryShift = 20
        case "Gi": binaryShift = 30
        case "Ti": binaryShift = 40
        case "Pi": binaryShift = 50
        case "Ei": binaryShift = 60
        case "n": decimalExponent = -9
        case "u": decimalExponent = -6
        case "m": decimalExponent = -3
        case "k": decimalExponent = 3
        case "M": decimalExponent = 6
        case "G": decimalExponent = 9
        case "T": decimalExponent = 12
        case "P": decimalExponent = 15
        case "E": decimalExponent = 18
        default:
            guard let first = suffix.first, first == "e" || first == "E",
                let exponent = Int(suffix.dropFirst()), abs(exponent) <= 24
            else { throw fail }
            decimalExponent = exponent
        }

        // nanos = mantissa * 2^shift * 10^(9 + decimalExponent - fractionDigits), rounded up.
        var numerator = mantissa << binaryShift
        var denominator: Int128 = 1
        let power = 9 + decimalExponent - fractionDigits
        if power >= 0 {
            for _ in 0..<power {
                numerator *= 10
                if numerator > Int128(1) << 120 { throw fail }
            }
        } else {
            for _ in 0..<(-power) { denominator *= 10 }
        }
        let value = (numerator + denominator - 1) / denominator
        return negative ? -value : value
    }
}

public struct InvalidQuantity: Error, CustomStringConvertible, Sendable {
    public let text: String
    public var description: String { "invalid memory quantity \(JSONText.quoted(text))" }
}
