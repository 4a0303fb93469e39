/// A Kubernetes resource quantity ("256Mi", "1G", "0.5Gi", "1e9", 1073741824) kept as
/// written and compared by value, so "1Gi" and "1024Mi" are the same spec.
///
/// The text comes from models.json, so parsing never traps: at most 19 significant
/// digits, exponents within ±24, every product checked, and values past 8Ei (the
/// int64 range Kubernetes itself stores) or below zero refused.
package struct MemoryQuantity: Hashable, Sendable, CustomStringConvertible {
    /// The text as it appeared in models.json; written back into markers unchanged.
    let original: String
    /// The value in nano-units, rounded up as Kubernetes does; never negative.
    let nanos: Int128

    /// The largest value accepted: Int64.max bytes, in nano-units.
    static let maximumNanos = Int128(Int64.max) * 1_000_000_000

    package init(parsing text: String) throws(InvalidQuantity) {
        original = text
        nanos = try Self.parse(text)
    }

    static let zero = MemoryQuantity(original: "0", nanos: 0)

    private init(original: String, nanos: Int128) {
        self.original = original
        self.nanos = nanos
    }

    package var description: String { original }

    /// Whole bytes, rounded up ("0.5" is 1 byte).
    package var bytes: Int64 {
        let billion: Int128 = 1_000_000_000
        return Int64((nanos + billion - 1) / billion)
    }

    /// The value as a plain decimal number of bytes ("1073741824", "0.1"): the form
    /// hashed into marker names, independent of how the quantity was written.
    var normalized: String {
        let billion: Int128 = 1_000_000_000
        let whole = nanos / billion
        var fraction = String(nanos % billion)
        var text = String(whole)
        if fraction != "0" {
            fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text
    }

    package static func == (a: MemoryQuantity, b: MemoryQuantity) -> Bool { a.nanos == b.nanos }
    package func hash(into hasher: inout Hasher) { hasher.combine(nanos) }

    private static let binarySuffixes: [String: Int] = ["Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60]
    private static let decimalSuffixes: [String: Int] = [
        "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
    ]

    private static func parse(_ text: String) throws(InvalidQuantity) -> Int128 {
        func fail(_ reason: String) -> InvalidQuantity { InvalidQuantity(text: text, reason: reason) }
        var bytes = Array(text.utf8)[...]
        guard !bytes.isEmpty, bytes.count <= 64 else { throw fail("expected a number with an optional unit suffix") }
        if bytes.first == UInt8(ascii: "-") { throw fail("memory must not be negative") }
        if bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }

        // Leading zeros are not significant, so "0.000…01" stays small however long it is.
        var mantissa: Int128 = 0
        var significantDigits = 0
        var fractionDigits = 0
        var sawDigit = false
        var sawPoint = false
        while let b = bytes.first, (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            if b == UInt8(ascii: ".") {
                if sawPoint { throw fail("expected a number with an optional unit suffix") }
                sawPoint = true
                continue
            }
            sawDigit = true
            if sawPoint { fractionDigits += 1 }
            if mantissa == 0 && b == 0x30 { continue }
            significantDigits += 1
            guard significantDigits <= 19 else { throw fail("more than 19 significant digits") }
            mantissa = mantissa * 10 + Int128(b - 0x30)
        }
        guard sawDigit else { throw fail("expected a number with an optional unit suffix") }

        // value = mantissa * 2^binaryShift * 10^(decimalExponent - fractionDigits)
        var binaryShift = 0
        var decimalExponent = 0
        let suffix = String(decoding: bytes, as: UTF8.self)
        if suffix.isEmpty {
        } else if let shift = binarySuffixes[suffix] {
            binaryShift = shift
        } else if let exponent = decimalSuffixes[suffix] {
            decimalExponent = exponent
        } else if let first = suffix.first, first == "e" || first == "E",
            let exponent = Int(suffix.dropFirst()), (-24...24).contains(exponent)
        {
            decimalExponent = exponent
        } else {
            throw fail("unknown unit suffix \(JSONText.quoted(suffix))")
        }

        // mantissa < 10^19 < 2^64 and binaryShift <= 60, so this stays below 2^124.
        let numerator = mantissa << binaryShift
        let power = 9 + decimalExponent - fractionDigits
        let tooLarge = fail("larger than 8Ei")
        var value: Int128
        if power >= 0 {
            value = numerator
            for _ in 0..<power {
                let (product, overflow) = value.multipliedReportingOverflow(by: 10)
                guard !overflow, product <= maximumNanos else { throw tooLarge }
                value = product
            }
        } else if -power > 38 {
            // 10^39 exceeds any numerator: a positive value rounds up to one nano-unit.
            value = numerator > 0 ? 1 : 0
        } else {
            var denominator: Int128 = 1
            for _ in 0..<(-power) { denominator *= 10 }
            value = (numerator + denominator - 1) / denominator
        }
        guard value <= maximumNanos else { throw tooLarge }
        return value
    }
}

package struct InvalidQuantity: Error, CustomStringConvertible, Sendable {
    let text: String
    let reason: String
    package var description: String { "invalid memory quantity \(JSONText.quoted(text)): \(reason)" }
}
