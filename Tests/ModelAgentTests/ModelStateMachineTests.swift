import Testing

@testable import ModelAgent

/// The per-model decisions, without disk, network or server: every path from each state
/// the agent can find at startup to each wish, with failures and changes of mind.
@Suite struct ModelStateMachineTests {
    typealias Machine = ModelStateMachine
    typealias Action = ModelStateMachine.Action

    static let a = ModelSpec(storageUri: "s3://b/a", framework: "sklearn")
    static let b = ModelSpec(storageUri: "s3://b/b", framework: "sklearn")
    let a = Self.a
    let b = Self.b

    /// Runs the machine towards `desired` until it settles, answering each step with
    /// `outcome` (default: success; the server holds the model when `served` says so).
    @discardableResult
    static func drive(
        _ machine: inout Machine, to desired: ModelSpec?, served: Bool = true,
        outcome: (Action) -> Machine.Outcome? = { _ in nil }
    ) -> [Action] {
        var steps: [Action] = []
        for _ in 0..<50 {
            let action = machine.next(desired: desired)
            steps.append(action)
            let result: Machine.Outcome
            if let scripted = outcome(action) {
                result = scripted
            } else if action == .checkServed {
                result = .served(served)
            } else {
                result = .succeeded
            }
            machine.finished(action, result)
            if case .settled = action { return steps }
        }
        Issue.record("did not settle: \(steps)")
        return steps
    }

    @Test func aNewModelIsDownloadedCommittedAndLoaded() {
        var m = Machine(disk: nil)
        #expect(Self.drive(&m, to: a) == [.download(a), .commit(a), .load(a), .settled(a)])
        #expect(m.served == .loaded(a) && m.onDisk == a)
        // Settled: asked again, it has nothing to do.
        #expect(m.next(desired: a) == .settled(a))
    }

    @Test func aMarkedModelAtStartupIsOnlyCheckedAndLoadedIfTheServerLostIt() {
        var kept = Machine(disk: .complete(a))
        #expect(Self.drive(&kept, to: a, served: true) == [.checkServed, .settled(a)])
        var lost = Machine(disk: .complete(a))
        #expect(Self.drive(&lost, to: a, served: false) == [.checkServed, .load(a), .settled(a)])
    }

    @Test func whateverIsOnDiskLeavesTheServerBeforeItsFilesAreReplaced() {
        for disk: ModelStore.DiskState in [.complete(a), .invalidMarker, .unmarked] {
            var m = Machine(disk: disk)
            #expect(Self.drive(&m, to: b) == [.download(b), .unload, .commit(b), .load(b), .settled(b)], "\(disk)")
        }
    }

    @Test func aSpecChangeReplacesTheLoadedVersion() {
        var m = Machine(disk: nil)
        Self.drive(&m, to: a)
        #expect(Self.drive(&m, to: b) == [.download(b), .unload, .commit(b), .load(b), .settled(b)])
    }

    @Test func removalUnloadsThenDeletesAndAModelNeverFetchedHasNothingToDo() {
        var loaded = Machine(disk: nil)
        Self.drive(&loaded, to: a)
        #expect(Self.drive(&loaded, to: nil) == [.unload, .removeFiles, .settled(nil)])
        var found = Machine(disk: .complete(a))
        #expect(Self.drive(&found, to: nil) == [.unload, .removeFiles, .settled(nil)])
        var fresh = Machine(disk: nil)
        #expect(Self.drive(&fresh, to: nil) == [.settled(nil)])
    }

    @Test func stagedFilesForAnOldWishAreDiscarded() {
        var m = Machine(disk: nil)
        m.finished(m.next(desired: a), .succeeded)
        #expect(m.staged == a)
        #expect(Self.drive(&m, to: b) == [.discardStaging, .download(b), .commit(b), .load(b), .settled(b)])
        var gone = Machine(disk: nil)
        gone.finished(gone.next(desired: a), .succeeded)
        #expect(Self.drive(&gone, to: nil) == [.discardStaging, .settled(nil)])
    }

