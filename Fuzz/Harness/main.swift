// The fuzz driver: `FUZZ_TARGET=<name> model-agent-fuzz [libFuzzer flags] <corpus…>` runs
// one of ModelAgent's FuzzEntryPoints under libFuzzer. Built only by scripts/fuzz, with
// -sanitize=fuzzer,address and -DFUZZING; a normal build gets a stub that says so.
import ModelAgent

#if canImport(Glibc)
    import Glibc
#endif

#if FUZZING
    import CFuzzShim
    import Logging

    func fail(_ message: String) -> Never {
        var text = message + "\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        exit(2)
    }

    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    let target = getenv("FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard FuzzEntryPoints.targets.contains(target) else {
        fail("set FUZZ_TARGET to one of: \(FuzzEntryPoints.targets.joined(separator: " "))")
    }
    let scratch = "/dev/shm/model-agent-fuzz-\(getpid())"
    guard mkdir(scratch, 0o700) == 0 || errno == EEXIST else { fail("cannot create \(scratch)") }

    // libFuzzer's archive references this symbol even though its own main is not used.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        _ = FuzzEntryPoints.run(target, UnsafeRawBufferPointer(start: data, count: size), scratch: scratch)
        return 0
    }

    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
    _ = rmdir(scratch)
    exit(status)
#else
    var message = "model-agent-fuzz: not a fuzzing build; run scripts/fuzz\n"
    message.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
#endif
