import Foundation

/// Locations the tests depend on, derived from this file's place in the repository.
public enum TestPaths {
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static let fixtures = repositoryRoot + "/Tests/Fixtures"
    public static let venvs = repositoryRoot + "/.venvs"

    public static func venvTool(_ venv: String, _ tool: String) throws -> String {
        let path = "\(venvs)/\(venv)/bin/\(tool)"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestSetupError(
                "\(path) is missing; run scripts/test (it sets up .venvs) instead of swift test directly")
        }
        return path
    }

    /// The model-agent binary built next to the test bundle.
    public static func agentBinary() throws -> String {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let candidate = executable.deletingLastPathComponent().appendingPathComponent("model-agent").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        let fallback = repositoryRoot + "/.build/debug/model-agent"
        if FileManager.default.isExecutableFile(atPath: fallback) { return fallback }
        throw TestSetupError("model-agent binary not found next to \(executable.path)")
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
