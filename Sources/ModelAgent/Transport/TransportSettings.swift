/// Connection behaviour shared by every request of one pool.
public struct TransportSettings: Sendable {
    public var connectTimeout: Duration = .seconds(10)
    /// A transfer that delivers no byte for this long is aborted (and retried).
    public var stallTimeout: Duration = .seconds(30)
    /// PEM bundle replacing the system trust store.
    public var caBundle: String?
    public var verifyTLS = true
    public var receiveBufferSize = 1 << 20
    /// A lane idle this long frees its handle: buffer and idle connections.
    public var idleRelease: Duration = .seconds(5)
    public var userAgent = "model-agent/\(agentVersion)"

    public init() {}
}

public let agentVersion = "0.1.0"
