#if canImport(Glibc)
    import Glibc
#endif

/// Where a model stands, as reported on /v1/models and in metrics.
enum ModelState: String, Sendable, CaseIterable {
    /// Known, no work started yet (or waiting for a download slot).
    case pending = "Pending"
    case downloading = "Downloading"
    /// Downloaded; waiting for the server or a load slot, or loading.
    case loading = "Loading"
    case loaded = "Loaded"
    /// With a memory cache: on disk and verified, not loaded; loaded on its first request.
    case standby = "Standby"
    /// With a disk tier: not on disk either; fetched and loaded on its first request.
    case remote = "Remote"
    case unloading = "Unloading"
    /// The last attempt failed; `lastError` says why and a retry is scheduled.
    case failed = "Failed"
}

struct ModelStatus: Sendable {
    var name: ModelName
    var state: ModelState
    var storageUri: String
    /// The spec hash currently on disk (the marker suffix), if any.
    var diskHash: String?
    var lastError: String?
    /// Consecutive failed attempts; reset by a success.
    var failures: Int = 0
    var downloads: Int = 0
    var loads: Int = 0
    var unloads: Int = 0
    var lastDownloadBytes: Int64?
    var lastDownloadMilliseconds: Int?
    /// How the last download's files were checked: files per checksum kind, or "size".
    var lastDownloadChecks: Verifications?
    /// Wall-clock seconds of the last state change.
    var since: Double

    init(name: ModelName, state: ModelState, storageUri: String) {
        self.name = name
        self.state = state
        self.storageUri = storageUri
        self.since = wallClockSeconds()
    }

    /// `traffic`: the model's figures from the proxy, when it has seen a request for it;
    /// `cache`: the memory cache's, when there is a cache.
    func json(traffic: ModelTraffic.Figures? = nil, cache: ModelCache.Figures? = nil) -> String {
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
        if let lastError { fields.append(("lastError", JSONText.quoted(SecretRedactor.shared.redact(lastError)))) }
        if let lastDownloadBytes { fields.append(("lastDownloadBytes", String(lastDownloadBytes))) }
        if let lastDownloadMilliseconds { fields.append(("lastDownloadMs", String(lastDownloadMilliseconds))) }
        if let lastDownloadChecks, !lastDownloadChecks.counts.isEmpty {
            fields.append(("lastDownloadChecks", lastDownloadChecks.json))
        }
        fields.append(("inFlightRequests", String(traffic?.inFlight ?? 0)))
        if let lastRequest = traffic?.lastRequest { fields.append(("lastRequest", String(format3(lastRequest)))) }
        if let cache {
            fields.append(("memoryBytes", String(cache.memoryBytes)))
            if let lastUsed = cache.lastUsed { fields.append(("lastUsed", format3(lastUsed))) }
            fields.append(("hits", String(cache.hits)))
            fields.append(("misses", String(cache.misses)))
            fields.append(("coldLoads", String(cache.coldLoads)))
            fields.append(("evictions", String(cache.evictions)))
            if let ms = cache.lastColdLoadMilliseconds { fields.append(("lastColdLoadMs", String(ms))) }
            if let onDisk = cache.onDisk {
                fields.append(("onDisk", onDisk ? "true" : "false"))
                if let bytes = cache.diskBytes { fields.append(("diskBytes", String(bytes))) }
                fields.append(("diskEvictions", String(cache.diskEvictions)))
            }
        }
        return JSONText.object(fields)
    }
}