    @Test func failuresBackOffLongerWhenPermanentAndResetOnceTheWishIsMet() {
        var m = Machine(disk: nil)
        var loads = 0
        let steps = Self.drive(&m, to: a, served: false) { action in
            guard case .load = action else { return nil }
            loads += 1
            switch loads {
            case 1, 2: return .failed(transient: true)
            case 3: return .failed(transient: false)
            default: return nil
            }
        }
        // After each failed load the server is asked first (it answers "not loaded" here).
        #expect(
            steps == [
                .download(a), .commit(a), .load(a), .backOff(attempt: 1), .checkServed, .load(a),
                .backOff(attempt: 2), .checkServed, .load(a), .backOff(attempt: 6), .checkServed, .load(a),
                .settled(a),
            ])
        #expect(m.failures == 0)
    }

    /// A load that timed out may finish in the server later: a model removed meanwhile is
    /// still unloaded, and one still wanted is not loaded twice if the server has it.
    @Test func aFailedLoadMayHaveHappened() {
        var removed = Machine(disk: nil)
        removed.finished(removed.next(desired: a), .succeeded)
        removed.finished(removed.next(desired: a), .succeeded)
        #expect(removed.next(desired: a) == .load(a))
        removed.finished(.load(a), .failed(transient: true))
        #expect(Self.drive(&removed, to: nil) == [.backOff(attempt: 1), .unload, .removeFiles, .settled(nil)])

        var kept = Machine(disk: nil)
        kept.finished(kept.next(desired: a), .succeeded)
        kept.finished(kept.next(desired: a), .succeeded)
        kept.finished(.load(a), .failed(transient: true))
        #expect(Self.drive(&kept, to: a, served: true) == [.backOff(attempt: 1), .checkServed, .settled(a)])
    }

    @Test func aFailedUnloadIsRetriedWithoutDownloadingAgain() {
        var m = Machine(disk: .complete(a))
        var unloads = 0
        let steps = Self.drive(&m, to: b) { action in
            guard action == .unload else { return nil }
            unloads += 1
            return unloads == 1 ? .failed(transient: true) : nil
        }
        #expect(steps == [.download(b), .unload, .backOff(attempt: 1), .unload, .commit(b), .load(b), .settled(b)])
    }

    @Test func aFailedDownloadOrCommitLeavesNothingStaged() {
        for failing in [Action.download(a), .commit(a)] {
            var m = Machine(disk: nil)
            var failed = false
            let steps = Self.drive(&m, to: a) { action in
                guard action == failing, !failed else { return nil }
                failed = true
                return .failed(transient: true)
            }
            #expect(steps.filter { $0 == .download(a) }.count == 2, "\(failing): \(steps)")
        }
        var m = Machine(disk: nil)
        m.finished(m.next(desired: a), .succeeded)
        m.finished(.commit(a), .failed(transient: false))
        #expect(m.staged == nil)
    }

    /// A commit or removal may have moved directories before it failed: the machine stops
    /// trusting what it knew of the disk, so a removal still deletes, and a later wish
    /// fetches again instead of loading whatever is there.
    @Test func aFailedCommitOrRemovalForgetsWhatIsOnDisk() {
        var committing = Machine(disk: nil)
        committing.finished(committing.next(desired: a), .succeeded)
        committing.finished(committing.next(desired: a), .failed(transient: true))
        #expect(Self.drive(&committing, to: nil) == [.backOff(attempt: 1), .removeFiles, .settled(nil)])

        var replacing = Machine(disk: nil)
        Self.drive(&replacing, to: a)
        replacing.finished(replacing.next(desired: b), .succeeded)  // download b
        replacing.finished(replacing.next(desired: b), .succeeded)  // unload a
        #expect(replacing.next(desired: b) == .commit(b))
        replacing.finished(.commit(b), .failed(transient: true))
        #expect(
            Self.drive(&replacing, to: a) == [.backOff(attempt: 1), .download(a), .commit(a), .load(a), .settled(a)],
            "back to a: fetched again, not loaded over whatever the failed commit left")

        var removing = Machine(disk: .complete(a))
        var removals = 0
        let steps = Self.drive(&removing, to: nil) { action in
            guard action == .removeFiles else { return nil }
            removals += 1
            return removals == 1 ? .failed(transient: true) : nil
        }
        #expect(steps == [.unload, .removeFiles, .backOff(attempt: 1), .removeFiles, .settled(nil)])
    }

    @Test func aCancelledStepTeachesNothing() {
        var m = Machine(disk: .complete(a))
        let before = m
        m.finished(.checkServed, .cancelled)
        m.finished(.load(a), .cancelled)
        #expect(m == before)
    }

    @Test func aRecheckAsksTheServerAgainAndReloadsWhatItLost() {
        var m = Machine(disk: nil)
        Self.drive(&m, to: a)
        m.requestRecheck()
        #expect(Self.drive(&m, to: a, served: true) == [.checkServed, .settled(a)])
        #expect(m.next(desired: a) == .settled(a), "the recheck is used up")
        m.requestRecheck()
        #expect(Self.drive(&m, to: a, served: false) == [.checkServed, .load(a), .settled(a)])
    }

    /// Every start state, every sequence of three wishes, failures sprinkled by a seeded
    /// generator: the machine always settles on the last wish, and never takes a step that
    /// would break the model (load files that are not there, replace or delete files the
    /// server still serves).
    @Test func everyPathSettlesOnTheLastWishAndKeepsTheInvariants() {
        var random = SplitMix(seed: 42)
        let starts: [ModelStore.DiskState?] = [nil, .complete(Self.a), .complete(Self.b), .invalidMarker, .unmarked]
        let wishes: [ModelSpec?] = [nil, Self.a, Self.b]
        var paths = 0
        for start in starts {
            for first in wishes {
                for second in wishes {
                    for last in wishes {
                        for _ in 0..<20 {
                            var m = Machine(disk: start)
                            for wish in [first, second] {
                                // Interrupted part-way: a few steps, then the wish changes.
                                for _ in 0..<(random.next() % 4) {
                                    let action = m.next(desired: wish)
                                    Self.checkInvariants(before: m, action)
                                    if case .settled = action { break }
                                    m.finished(action, Self.randomOutcome(action, &random))
                                }
                            }
                            var steps: [Action] = []
                            for _ in 0..<200 {
                                let action = m.next(desired: last)
                                steps.append(action)
                                Self.checkInvariants(before: m, action)
                                if case .settled(let spec) = action {
                                    #expect(spec == last)
                                    break
                                }
                                m.finished(action, Self.randomOutcome(action, &random))
                            }
                            guard case .settled = steps.last else {
                                Issue.record(
                                    "no settle from \(String(describing: start)) to \(String(describing: last))")
                                return
                            }
                            if let last {
                                #expect(m.onDisk == last && m.served == .loaded(last) && m.staged == nil)
                            } else {
                                #expect(m.onDisk == nil && m.served == .absent && !m.filesMayExist && m.staged == nil)
                            }
                            paths += 1
                        }
                    }
                }
            }
        }
        #expect(paths == 5 * 27 * 20)
    }

    static func checkInvariants(before m: Machine, _ action: Action) {
        switch action {
        case .download:
            #expect(m.staged == nil, "staged files left behind")
        case .load(let spec):
            #expect(m.onDisk == spec, "load without the files")
        case .commit(let spec):
            #expect(m.served == .absent && m.staged == spec, "files replaced under the server")
        case .removeFiles:
            #expect(m.served == .absent, "files deleted under the server")
        case .checkServed:
            #expect(m.onDisk != nil)
        default:
            break
        }
    }

    /// Only steps that do I/O can fail (waiting and discarding staging cannot).
    static func randomOutcome(_ action: Action, _ random: inout SplitMix) -> Machine.Outcome {
        switch action {
        case .backOff, .discardStaging, .settled: return .succeeded
        default: break
        }
        switch random.next() % 10 {
        case 0: return .failed(transient: true)
        case 1: return .failed(transient: false)
        case 2: return .cancelled
        default: return action == .checkServed ? .served(random.next() % 2 == 0) : .succeeded
        }
    }
}

