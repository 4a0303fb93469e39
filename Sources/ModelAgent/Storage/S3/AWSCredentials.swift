import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A key pair with its optional session token and expiry. Never printed.
struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    var accessKeyId: String
    var secretAccessKey: String
    var sessionToken: String?
    var expiration: UTCTime?

    init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: UTCTime? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    var description: String { "AWSCredentials(<redacted>)" }
}

/// Where S3 credentials come from, in the order KServe users configure them.
enum AWSCredentialSource: Sendable {
    /// `awsAnonymousCredential=true`, or nothing configured: unsigned requests.
    case anonymous
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
    case fixed(AWSCredentials)
    /// IRSA: `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, exchanged at STS.
    case webIdentity(roleARN: String, tokenFile: String, sessionName: String, stsEndpoint: String)
}

/// Hands out current credentials; web-identity ones are fetched once, shared by all
/// concurrent requests, and refreshed five minutes before they expire.
actor AWSCredentialProvider {
    let source: AWSCredentialSource
    private let pool: TransferPool
    private let logger: Logger
    private let cache: CredentialCache<AWSCredentials>
    /// How long credentials without a parseable expiry are taken to live: reused for a
    /// while (not an STS call per request), as STS keys live an hour at least.
    static let assumedLifetime = 900 + 300

    init(
        source: AWSCredentialSource, pool: TransferPool, logger: Logger, refreshMargin: Int = 300,
        now: @escaping @Sendable () -> UTCTime = { .now() }
    ) {
        self.source = source
        self.pool = pool
        self.logger = logger
        cache = CredentialCache(
            refreshMargin: refreshMargin, assumedLifetime: Self.assumedLifetime, now: { now().seconds })
    }

    /// Nil means "send the request unsigned".
    func credentials() async throws -> AWSCredentials? {
        switch source {
        case .anonymous: return nil
        case .fixed(let credentials): return credentials
        case .webIdentity(let role, let tokenFile, let session, let endpoint):
            return try await cache.value { [pool, logger] in
                let fresh = try await STSWebIdentity.assumeRole(
                    role: role, tokenFile: tokenFile, sessionName: session, endpoint: endpoint, pool: pool,
                    logger: logger)
                return .init(value: fresh, expires: fresh.expiration?.seconds)
            }
        }
    }
}

/// `AssumeRoleWithWebIdentity`: the projected service-account token buys temporary keys.
enum STSWebIdentity {
    static func assumeRole(
        role: String, tokenFile: String, sessionName: String, endpoint: String, pool: TransferPool, logger: Logger
    ) async throws -> AWSCredentials {
        let token: String
        do {
            token = String(decoding: try FileSystem.readFile(tokenFile, limit: 1 << 20), as: UTF8.self)
                .trimmingWhitespace()
        } catch {
            throw CredentialError("cannot read AWS_WEB_IDENTITY_TOKEN_FILE \(tokenFile): \(error)")
        }
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", role),
            ("RoleSessionName", sessionName), ("WebIdentityToken", token), ("DurationSeconds", "3600"),
        ].map { "\(uriEncode($0.0))=\(uriEncode($0.1))" }.joined(separator: "&")
        var request = HTTPRequest(
            method: "POST", url: endpoint.hasSuffix("/") ? endpoint : endpoint + "/", timeout: .seconds(30))
        request.headers = [(name: "Content-Type", value: "application/x-www-form-urlencoded")]
        request.body = Array(form.utf8)
        let response: HTTPResponse
        do {
            response = try await pool.perform(request, sink: .memory(limit: 1 << 20))
        } catch {
            throw CredentialError("STS at \(Redaction.uri(endpoint)) unreachable: \(error)")
        }
        let credentials = try parseAnswer(status: response.status, body: response.body, role: role)
        SecretRedactor.shared.register(
            [credentials.secretAccessKey, credentials.sessionToken].compactMap { $0 }, key: "sts:" + role)
        logger.info(
            "Assumed role \(role) with web identity",
            metadata: ["expires": "\(credentials.expiration?.iso8601 ?? "unknown")"])
        return credentials
    }

    /// The credentials in an AssumeRoleWithWebIdentity answer, or the error it reports.
    static func parseAnswer(status: Int, body: [UInt8], role: String) throws -> AWSCredentials {
        let xml = XMLScanner(body)
        guard status == 200, let result = xml.elements("Credentials").first,
            let key = result.value("AccessKeyId"), let secret = result.value("SecretAccessKey")
        else {
            let reason = ErrorDocument.reason(body) ?? "HTTP \(status)"
            throw CredentialError("STS AssumeRoleWithWebIdentity for \(role) failed: \(reason)")
        }
        return AWSCredentials(
            accessKeyId: key, secretAccessKey: secret, sessionToken: result.value("SessionToken"),
            expiration: result.value("Expiration").flatMap(UTCTime.parseISO8601))
    }
}

struct CredentialError: Error, RetryClassifying, CustomStringConvertible {
    let description: String
    var isTransient: Bool { true }
    init(_ description: String) { self.description = description }
}
