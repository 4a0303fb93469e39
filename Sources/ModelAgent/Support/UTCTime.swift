#if canImport(Glibc)
    import Glibc
#endif

/// UTC calendar time without Foundation's formatters: AWS dates and ISO 8601 stamps.
struct UTCTime: Sendable, Equatable {
    let seconds: Int

    init(seconds: Int) { self.seconds = seconds }
    static func now() -> UTCTime { UTCTime(seconds: Int(wallClockSeconds())) }

    private var parts: tm {
        var t = time_t(seconds)
        var result = tm()
        gmtime_r(&t, &result)
        return result
    }

    private static func pad(_ value: Int32, _ width: Int = 2) -> String {
        let s = String(value)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// "20150830T123600Z", as in `x-amz-date`.
    var amzDate: String {
        let p = parts
        return Self.pad(p.tm_year + 1900, 4) + Self.pad(p.tm_mon + 1) + Self.pad(p.tm_mday) + "T" + Self.pad(p.tm_hour)
            + Self.pad(p.tm_min) + Self.pad(p.tm_sec) + "Z"
    }

    /// "2015-08-30T12:36:00Z".
    var iso8601: String {
        let p = parts
        return Self.pad(p.tm_year + 1900, 4) + "-" + Self.pad(p.tm_mon + 1) + "-" + Self.pad(p.tm_mday) + "T"
            + Self.pad(p.tm_hour) + ":" + Self.pad(p.tm_min) + ":" + Self.pad(p.tm_sec) + "Z"
    }

    /// "20150830", the date of a SigV4 credential scope.
    var dateStamp: String { String(amzDate.prefix(8)) }

    /// Parses "2026-11-22T06:00:00Z", with or without fractional seconds or an offset.
    static func parseISO8601(_ text: String) -> UTCTime? {
        let digits = text.unicodeScalars
        func number(_ from: Int, _ length: Int) -> Int32? {
            let start = digits.index(digits.startIndex, offsetBy: from, limitedBy: digits.endIndex)
            guard let start, let end = digits.index(start, offsetBy: length, limitedBy: digits.endIndex) else {
                return nil
            }
            return Int32(String(digits[start..<end]))
        }
        guard text.count >= 19, let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var t = tm()
        t.tm_year = year - 1900
        t.tm_mon = month - 1
        t.tm_mday = day
        t.tm_hour = hour
        t.tm_min = minute
        t.tm_sec = second
        var seconds = Int(timegm(&t))
        // A trailing "+hh:mm" / "-hh:mm" offset.
        let tail = text.dropFirst(19).drop { $0 == "." || $0.isNumber }
        if let sign = tail.first, sign == "+" || sign == "-", let h = Int(tail.dropFirst().prefix(2)),
            let m = Int(tail.dropFirst(4).prefix(2))
        {
            seconds -= (sign == "+" ? 1 : -1) * (h * 3600 + m * 60)
        }
        return UTCTime(seconds: seconds)
    }
}
