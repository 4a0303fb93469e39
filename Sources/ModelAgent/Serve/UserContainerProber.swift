import NIOCore
import NIOPosix

/// Runs the user container's readiness probe when a health check asks for it: every probe
/// must pass (HTTP: a status from 200 to 399 within its timeout, as the kubelet counts it;
/// TCP: a connection accepted within its timeout). HTTP probes go through the agent's
/// control transfer pool (libcurl), TCP probes through the proxy's event loops.
final class UserContainerProber: Sendable {
    let spec: ReadinessProbeSpec
    private let pool: TransferPool
    private let group: any EventLoopGroup

    init(spec: ReadinessProbeSpec, pool: TransferPool, group: any EventLoopGroup) {
        self.spec = spec
        self.pool = pool
        self.group = group
    }

    func isReady() async -> Bool {
        for probe in spec.probes {
            guard await passes(probe) else { return false }
        }
        return true
    }

    private func passes(_ probe: ReadinessProbeSpec.Probe) async -> Bool {
        switch probe.check {
        case .http(let scheme, let host, let port, let path, let headers):
            var request = HTTPRequest(
                url: "\(scheme)://\(Self.authority(host, port))\(path)",
                headers: headers.map { (name: $0.name, value: $0.value) }, timeout: probe.timeout)
            // The kubelet does not verify the certificate of an HTTPS probe either.
            if scheme == "https" { request.tls = TLSOptions(verify: false) }
            guard let response = try? await pool.perform(request, sink: .memory(limit: 64 << 10)) else {
                return false
            }
            return (200..<400).contains(response.status)
        case .tcp(let host, let port):
            let connected = ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(probe.timeout.nanoseconds))
                .connect(host: host, port: port)
            guard let channel = try? await connected.get() else { return false }
            try? await channel.close()
            return true
        }
    }

    private static func authority(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
