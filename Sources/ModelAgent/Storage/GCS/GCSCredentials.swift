import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Where GCS access tokens come from, in the order Google's client libraries look.
enum GCSCredentialSource: Sendable, Equatable {
    /// Unsigned requests: asked for (`gcsAnonymousCredential=true`), an emulator, or nothing found.
    case anonymous
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account key (signed JWT) or an
    /// `authorized_user` file (refresh token). Read at each refresh, so rotation works.
    case keyFile(path: String)
    /// The metadata server (GKE Workload Identity, GCE): `GCE_METADATA_HOST`.
    case metadataServer(host: String)

    static func from(environment env: [String: String]) -> GCSCredentialSource {
        if ["true", "1"].contains(env["gcsAnonymousCredential"]?.lowercased() ?? "") { return .anonymous }
        if let path = env["GOOGLE_APPLICATION_CREDENTIALS"], !path.isEmpty { return .keyFile(path: path) }
        if let emulator = env["STORAGE_EMULATOR_HOST"], !emulator.isEmpty { return .anonymous }
        let host = [env["GCE_METADATA_HOST"], env["GCE_METADATA_IP"]].compactMap { $0 }.first { !$0.isEmpty }
        return .metadataServer(host: host ?? "metadata.google.internal")
    }
}

/// Hands out a current access token (nil: anonymous). Tokens are shared by concurrent
/// requests and renewed five minutes before they expire.
actor GCSTokenProvider {
    static let scope = "https://www.googleapis.com/auth/devstorage.read_only"
    let source: GCSCredentialSource
    private let pool: TransferPool
    private let logger: Logger
    private let cache: CredentialCache<String>
    /// No metadata server answered (nothing resolves or listens there): anonymous
    /// requests until this time, then the server is asked again.
    private var anonymousUntil: ContinuousClock.Instant?
    private let absenceRecheck: Duration
    /// Timeouts in a row: off GCP, `metadata.google.internal` may hang instead of failing,
    /// so after a few the server is taken as absent (and asked again later).
    private var timeoutsInARow = 0
    static let timeoutsMeaningAbsent = 3

    /// `absenceRecheck`: how long "no metadata server here" is believed before asking again.
    init(
        source: GCSCredentialSource, pool: TransferPool, logger: Logger, refreshMargin: Int = 300,
        absenceRecheck: Duration = .seconds(60)
    ) {
        self.source = source
        self.pool = pool
        self.logger = logger
        self.absenceRecheck = absenceRecheck
        cache = CredentialCache(refreshMargin: refreshMargin)
    }

    /// The current token; nil means anonymous. A metadata server that is there but
    /// fails (a timeout or an error status, common while GKE's Workload Identity starts)
    /// throws a transient error, so the download is retried with backoff and recovers
    /// once the server answers, instead of going anonymous for good.
    func token() async throws -> String? {
        if case .anonymous = source { return nil }
        if let anonymousUntil, ContinuousClock.now < anonymousUntil { return nil }
        do {
            return try await cache.value { [self] in try await self.fetchCounted() }
        } catch is NoGCSCredentials {
            if anonymousUntil == nil {
                logger.info("No GCS credentials found (no key file, no metadata server); using anonymous requests")
            }
            anonymousUntil = ContinuousClock.now + absenceRecheck
            return nil
        }
    }

    /// One fetch (the cache runs one at a time for all callers), with the bookkeeping that
    /// belongs to fetches rather than callers: timeouts in a row, and recovery.
    private func fetchCounted() async throws -> CredentialCache<String>.Fetched {
        let answer: (token: String, expires: Int)?
        do {
            answer = try await Self.fetch(source, pool: pool, logger: logger)
            timeoutsInARow = 0
        } catch let error as MetadataTimeout {
            timeoutsInARow += 1
            guard timeoutsInARow >= Self.timeoutsMeaningAbsent else { throw error }
            timeoutsInARow = 0
            answer = nil
        }
        guard let fresh = answer else { throw NoGCSCredentials() }
        if anonymousUntil != nil { logger.info("The metadata server answers now; GCS requests carry its token") }
        anonymousUntil = nil
        return .init(value: fresh.token, expires: fresh.expires)
    }

    private static func fetch(_ source: GCSCredentialSource, pool: TransferPool, logger: Logger) async throws -> (
        token: String, expires: Int
    )? {
        switch source {
        case .anonymous: return nil
        case .keyFile(let path): return try await fromKeyFile(path, pool: pool)
        case .metadataServer(let host): return try await fromMetadataServer(host, pool: pool)
        }
    }

    private struct KeyFile: Decodable {
        var type: String?
        var client_email: String?
        var private_key: String?
        var private_key_id: String?
        var token_uri: String?
        var client_id: String?
        var client_secret: String?
        var refresh_token: String?
    }

    private struct TokenAnswer: Decodable {
        var access_token: String
        var expires_in: Int?
    }

    private static func fromKeyFile(_ path: String, pool: TransferPool) async throws -> (token: String, expires: Int) {
        let key: KeyFile
        do {
            key = try JSONDecoder().decode(KeyFile.self, from: Data(try FileSystem.readFile(path, limit: 1 << 20)))
        } catch {
            throw CredentialError("cannot read GOOGLE_APPLICATION_CREDENTIALS \(path): not a credentials JSON file")
        }
        for secret in [key.private_key, key.client_secret, key.refresh_token].compactMap({ $0 }) {
            SecretRedactor.shared.register(secret)
        }
        let form: [(String, String)]
        let tokenURI: String
        switch key.type {
        case "service_account":
            guard let email = key.client_email, let pem = key.private_key else {
                throw CredentialError("service account file \(path) lacks client_email or private_key")
            }
            tokenURI = key.token_uri ?? "https://oauth2.googleapis.com/token"
            let assertion = try makeJWT(email: email, pem: pem, keyID: key.private_key_id, audience: tokenURI)
            form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)]
        case "authorized_user":
            guard let id = key.client_id, let secret = key.client_secret, let refresh = key.refresh_token else {
                throw CredentialError("authorized_user file \(path) lacks client_id, client_secret or refresh_token")
            }
            tokenURI = key.token_uri ?? "https://oauth2.googleapis.com/token"
            form = [
                ("grant_type", "refresh_token"), ("client_id", id), ("client_secret", secret),
                ("refresh_token", refresh),
            ]
        default:
            throw CredentialError("credentials file \(path) has unsupported type \(key.type ?? "none")")
        }
        var request = HTTPRequest(method: "POST", url: tokenURI, timeout: .seconds(30))
        request.headers = [(name: "Content-Type", value: "application/x-www-form-urlencoded")]
        request.body = Array(form.map { "\(uriEncode($0.0))=\(uriEncode($0.1))" }.joined(separator: "&").utf8)
        return try await exchange(request, pool: pool, what: "token endpoint \(Redaction.uri(tokenURI))")
    }

    /// A JWT asking for read-only storage access, signed with the service account's key.
    static func makeJWT(email: String, pem: String, keyID: String?, audience: String, now: UTCTime = .now()) throws
        -> String
    {
        var header = [("alg", JSONText.quoted("RS256")), ("typ", JSONText.quoted("JWT"))]
        if let keyID { header.append(("kid", JSONText.quoted(keyID))) }
        let claims = JSONText.object([
            ("iss", JSONText.quoted(email)), ("scope", JSONText.quoted(scope)), ("aud", JSONText.quoted(audience)),
            ("iat", String(now.seconds)), ("exp", String(now.seconds + 3600)),
        ])
        let signingInput =
            Base64.encode(Array(JSONText.object(header).utf8), url: true) + "."
            + Base64.encode(Array(claims.utf8), url: true)
        let signer: RSASigner
        do {
            signer = try RSASigner(pem: pem)
        } catch {
            throw CredentialError("service account private key is unusable: \(error)")
        }
        return signingInput + "." + Base64.encode(try signer.sign(Array(signingInput.utf8)), url: true)
    }

    /// Nil when there is no metadata server to ask (not on GCP: its name does not
    /// resolve, or nothing listens there). Any other failure is an error worth a retry.
    private static func fromMetadataServer(_ host: String, pool: TransferPool) async throws -> (
        token: String, expires: Int
    )? {
        let base = host.contains("://") ? host : "http://" + host
        var request = HTTPRequest(
            url: base + "/computeMetadata/v1/instance/service-accounts/default/token", timeout: .seconds(5))
        request.headers = [(name: "Metadata-Flavor", value: "Google")]
        let attempt = try await pool.attempt(request, sink: .memory(limit: 1 << 20))
        if let error = attempt.error {
            // 6: the name does not resolve; 7: nothing accepts the connection; 28: no answer in time.
            if case .curl(let code, _) = error, code == 6 || code == 7 { return nil }
            if case .curl(28, _) = error { throw MetadataTimeout(host: host) }
            throw CredentialError("metadata server \(host) did not answer: \(error)")
        }
        return try answer(attempt.response, what: "metadata server \(host)")
    }

    private static func exchange(_ request: HTTPRequest, pool: TransferPool, what: String) async throws -> (
        token: String, expires: Int
    ) {
        let response: HTTPResponse
        do {
            response = try await pool.perform(request, sink: .memory(limit: 1 << 20))
        } catch {
            throw CredentialError("\(what) unreachable: \(error)")
        }
        return try answer(response, what: what)
    }

    private static func answer(_ response: HTTPResponse, what: String) throws -> (token: String, expires: Int) {
        guard response.status == 200, let answer = parseTokenAnswer(response.body) else {
            throw CredentialError("\(what) refused the token request: HTTP \(response.status)")
        }
        SecretRedactor.shared.register(answer.token, key: "gcs-token:" + what)
        return answer
    }

    /// `{"access_token": …, "expires_in": seconds}`; nil when the answer is not that. A
    /// lifetime outside a day is taken as an hour.
    static func parseTokenAnswer(_ body: [UInt8], now: Int = UTCTime.now().seconds) -> (token: String, expires: Int)? {
        guard let answer = try? JSONDecoder().decode(TokenAnswer.self, from: Data(body)), !answer.access_token.isEmpty
        else { return nil }
        let lifetime = answer.expires_in.flatMap { (1...86_400).contains($0) ? $0 : nil } ?? 3600
        return (answer.access_token, now + lifetime)
    }
}

/// Neither a key file nor a metadata server: requests go anonymous for a while.
struct NoGCSCredentials: Error {}

/// The metadata server did not answer in time: a transient failure, unless it keeps
/// happening (then there is no metadata server, as off GCP where its name may hang).
struct MetadataTimeout: Error, RetryClassifying, CustomStringConvertible {
    let host: String
    var isTransient: Bool { true }
    var description: String { "metadata server \(host) did not answer in time" }
}
