import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How log lines look: JSON for machines (the shape of KServe's zap output), text for people.
package enum LogFormat: String, Sendable, CaseIterable {
    case json, text
}

/// Serialises whole lines onto a file descriptor (stdout), one write per line.
package final class LogOutput: Sendable {
    private let fd: Int32
    private let lock = Mutex(())

    package init(fd: Int32 = 1) { self.fd = fd }

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(0x0a)
        lock.withLock { _ in
            bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                    if n <= 0 {
                        if n < 0 && errno == EINTR { continue }
                        return
                    }
                    done += n
                }
            }
        }
    }
}

/// A swift-log handler writing one line per event. JSON lines carry `level`, `ts`,
/// `logger`, `caller` and `msg` like KServe's agent, plus the structured fields.
package struct AgentLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level
    private let label: String
    private let format: LogFormat
    private let output: LogOutput

    package init(label: String, format: LogFormat, level: Logger.Level, output: LogOutput) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.output = output
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        if let error = event.error { fields["error"] = .string("\(error)") }
        let caller = "\(event.file.split(separator: "/").suffix(2).joined(separator: "/")):\(event.line)"
        // The last guard: whatever produced the text, no known secret leaves in a log line.
        let redactor = SecretRedactor.shared
        let message = redactor.redact("\(event.message)")
        for (key, value) in fields { fields[key] = Self.redacted(value, redactor) }
        switch format {
        case .json:
            var pairs: [(String, String)] = [
                ("level", JSONText.quoted(Self.zapLevel(event.level))),
                ("ts", format3(wallClockSeconds())),
                ("logger", JSONText.quoted(label)),
                ("caller", JSONText.quoted(caller)),
                ("msg", JSONText.quoted(message)),
            ]
            for key in fields.keys.sorted() { pairs.append((key, Self.json(fields[key]!))) }
            output.write(JSONText.object(pairs))
        case .text:
            var line = "\(Self.timestamp()) \(Self.zapLevel(event.level).uppercased()) \(message)"
            for key in fields.keys.sorted() { line += " \(key)=\(fields[key]!)" }
            output.write(line)
        }
    }

    static func redacted(_ value: Logger.Metadata.Value, _ redactor: SecretRedactor) -> Logger.Metadata.Value {
        switch value {
        case .string(let s): return .string(redactor.redact(s))
        case .stringConvertible(let v):
            if v is any BinaryInteger || v is Double { return value }
            return .string(redactor.redact("\(v)"))
        case .array(let items): return .array(items.map { redacted($0, redactor) })
        case .dictionary(let dict): return .dictionary(dict.mapValues { redacted($0, redactor) })
        }
    }

    static func zapLevel(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "debug"
        case .info, .notice: return "info"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "fatal"
        }
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): return JSONText.quoted(s)
        case .stringConvertible(let v):
            if v is any BinaryInteger { return "\(v)" }
            if let d = v as? Double, d.isFinite { return "\(d)" }
            return JSONText.quoted("\(v)")
        case .array(let items): return "[" + items.map(json).joined(separator: ",") + "]"
        case .dictionary(let dict):
            return JSONText.object(dict.keys.sorted().map { ($0, json(dict[$0]!)) })
        }
    }

    /// ISO 8601 UTC with milliseconds.
    static func timestamp() -> String {
        let now = wallClockSeconds()
        let whole = UTCTime(seconds: Int(now))
        let millis = String(Int((now - Double(whole.seconds)) * 1000))
        return whole.iso8601.dropLast() + "." + String(repeating: "0", count: 3 - millis.count) + millis + "Z"
    }
}
