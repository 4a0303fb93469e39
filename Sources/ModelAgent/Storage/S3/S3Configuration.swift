/// How to reach S3, read from the environment variables KServe's credential builder
/// injects (reference kserve-agent.md §8.1), with defaults that never fail for lack of a
/// region.
struct S3Configuration: Sendable, Equatable {
    var region = "us-east-1"
    /// scheme://host[:port] of a custom endpoint; nil means AWS.
    var endpoint: URLParts?
    /// Force path-style (`true`) or virtual-host (`false`) addressing; nil decides per request.
    var forcePathStyle: Bool?
    var accelerate = false
    var verifyTLS = true
    var caBundle: String?
    /// Ask for additional checksums (`x-amz-checksum-mode`). The AWS SDKs' setting
    /// `AWS_RESPONSE_CHECKSUM_VALIDATION=when_required` turns it off, for stores that
    /// refuse the header; a refusal also turns it off by itself.
    var checksumMode = true

    init() {}

    static func from(environment env: [String: String]) throws -> S3Configuration {
        var config = S3Configuration()
        if let region = env["AWS_DEFAULT_REGION"] ?? env["AWS_REGION"], !region.isEmpty { config.region = region }
        if let raw = [env["AWS_ENDPOINT_URL_S3"], env["AWS_ENDPOINT_URL"]].compactMap({ $0 }).first(where: {
            !$0.isEmpty
        }) {
            guard let url = URLParts(raw) else { throw ConfigurationError("AWS endpoint \(raw) is not an http(s) URL") }
            config.endpoint = url
        } else if let host = env["S3_ENDPOINT"], !host.isEmpty {
            let https = !["0", "false"].contains(env["S3_USE_HTTPS"]?.lowercased() ?? "1")
            let raw = host.contains("://") ? host : (https ? "https://" : "http://") + host
            guard let url = URLParts(raw) else { throw ConfigurationError("S3_ENDPOINT \(host) is not a host[:port]") }
            config.endpoint = url
        }
        switch env["S3_USER_VIRTUAL_BUCKET"]?.lowercased() {
        case "false"?: config.forcePathStyle = true
        case "true"?: config.forcePathStyle = false
        default: break
        }
        config.accelerate = env["S3_USE_ACCELERATE"]?.lowercased() == "true"
        if let verify = env["S3_VERIFY_SSL"]?.lowercased(), ["0", "false"].contains(verify) {
            config.verifyTLS = false
        }
        if let bundle = env["AWS_CA_BUNDLE"], !bundle.isEmpty { config.caBundle = bundle }
        config.checksumMode = env["AWS_RESPONSE_CHECKSUM_VALIDATION"]?.lowercased() != "when_required"
        return config
    }

    /// The credential source the environment describes.
    static func credentialSource(environment env: [String: String], region: String) -> AWSCredentialSource {
        if env["awsAnonymousCredential"]?.lowercased() == "true" { return .anonymous }
        if let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"], !key.isEmpty, !secret.isEmpty
        {
            let token = env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return .fixed(AWSCredentials(accessKeyId: key, secretAccessKey: secret, sessionToken: token))
        }
        if let role = env["AWS_ROLE_ARN"], let file = env["AWS_WEB_IDENTITY_TOKEN_FILE"], !role.isEmpty, !file.isEmpty {
            let endpoint =
                [env["AWS_ENDPOINT_URL_STS"], env["AWS_ENDPOINT_URL"]].compactMap { $0 }.first { !$0.isEmpty }
                ?? "https://sts.\(region).amazonaws.com"
            let session = env["AWS_ROLE_SESSION_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "model-agent"
            return .webIdentity(roleARN: role, tokenFile: file, sessionName: session, stsEndpoint: endpoint)
        }
        return .anonymous
    }

    /// Path-style for custom endpoints (MinIO, rclone, Ceph — in-cluster names rarely
    /// resolve as `<bucket>.<host>`) and for bucket names with dots (TLS wildcard
    /// certificates do not match them); virtual-host for AWS otherwise.
    func usesPathStyle(bucket: String) -> Bool {
        if let forcePathStyle { return forcePathStyle }
        if accelerate { return false }
        return endpoint != nil || bucket.contains(".")
    }

    /// scheme://authority, and the path prefix, for requests about `bucket`.
    func base(bucket: String) -> (origin: String, pathPrefix: String) {
        let pathStyle = usesPathStyle(bucket: bucket)
        if let endpoint {
            let basePath = endpoint.path.trimmingSlashesAtEnd()
            if pathStyle { return ("\(endpoint.scheme)://\(endpoint.authority)", basePath + "/" + uriEncode(bucket)) }
            return ("\(endpoint.scheme)://\(bucket).\(endpoint.authority)", basePath)
        }
        let host = accelerate ? "s3-accelerate.amazonaws.com" : "s3.\(region).amazonaws.com"
        if pathStyle { return ("https://\(host)", "/" + uriEncode(bucket)) }
        return ("https://\(bucket).\(host)", "")
    }
}

extension String {
    func trimmingSlashesAtEnd() -> String {
        var s = self
        while s.hasSuffix("/") { s.removeLast() }
        return s
    }
}
