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
    /// could read it (`lenientSegments`): with `.` and `..` resolved, and kept as they are (a
    /// server that routes `/v2/repository/../models/m/load` literally sees a repository
    /// named `..`).
    static func changesRepository(path uri: String) -> Bool {
        let literal = lenientSegments(uri)
        return isRepositoryCall(literal) || isRepositoryCall(resolvingDots(literal))
    }

    /// `uri`'s path with every percent-escape decoded, empty segments dropped, `.` and `..`
    /// segments resolved, and ASCII letters in lower case: servers differ in which of these
    /// they do before routing (Starlette decodes escapes, others merge slashes or ignore
    /// case), and a refusal must hold for all of them.
    static func lenientPath(_ uri: String) -> String {
        "/" + resolvingDots(lenientSegments(uri)).map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
    }

    /// `/v2/repository/…` but the index, or a gRPC repository load or unload, as
    /// `lenientSegments` spells them.
    private static func isRepositoryCall(_ segments: [ArraySlice<UInt8>]) -> Bool {
        func named(_ index: Int, _ text: String) -> Bool { segments[index].elementsEqual(text.utf8) }
        if segments.count >= 3 && named(0, "v2") && named(1, "repository") {
            return !(segments.count == 3 && named(2, "index"))
        }
        return segments.count == 2 && named(0, "inference.grpcinferenceservice")
            && (named(1, "repositorymodelload") || named(1, "repositorymodelunload"))
    }

    /// The non-empty segments of `uri`'s path (query and fragment cut off), percent-escapes
    /// decoded and letters in lower case; `.` and `..` kept as they are.
    private static func lenientSegments(_ uri: String) -> [ArraySlice<UInt8>] {
        let raw = uri.utf8.prefix { $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var index = raw.startIndex
        while index != raw.endIndex {
            let byte = raw[index]
            index = raw.index(after: index)
            if byte == UInt8(ascii: "%"), let high = raw[index...].first.flatMap(ASCIIByte.hexValue),
                let low = raw[index...].dropFirst().first.flatMap(ASCIIByte.hexValue)
            {
                decoded.append(ASCIIByte.folded(high << 4 | low))
                index = raw.index(index, offsetBy: 2)
            } else {
                decoded.append(ASCIIByte.folded(byte))
            }
        }
        return decoded.split(separator: UInt8(ascii: "/"))
    }

    /// `segments` with `.` dropped and each `..` taking the segment before it away.
    private static func resolvingDots(_ segments: [ArraySlice<UInt8>]) -> [ArraySlice<UInt8>] {
        var resolved: [ArraySlice<UInt8>] = []
        for segment in segments {
            if segment.elementsEqual(".".utf8) { continue }
            if segment.elementsEqual("..".utf8) {
                _ = resolved.popLast()
                continue
            }
            resolved.append(segment)
        }
        return resolved
    }

    static let repositoryRefusal =
        "{\"error\":\"the model-agent manages which models the server holds; loading and unloading through it is refused\"}\n"
}
