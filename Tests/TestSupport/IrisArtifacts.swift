import Foundation

/// An sklearn iris model for MLServer (model.joblib + model-settings.json without a
/// name, so MLServer uses the directory name), also packed as .tar.gz, .tgz and .zip.
/// Built once per test run with the MLServer venv's scikit-learn.
public enum IrisArtifacts {
    /// Built on first use; a failure fails the test that asked (not the whole run).
    private static let built: Result<String, any Error> = Result { try build() }

    public static var root: String {
        get throws { try built.get() }
    }

    public static var directory: String {
        get throws { try root + "/iris" }
    }

    private static func build() throws -> String {
        let base = FileManager.default.temporaryDirectory.path + "/model-agent-iris-\(getpid())"
        let model = base + "/iris"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        try run(
            try TestPaths.venvTool("mlserver", "python"), [TestPaths.repositoryRoot + "/examples/make_iris.py", model])
        try write(
            #"{"implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}"#,
            to: model + "/model-settings.json")
        let pack = """
            import sys, tarfile, zipfile, os
            base = sys.argv[1]
            os.chdir(base + "/iris")
            for name, mode in (("iris.tar.gz", "w:gz"), ("iris.tgz", "w:gz"), ("iris.tar", "w")):
                with tarfile.open(base + "/" + name, mode) as t:
                    for f in sorted(os.listdir(".")):
                        t.add(f)
            with zipfile.ZipFile(base + "/iris.zip", "w", zipfile.ZIP_DEFLATED) as z:
                for f in sorted(os.listdir(".")):
                    z.write(f)
            """
        try run(try TestPaths.venvTool("tools", "python3"), ["-c", pack, base])
        return base
    }
}

/// Runs a command to completion; throws with its output when it fails. Output goes
/// through a file, not a pipe, so no other child can hold the pipe open.
@discardableResult
public func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
    let log = FileManager.default.temporaryDirectory.path + "/model-agent-run-\(UUID().uuidString).log"
    defer { try? FileManager.default.removeItem(atPath: log) }
    let child = try ChildProcess(
        name: executable, executable: executable, arguments: arguments, environment: environment, logPath: log)
    let status = child.waitBlocking()
    let output = child.output
    guard status == 0 else {
        throw TestSetupError("\(executable) \(arguments.joined(separator: " ")) failed (\(status)):\n\(output)")
    }
    return output
}

/// Runs a command to completion without holding a thread: for async tests, which share a
/// cooperative pool as small as the machine's cores (a blocked thread there stalls every
/// other test's waits). Returns the exit status and the output (stdout and stderr).
public func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
    timeout: Duration = .seconds(300)
) async throws -> (status: Int32, output: String) {
    let log = FileManager.default.temporaryDirectory.path + "/model-agent-run-\(UUID().uuidString).log"
    defer { try? FileManager.default.removeItem(atPath: log) }
    let child = try ChildProcess(
        name: executable, executable: executable, arguments: arguments, environment: environment, logPath: log)
    let status = try await child.waitForExit(timeout: timeout)
    return (status, child.output)
}
