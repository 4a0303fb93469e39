/// The decisions of one model's worker, without I/O: from what the agent wants and what it
/// knows of the disk and the server, the next step to take; from a step's outcome, what it
/// now knows. `ModelController` performs the steps; this type is tested on its own.
struct ModelStateMachine: Sendable, Equatable {
    /// What the model server holds under this name, as far as the agent knows.
    enum Served: Sendable, Equatable {
        /// Not checked since startup: files exist, the server may or may not have them.
        case unknown
        case absent
        case loaded(ModelSpec)
    }

    enum Action: Sendable, Equatable {
        /// Fetch the spec into new staging and shape it for the server.
        case download(ModelSpec)
        /// The staged files are for a spec no longer wanted: throw them away.
        case discardStaging
        /// Unload the model from the server (before its files are replaced, or to remove it).
        case unload
        /// Move the staged files into the model dir, marker last.
        case commit(ModelSpec)
        /// Ask the server whether it holds the model.
        case checkServed
        case load(ModelSpec)
        /// Remove the model's directory.
        case removeFiles
        /// A step failed: wait before the next try (`attempt` sets the backoff).
        case backOff(attempt: Int)
        /// The wish is met: the spec is loaded (or on standby, as the cache wants), or (nil)
        /// the model is gone. Nothing to do until the wish changes or a re-check is asked for.
        case settled(ModelSpec?)
    }

    enum Outcome: Sendable, Equatable {
        case succeeded
        /// The answer of `checkServed`.
        case served(Bool)
        /// Permanent failures back off longer than transient ones.
        case failed(transient: Bool)
        /// The step was abandoned for a newer wish; nothing is learnt.
        case cancelled
    }

    private(set) var onDisk: ModelSpec?
    private(set) var served: Served
    /// Files may exist in the model dir (a marked, unmarked or invalid directory).
    private(set) var filesMayExist: Bool
    /// The spec whose files wait in staging.
    private(set) var staged: ModelSpec?
    /// Failures since the wish was last met.
    private(set) var failures = 0
    /// The spec whose download failed last: a Remote model settles with its failures
    /// counted only while that is still the wish.
    private var failedDownload: ModelSpec?
    private var backOffDue = false
    /// The attempt number the pending back-off is computed from.
    private var backOffAttempt = 0
    private var recheckAsked = false

    init(disk: ModelStore.DiskState?) {
        switch disk {
        case .complete(let spec)?:
            (onDisk, served, filesMayExist) = (spec, .unknown, true)
        case .invalidMarker?, .unmarked?:
            (onDisk, served, filesMayExist) = (nil, .unknown, true)
        case nil:
            (onDisk, served, filesMayExist) = (nil, .absent, false)
        }
    }

    /// Asks to verify with the server that a loaded model is still loaded (it may have
    /// restarted and lost it).
    mutating func requestRecheck() { recheckAsked = true }

    /// The next step towards `desired` (nil: the model is to be removed). `resident`: the
    /// memory cache wants the model loaded (always, without a cache); when it does not, the
    /// model's files stay ready on disk and the server does not hold it (standby).
    /// `keepFiles`: the cache's disk tier wants the files on disk (always, without one);
    /// when it does not, the model leaves the server and the disk, and is fetched again
    /// once wanted.
    func next(desired: ModelSpec?, resident: Bool = true, keepFiles: Bool = true) -> Action {
        if backOffDue { return .backOff(attempt: backOffAttempt) }
        if let staged, staged != desired || !keepFiles { return .discardStaging }
        guard let target = desired, keepFiles else {
            if served != .absent { return .unload }
            if filesMayExist || onDisk != nil { return .removeFiles }
            return .settled(desired)
        }
        if onDisk != target {
            if staged == nil { return .download(target) }
            // The old version (or whatever startup found) leaves the server before its files go.
            if served != .absent { return .unload }
            return .commit(target)
        }
        if served == .unknown || (recheckAsked && served == .loaded(target)) { return .checkServed }
        if !resident { return served == .absent ? .settled(target) : .unload }
        if served != .loaded(target) { return .load(target) }
        return .settled(target)
    }

    /// Any files of the model may be on disk: in the model dir, or staged.
    var hasFilesOnDisk: Bool { filesMayExist || onDisk != nil || staged != nil }

    /// Records how `action` (the last `next`) ended.
    mutating func finished(_ action: Action, _ outcome: Outcome) {
        switch outcome {
        case .cancelled:
            return
        case .failed(let transient):
            failures += 1
            backOffDue = true
            // A permanent failure (a 4xx, a bad artifact) is not fixed by retrying soon.
            backOffAttempt = transient ? failures : failures + 3
            switch action {
            case .download(let spec):
                staged = nil
                failedDownload = spec
            case .commit, .removeFiles:
                // Either may have moved directories before failing: what is on disk is
                // no longer known, but something may be.
                (onDisk, staged, filesMayExist) = (nil, nil, true)
            case .load:
                // A load that timed out (or failed part-way) may still complete in the
                // server: ask before loading again, and unload before removing.
                served = .unknown
            default:
                break
            }
            return
        case .succeeded, .served:
            break
        }
        switch action {
        case .download(let spec):
            staged = spec
            failedDownload = nil
        case .discardStaging:
            staged = nil
        case .unload:
            served = .absent
        case .commit(let spec):
            (onDisk, staged, served, filesMayExist) = (spec, nil, .absent, true)
        case .checkServed:
            if case .served(true) = outcome, let onDisk {
                served = .loaded(onDisk)
            } else {
                served = .absent
            }
            recheckAsked = false
        case .load(let spec):
            served = .loaded(spec)
        case .removeFiles:
            (onDisk, filesMayExist) = (nil, false)
        case .backOff:
            backOffDue = false
        case .settled(let spec):
            // Settled without the files (the disk tier keeps them only on request): a failed
            // download of this spec is not forgotten, so that the next try backs off further.
            if spec == nil || onDisk == spec || spec != failedDownload {
                failures = 0
                failedDownload = nil
            }
            recheckAsked = false
        }
    }
}