/// A small seeded generator, so that a failing path can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The memory cache's side of the machine: a model the cache does not want loaded stays on
/// disk, unloaded (standby); one it no longer wants is unloaded (evicted).
@Suite struct ModelStateMachineStandbyTests {
    let a = ModelSpec(storageUri: "s3://b/a", framework: "sklearn")
    let b = ModelSpec(storageUri: "s3://b/b", framework: "sklearn")

    @Test func aNewModelIsDownloadedButNotLoadedOnStandby() {
        var machine = ModelStateMachine(disk: nil)
        #expect(machine.next(desired: a, resident: false) == .download(a))
        machine.finished(.download(a), .succeeded)
        #expect(machine.next(desired: a, resident: false) == .commit(a))
        machine.finished(.commit(a), .succeeded)
        #expect(machine.next(desired: a, resident: false) == .settled(a))
        #expect(machine.next(desired: a, resident: true) == .load(a))
    }

    @Test func anEvictedModelIsUnloadedAndKeepsItsFiles() {
        var machine = ModelStateMachine(disk: .complete(a))
        #expect(machine.next(desired: a, resident: false) == .checkServed)
        machine.finished(.checkServed, .served(true))
        #expect(machine.next(desired: a, resident: false) == .unload)
        machine.finished(.unload, .succeeded)
        #expect(machine.next(desired: a, resident: false) == .settled(a))
        #expect(machine.onDisk == a)
    }

