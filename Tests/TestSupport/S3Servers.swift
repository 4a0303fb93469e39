import Foundation

/// `rclone serve s3` over a directory: each top-level folder is a bucket, each file an
/// object (its ETag is the content's MD5). With `auth` it verifies SigV4 signatures.
public final class RcloneS3Server: @unchecked Sendable {
    public static let accessKey = "AKIDMODELAGENT"
    public static let secretKey = "model+agent/secret=key"

    public let process: ChildProcess
    public let root: String
    public let port: Int
    public let scheme: String
    public var endpoint: String { "\(scheme)://127.0.0.1:\(port)" }

    /// `md5ETags: false` stops rclone hashing files for listings (needed for huge sparse files).
    public init(
        root: String, auth: Bool = true, tls: (cert: String, key: String)? = nil, md5ETags: Bool = true,
        logDirectory: String
    ) async throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var arguments = ["serve", "s3", "--addr", "127.0.0.1:0", "--config", "/dev/null", "--vfs-cache-mode", "off"]
        if auth { arguments += ["--auth-key", "\(Self.accessKey),\(Self.secretKey)"] }
        if let tls { arguments += ["--cert", tls.cert, "--key", tls.key] }
        if !md5ETags { arguments += ["--etag-hash", ""] }
        scheme = tls == nil ? "http" : "https"
        process = try ChildProcess(
            name: "rclone", executable: try TestPaths.venvTool("tools", "rclone"), arguments: arguments + [root],
            environment: ["RCLONE_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()],
            logPath: logDirectory + "/rclone-\(UUID().uuidString.prefix(6)).log")
        let line = try await process.waitForLine(containing: "Starting s3 server on")
        let address = line.split(separator: "127.0.0.1:").last!.prefix { $0.isNumber }
        port = Int(address)!
    }

    /// Writes an object (creating its bucket and "directories").
    public func put(_ bucket: String, _ key: String, _ data: Data) throws {
        let path = root + "/" + bucket + "/" + key
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }

    public func put(_ bucket: String, _ key: String, _ text: String) throws { try put(bucket, key, Data(text.utf8)) }

    /// Environment a KServe pod would carry for this server.
    public func environment(secret: String = RcloneS3Server.secretKey) -> [String: String] {
        [
            "AWS_ACCESS_KEY_ID": Self.accessKey, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        ]
    }

    public func stop() async { await process.stop() }
}

/// moto_server: S3 and STS in one process; it accepts any well-formed signature, and its
/// STS hands out temporary keys (AccessKeyId "ASIA…") for AssumeRoleWithWebIdentity.
public final class MotoServer: @unchecked Sendable {
    public let process: ChildProcess
    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public init(logDirectory: String) async throws {
        port = try freePort()
        process = try ChildProcess(
            name: "moto", executable: try TestPaths.venvTool("tools", "moto_server"),
            arguments: ["-H", "127.0.0.1", "-p", String(port)],
            logPath: logDirectory + "/moto-\(port).log")
        try await eventually("moto to answer", timeout: .seconds(60)) {
            (try? await TestHTTP.get(self.endpoint + "/moto-api/").status) != nil
        }
    }

    /// Creates a bucket and objects through boto3 (a real S3 client). `checksums` names
    /// the additional checksum boto3 computes and sends for a key ("CRC32", "SHA256", …);
    /// botocore adds CRC32 to the others by itself.
    public func seed(bucket: String, objects: [String: String], checksums: [String: String] = [:]) throws {
        let script = """
            import boto3, json, sys
            s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                              aws_access_key_id="seed", aws_secret_access_key="seed")
            s3.create_bucket(Bucket=sys.argv[2])
            checksums = json.loads(sys.argv[4])
            for key, body in json.load(open(sys.argv[3])).items():
                extra = {"ChecksumAlgorithm": checksums[key]} if key in checksums else {}
                s3.put_object(Bucket=sys.argv[2], Key=key, Body=body.encode(), **extra)
            """
        // The objects go through a file: a command line argument is at most 128 KiB.
        let objectsFile = NSTemporaryDirectory() + "/moto-seed-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: objects).write(to: URL(fileURLWithPath: objectsFile))
        defer { try? FileManager.default.removeItem(atPath: objectsFile) }
        let algorithms = String(decoding: try JSONSerialization.data(withJSONObject: checksums), as: UTF8.self)
        try run(try TestPaths.venvTool("tools", "python3"), ["-c", script, endpoint, bucket, objectsFile, algorithms])
    }

    public func stop() async { await process.stop() }
}
