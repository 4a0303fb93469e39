/// Errors that say whether trying the same thing again could succeed.
protocol RetryClassifying: Error {
    var isTransient: Bool { get }
}

extension Error {
    /// Unknown errors count as transient: retrying with backoff is the safe default.
    var isTransient: Bool { (self as? any RetryClassifying)?.isTransient ?? true }
}

/// The one rule for HTTP answers, whoever sent them (storage, token endpoints, the model
/// server): a timeout (408), throttling (429) or a server error (5xx) may pass by itself;
/// any other error status says the request cannot succeed as it is.
func isTransientHTTPStatus(_ status: Int) -> Bool {
    status == 408 || status == 429 || status >= 500
}
