/// Connection behaviour shared by every request of one pool.
package struct TransportSettings: Sendable {
    package var connectTimeout: Duration = .seconds(10)
    /// A transfer that delivers no byte for this long is aborted (and retried).
    package var stallTimeout: Duration = .seconds(30)
    /// PEM bundle replacing the system trust store.
    package var caBundle: String?
    var verifyTLS = true
    var receiveBufferSize = 1 << 20
    /// A lane idle this long frees its handle: buffer and idle connections.
    var idleRelease: Duration = .seconds(5)
    var userAgent = "model-agent/\(agentVersion)"

    init() {}
}

package let agentVersion = "0.1.0"
