/// A credential shared by every request: one caller fetches it while the others wait for
/// the same answer, and it is reused until `refreshMargin` before it expires. The one cache
/// behind STS keys and Google access tokens.
actor CredentialCache<Value: Sendable> {
    struct Fetched: Sendable {
        var value: Value
        /// Unix seconds; nil when the issuer did not say (then `assumedLifetime` applies).
        var expires: Int?
    }

    private let refreshMargin: Int
    private let assumedLifetime: Int
    private let now: @Sendable () -> Int
    private var cached: (value: Value, refreshAt: Int)?
    /// The fetch in flight, awaited by every caller that arrives meanwhile.
    private var pending: Task<Value, any Error>?

    /// `refreshMargin`: seconds before expiry at which a new credential is fetched.
    init(
        refreshMargin: Int = 300, assumedLifetime: Int = 3600,
        now: @escaping @Sendable () -> Int = { UTCTime.now().seconds }
    ) {
        self.refreshMargin = refreshMargin
        self.assumedLifetime = assumedLifetime
        self.now = now
    }

    /// The cached value, or what `fetch` returns (one fetch for all concurrent callers; a
    /// failed fetch is not cached, so the next caller tries again).
    func value(fetch: @escaping @Sendable () async throws -> Fetched) async throws -> Value {
        if let cached, cached.refreshAt > now() { return cached.value }
        if let pending { return try await pending.value }
        let task = Task { () async throws -> Value in
            let fresh = try await fetch()
            self.store(fresh)
            return fresh.value
        }
        pending = task
        defer { pending = nil }
        return try await task.value
    }

    private func store(_ fresh: Fetched) {
        let lifetime = fresh.expires.map { $0 - now() } ?? assumedLifetime
        cached = (fresh.value, now() + max(0, lifetime - refreshMargin))
    }
}
