import ArgumentParser

/// Flag values are checked against ranges before use: an infinite or astronomic number
/// of seconds would trap when turned into a Duration, a tiny one would spin the agent.
enum FlagRanges {
    static func seconds(_ value: Double, _ flag: String, _ range: ClosedRange<Double>) throws {
        guard value.isFinite, range.contains(value) else {
            throw ValidationError(
                "\(flag) must be a number of seconds between \(format(range.lowerBound)) and \(format(range.upperBound))"
            )
        }
    }

    static func count(_ value: Int, _ flag: String, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ValidationError("\(flag) must be between \(range.lowerBound) and \(range.upperBound)")
        }
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
