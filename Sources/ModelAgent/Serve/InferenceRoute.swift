/// The requests that make the memory cache load a model on standby: inference calls. Other
/// model paths (readiness, metadata) go to the server as they are and answer for what it
/// holds now, so that a monitor polling every model does not load and evict them in turn.
enum InferenceRoute {
    /// V2 `/v2/models/<name>[/versions/<v>]/infer` (and the generate extension), V1
    /// `/v1/models/<name>:predict` or `:explain`.
    static func isInference(path uri: String) -> Bool {
        let path = uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(uri[..<$0]) } ?? uri
        if path.hasPrefix("/v2/models/") {
            let last = path.split(separator: "/", omittingEmptySubsequences: true).last ?? ""
            return last == "infer" || last == "generate" || last == "generate_stream"
        }
        if path.hasPrefix("/v1/models/") { return path.hasSuffix(":predict") || path.hasSuffix(":explain") }
        return false
    }

    /// The gRPC calls that infer (their model is read from the request message).
    static let grpcPaths: Set<String> = ["/inference.GRPCInferenceService/ModelInfer"]

    /// Calls that may load or unload models in the server: V2's repository extension over
    /// HTTP (everything under `/v2/repository/` but the index, which only lists; Triton also
    /// routes `/v2/repository/<repository>/models/…`) or gRPC. With the memory cache the
    /// agent alone decides what the server holds: a client loading models through the
    /// proxied port would overcommit it unseen. The path is compared as lenient servers
    /// could read it (`lenientPath`): with `.` and `..` resolved, and kept as they are (a
    /// server that routes `/v2/repository/../models/m/load` literally sees a repository
    /// named `..`).
    static func changesRepository(path uri: String) -> Bool {
        [lenientPath(uri), lenientPath(uri, resolvingDots: false)].contains { path in
            (path.hasPrefix("/v2/repository/") && path != "/v2/repository/index")
                || path == "/inference.grpcinferenceservice/repositorymodelload"
                || path == "/inference.grpcinferenceservice/repositorymodelunload"
        }
    }

    /// `uri`'s path with every percent-escape decoded, empty segments dropped, `.` and `..`
    /// segments resolved (unless `resolvingDots` is false), and ASCII letters in lower case:
    /// servers differ in which of these they do before routing (Starlette decodes escapes,
    /// others merge slashes or ignore case), and a refusal must hold for all of them.
    static func lenientPath(_ uri: String, resolvingDots: Bool = true) -> String {
        let raw = uri.utf8.prefix { $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var index = raw.startIndex
        while index != raw.endIndex {
            let byte = raw[index]
            index = raw.index(after: index)
            if byte == UInt8(ascii: "%"), let high = hexValue(raw[index...].first),
                let low = hexValue(raw[index...].dropFirst().first)
            {
                decoded.append(lowercased(high << 4 | low))
                index = raw.index(index, offsetBy: 2)
            } else {
                decoded.append(lowercased(byte))
            }
        }
        var segments: [ArraySlice<UInt8>] = []
        for segment in decoded.split(separator: UInt8(ascii: "/")) {
            guard resolvingDots else {
                segments.append(segment)
                continue
            }
            if segment.elementsEqual(".".utf8) { continue }
            if segment.elementsEqual("..".utf8) {
                _ = segments.popLast()
                continue
            }
            segments.append(segment)
        }
        return "/" + segments.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
    }

    private static func hexValue(_ byte: UInt8?) -> UInt8? {
        switch byte {
        case let digit? where digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case let letter? where letter >= UInt8(ascii: "a") && letter <= UInt8(ascii: "f"):
            letter - UInt8(ascii: "a") + 10
        case let letter? where letter >= UInt8(ascii: "A") && letter <= UInt8(ascii: "F"):
            letter - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }

    static let repositoryRefusal =
        "{\"error\":\"the model-agent manages which models the server holds; loading and unloading through it is refused\"}\n"
}
