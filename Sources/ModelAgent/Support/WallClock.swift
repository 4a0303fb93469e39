#if canImport(Glibc)
    import Glibc
#endif

func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func format3(_ value: Double) -> String {
    let millis = Int64((value * 1000).rounded())
    let whole = millis / 1000
    let fraction = String(abs(millis % 1000))
    return "\(whole).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}
