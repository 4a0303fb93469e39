import FoundationEssentials

/// The user container's readiness probe from `SERVING_READINESS_PROBE`, as knative's
/// queue-proxy (and KServe's agent) receive it: a Kubernetes `Probe` in JSON, or a JSON list
/// of them (multi-container probing). Absent or blank means there is nothing to check.
struct ReadinessProbeSpec: Sendable, Equatable {
    enum Check: Sendable, Equatable {
        case http(scheme: String, host: String, port: Int, path: String, headers: [Header])
        case tcp(host: String, port: Int)
    }

    struct Header: Sendable, Equatable, Codable {
        var name: String
        var value: String
    }

    struct Probe: Sendable, Equatable {
        var check: Check
        var timeout: Duration
    }

    var probes: [Probe]
    /// Probe kinds the agent cannot run (`exec`), skipped; said in the log at start.
    var skipped: [String]

    static let none = ReadinessProbeSpec(probes: [], skipped: [])

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    /// Bounds on what the environment may hand us: it is copied from another container.
    private static let maxBytes = 64 << 10
    private static let maxProbes = 16
    private static let maxHeaders = 64

    /// `defaultPort` stands in for a missing or zero port (knative fills in the user port).
    static func parse(_ text: String?, defaultPort: Int) throws(Invalid) -> ReadinessProbeSpec {
        guard let text, !text.trimmingWhitespace().isEmpty else { return .none }
        guard text.utf8.count <= maxBytes else {
            throw Invalid(description: "SERVING_READINESS_PROBE is longer than \(maxBytes) bytes")
        }
        let data = Data(text.utf8)
        let raw: [RawProbe]
        do {
            if let list = try? JSONDecoder().decode([RawProbe].self, from: data) {
                raw = list
            } else {
                raw = [try JSONDecoder().decode(RawProbe.self, from: data)]
            }
        } catch {
            throw Invalid(description: "SERVING_READINESS_PROBE is not a Kubernetes probe or a list of them: \(error)")
        }
        guard raw.count <= maxProbes else {
            throw Invalid(description: "SERVING_READINESS_PROBE lists more than \(maxProbes) probes")
        }
        var spec = ReadinessProbeSpec(probes: [], skipped: [])
        for (index, probe) in raw.enumerated() {
            let timeout = Duration.seconds(min(max(probe.timeoutSeconds ?? 1, 1), 3600))
            if let get = probe.httpGet {
                let scheme = (get.scheme ?? "HTTP").uppercased()
                guard scheme == "HTTP" || scheme == "HTTPS" else {
                    throw Invalid(description: "probe \(index): scheme must be HTTP or HTTPS")
                }
                let headers = get.httpHeaders ?? []
                guard headers.count <= maxHeaders,
                    headers.allSatisfy({ isToken($0.name) && isFieldValue($0.value) })
                else {
                    throw Invalid(description: "probe \(index): invalid or too many httpHeaders")
                }
                var path = get.path ?? "/"
                if !path.hasPrefix("/") { path = "/" + path }
                guard isFieldValue(path), !path.contains(" ") else {
                    throw Invalid(description: "probe \(index): invalid path")
                }
                spec.probes.append(
                    Probe(
                        check: .http(
                            scheme: scheme.lowercased(), host: try host(get.host, index),
                            port: try port(get.port, defaultPort, index), path: path, headers: headers),
                        timeout: timeout))
            } else if let socket = probe.tcpSocket ?? probe.grpc {
                // A gRPC health probe is checked as a connection to its port.
                spec.probes.append(
                    Probe(
                        check: .tcp(
                            host: try host(socket.host, index), port: try port(socket.port, defaultPort, index)),
                        timeout: timeout))
            } else if probe.exec != nil {
                spec.skipped.append("probe \(index): exec")
            } else {
                throw Invalid(description: "probe \(index) has no httpGet, tcpSocket, grpc or exec handler")
            }
        }
        return spec
    }

    private static func port(_ value: PortValue?, _ fallback: Int, _ index: Int) throws(Invalid) -> Int {
        switch value {
        case nil: return fallback
        case .number(let number) where number == 0: return fallback
        case .number(let number) where (1...65535).contains(number): return number
        case .name(let text):
            if let number = Int(text), (0...65535).contains(number) { return number == 0 ? fallback : number }
            throw Invalid(description: "probe \(index): port \"\(text.prefix(40))\" is not a number")
        default:
            throw Invalid(description: "probe \(index): port out of range")
        }
    }

    private static func host(_ value: String?, _ index: Int) throws(Invalid) -> String {
        guard let value, !value.isEmpty else { return "127.0.0.1" }
        let allowed = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x2E
                || byte == 0x2D || byte == 0x3A
        }
        guard allowed, value.utf8.count <= 253 else { throw Invalid(description: "probe \(index): invalid host") }
        return value
    }

    private static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 256
            && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && !"()<>@,;:\\\"/[]?={}".utf8.contains($0) }
    }

    private static func isFieldValue(_ text: String) -> Bool {
        text.utf8.count <= 8192 && text.utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    private enum PortValue: Decodable {
        case number(Int)
        case name(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int.self) {
                self = .number(number)
            } else {
                self = .name(try container.decode(String.self))
            }
        }
    }

    private struct RawHTTPGet: Decodable {
        var path: String?
        var port: PortValue?
        var host: String?
        var scheme: String?
        var httpHeaders: [Header]?
    }

    private struct RawSocket: Decodable {
        var port: PortValue?
        var host: String?
    }

    private struct RawExec: Decodable {}

    private struct RawProbe: Decodable {
        var httpGet: RawHTTPGet?
        var tcpSocket: RawSocket?
        var grpc: RawSocket?
        var exec: RawExec?
        var timeoutSeconds: Int?
    }
}
