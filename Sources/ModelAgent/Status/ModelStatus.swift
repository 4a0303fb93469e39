#if canImport(Glibc)
    import Glibc
#endif

/// Where a model stands, as reported on /v1/models and in metrics.
public enum ModelState: String, Sendable, CaseIterable {
    /// Known, no work started yet (or waiting for a download slot).
    case pending = "Pending"
    case downloading = "Downloading"
    /// Downloaded; waiting for the server or a load slot, or loading.
    case loading = "Loading"
    case loaded = "Loaded"
    case unloading = "Unloading"
    /// The last attempt failed; `lastError` says why and a retry is scheduled.
    case failed = "Failed"
}

public struct ModelStatus: Sendable {
    public var name: ModelName
    public var state: ModelState
    public var storageUri: String
    /// The spec hash currently on disk (the marker suffix), if any.
    public var diskHash: String?
    public var lastError: String?
    /// Consecutive failed attempts; reset by a success.
    public var failures: Int = 0
    public var downloads: Int = 0
    public var loads: Int = 0
    public var unloads: Int = 0
    public var lastDownloadBytes: Int64?
    public var lastDownloadMilliseconds: Int?
    /// Wall-clock seconds of the last state change.
    public var since: Double

    public init(name: ModelName, state: ModelState, storageUri: String) {
        self.name = name
        self.state = state
        self.storageUri = storageUri
        self.since = wallClockSeconds()
    }

    var json: String {
        var fields: [(String, String)] = [
            ("name", JSONText.quoted(name.rawValue)),
            ("state", JSONText.quoted(state.rawValue)),
            ("storageUri", JSONText.quoted(Redaction.uri(storageUri))),
            ("since", String(format3(since))),
            ("failures", String(failures)),
            ("downloads", String(downloads)),
            ("loads", String(loads)),
            ("unloads", String(unloads)),
        ]
        if let diskHash { fields.append(("diskHash", JSONText.quoted(diskHash))) }
        if let lastError { fields.append(("lastError", JSONText.quoted(lastError))) }
        if let lastDownloadBytes { fields.append(("lastDownloadBytes", String(lastDownloadBytes))) }
        if let lastDownloadMilliseconds { fields.append(("lastDownloadMs", String(lastDownloadMilliseconds))) }
        return JSONText.object(fields)
    }
}

public func wallClockSeconds() -> Double {
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