    @Test func aCalledOffEvictionLeavesTheModelLoaded() {
        var machine = ModelStateMachine(disk: .complete(a))
        machine.finished(.checkServed, .served(true))
        #expect(machine.next(desired: a, resident: false) == .unload)
        machine.finished(.unload, .cancelled)
        #expect(machine.next(desired: a, resident: true) == .settled(a))
    }

    @Test func aModelLeavingTheDiskIsUnloadedFirstThenItsFilesGo() {
        var machine = ModelStateMachine(disk: .complete(a))
        machine.finished(.checkServed, .served(true))
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .unload)
        machine.finished(.unload, .succeeded)
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .removeFiles)
        machine.finished(.removeFiles, .succeeded)
        #expect(!machine.hasFilesOnDisk)
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .settled(a))
        // Wanted again: fetched, then loaded.
        #expect(machine.next(desired: a, resident: true, keepFiles: true) == .download(a))
        machine.finished(.download(a), .succeeded)
        #expect(machine.hasFilesOnDisk)
        #expect(machine.next(desired: a, resident: true, keepFiles: true) == .commit(a))
        machine.finished(.commit(a), .succeeded)
        #expect(machine.next(desired: a, resident: true, keepFiles: true) == .load(a))
    }

    @Test func stagedFilesNoLongerKeptAreDiscarded() {
        var machine = ModelStateMachine(disk: nil)
        #expect(machine.next(desired: a, resident: false, keepFiles: true) == .download(a))
        machine.finished(.download(a), .succeeded)
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .discardStaging)
        machine.finished(.discardStaging, .succeeded)
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .settled(a))
    }

    @Test func filesOfUnknownStandingAreUnloadedBeforeTheyGo() {
        var machine = ModelStateMachine(disk: .unmarked)
        // Whatever the server may hold is unloaded before its files go.
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .unload)
        machine.finished(.unload, .succeeded)
        #expect(machine.next(desired: a, resident: false, keepFiles: false) == .removeFiles)
    }

    @Test func aFailedFetchOfARemoteModelCountsOnUntilTheWishChanges() {
        var machine = ModelStateMachine(disk: nil)
        for attempt in 1...2 {
            // A request wants the files: the download fails, the worker backs off, and the
            // model settles off disk again with the failures still counted.
            #expect(machine.next(desired: a, resident: true, keepFiles: true) == .download(a))
            machine.finished(.download(a), .failed(transient: true))
            #expect(machine.next(desired: a) == .backOff(attempt: attempt))
            machine.finished(.backOff(attempt: attempt), .succeeded)
            #expect(machine.next(desired: a, resident: false, keepFiles: false) == .settled(a))
            machine.finished(.settled(a), .succeeded)
            #expect(machine.failures == attempt)
        }
        // A download that succeeds clears them, even if its files then leave the disk.
        var fetched = machine
        #expect(fetched.next(desired: a, resident: true, keepFiles: true) == .download(a))
        fetched.finished(.download(a), .succeeded)
        #expect(fetched.next(desired: a, resident: false, keepFiles: false) == .discardStaging)
        fetched.finished(.discardStaging, .succeeded)
        #expect(fetched.next(desired: a, resident: false, keepFiles: false) == .settled(a))
        fetched.finished(.settled(a), .succeeded)
        #expect(fetched.failures == 0)
        // Another spec (models.json fixed) starts afresh.
        #expect(machine.next(desired: b, resident: false, keepFiles: false) == .settled(b))
        machine.finished(.settled(b), .succeeded)
        #expect(machine.failures == 0)
    }
}
