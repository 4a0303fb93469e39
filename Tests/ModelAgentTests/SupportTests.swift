import Foundation
import Synchronization
import TestSupport
import Testing

@testable import ModelAgent

extension CRCAlgorithm {
    func checksum(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { update(0, $0) }
    }

    /// One bit at a time, straight from the definition: the reference the fast paths
    /// (ISA-L, the 16-byte table loop) are held to.
    func bitwise(_ bytes: [UInt8]) -> UInt64 {
        let polynomial: UInt64 =
            switch self {
            case .crc32: 0xEDB8_8320
            case .crc32c: 0x82F6_3B78
            case .crc64nvme: 0x9A6C_9329_AC4B_C9B5
            }
        let mask: UInt64 = width == 64 ? .max : 0xFFFF_FFFF
        var crc = mask
        for byte in bytes {
            crc ^= UInt64(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ polynomial : crc >> 1 }
        }
        return crc ^ mask
    }
}

@Suite struct ChecksumTests {
    @Test func crcKnownVectors() {
        let check = Array("123456789".utf8)
        #expect(CRCAlgorithm.crc32.checksum(check) == 0xCBF4_3926)
        #expect(CRCAlgorithm.crc32c.checksum(check) == 0xE306_9283)
        #expect(CRCAlgorithm.crc64nvme.checksum(check) == 0xAE8B_1486_0A79_9888)
        for algorithm in CRCAlgorithm.allCases { #expect(algorithm.checksum([]) == 0) }
        var ieee = CRC32.ieee()
        ieee.update(Array(check[..<4]))
        ieee.update(Array(check[4...]))
        #expect(ieee.value == 0xCBF4_3926)
    }

    /// Every length from 0 to 100 (the 16-byte loop, its tail, misaligned starts) and a
    /// large odd one agree with the bit-by-bit definition.
    @Test func crcFastPathsMatchTheDefinition() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<70_003).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for algorithm in CRCAlgorithm.allCases {
            for length in 0...100 {
                let slice = Array(data[3..<(3 + length)])
                #expect(algorithm.checksum(slice) == algorithm.bitwise(slice), "\(algorithm) length \(length)")
            }
            #expect(algorithm.checksum(data) == algorithm.bitwise(data), "\(algorithm) 70,003 bytes")
        }
    }

    /// S3's headers: a whole-object CRC is taken (CRC-32C first), a composite one never.
    @Test func s3AdditionalChecksumHeaders() {
        let crc32c = Checksum.crc(.crc32c, 0x1BDC_B083)
        #expect(S3Client.additionalChecksum(["x-amz-checksum-crc32c": "G9ywgw=="]) == crc32c)
        #expect(
            S3Client.additionalChecksum([
                "x-amz-checksum-crc64nvme": "5QfnJC6n+V0=", "x-amz-checksum-crc32c": "G9ywgw==",
                "x-amz-checksum-type": "FULL_OBJECT",
            ]) == crc32c)
        #expect(
            S3Client.additionalChecksum(["x-amz-checksum-crc32c": "G9ywgw==", "x-amz-checksum-type": "composite"])
                == nil)
        #expect(S3Client.additionalChecksum(["x-amz-checksum-crc32": "G9ywgw==-4"]) == nil)
        // A multipart object's checksum counts only when said to be whole-object (moto sends
        // composite values without "-N" or a type).
        #expect(S3Client.additionalChecksum(["x-amz-checksum-crc32c": "G9ywgw=="], multipart: true) == nil)
        #expect(
            S3Client.additionalChecksum(
                ["x-amz-checksum-crc32c": "G9ywgw==", "x-amz-checksum-type": "FULL_OBJECT"], multipart: true) == crc32c)
        #expect(TransferEngine.plainETag("W/\"ABC-2\"") == TransferEngine.plainETag("abc-2"))
        #expect(
            S3Client.additionalChecksum(["x-amz-checksum-sha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="])
                == nil)
        #expect(
            S3Client.additionalChecksum(["x-amz-checksum-crc64nvme": "garbage", "x-amz-checksum-crc32": "pUaqcg=="])
                == .crc(.crc32, 0xA546_AA72), "an unreadable value is skipped")
    }

    /// Chained updates and the combination of parts' CRCs both give the whole file's CRC,
    /// for any split (S3 and GCS publish whole-object CRCs; parts are hashed apart).
    @Test func crcOfPartsCombinesToTheWhole() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<300_007).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for algorithm in CRCAlgorithm.allCases {
            let whole = algorithm.checksum(data)
            let cuts = [0, 1, 7, 8, 4096, 65_537, 150_000, 299_999, 300_007]
            for cut in cuts {
                let head = Array(data[..<cut])
                let tail = Array(data[cut...])
                let chained = tail.withUnsafeBytes { algorithm.update(algorithm.checksum(head), $0) }
                #expect(chained == whole, "\(algorithm) chained at \(cut)")
                let combined = algorithm.combine(
                    algorithm.checksum(head), algorithm.checksum(tail), secondLength: Int64(tail.count))
                #expect(combined == whole, "\(algorithm) combined at \(cut)")
            }
            // Many unequal parts, combined left to right.
            var total: UInt64 = 0
            var offset = 0
            var size = 1
            while offset < data.count {
                let part = Array(data[offset..<min(offset + size, data.count)])
                total = algorithm.combine(total, algorithm.checksum(part), secondLength: Int64(part.count))
                offset += part.count
                size = size * 3 + 1
            }
            #expect(total == whole, "\(algorithm) from many parts")
        }
    }

    /// A part hashed while written: in-order writes give its CRC, anything else gives none
    /// (the part is then read back).
    @Test func runningCRCOnlyTrustsInOrderWrites() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let expected = CRCAlgorithm.crc32c.checksum(Array(data[100..<10_000]))
        let inOrder = RunningCRC(algorithm: .crc32c, start: 100)
        data.withUnsafeBytes { bytes in
            inOrder.absorb(UnsafeRawBufferPointer(rebasing: bytes[100..<4_000]), at: 100)
            inOrder.absorb(UnsafeRawBufferPointer(rebasing: bytes[4_000..<10_000]), at: 4_000)
        }
        #expect(inOrder.value(covering: 100..<10_000) == expected)
        #expect(inOrder.value(covering: 100..<9_999) == nil, "not the whole range")
        #expect(inOrder.value(covering: 0..<10_000) == nil)

        let restarted = RunningCRC(algorithm: .crc32c, start: 100)
        data.withUnsafeBytes { bytes in
            restarted.absorb(UnsafeRawBufferPointer(rebasing: bytes[100..<4_000]), at: 100)
            restarted.absorb(UnsafeRawBufferPointer(rebasing: bytes[100..<10_000]), at: 100)
        }
        #expect(restarted.value(covering: 100..<10_000) == nil, "a write out of order spoils it")
    }

    @Test func storeChecksumsParseStrictly() {
        #expect(Checksum.crc(.crc32, base64: "pUaqcg==") == .crc(.crc32, 0xA546_AA72))
        #expect(Checksum.crc(.crc64nvme, base64: "5QfnJC6n+V0=") == .crc(.crc64nvme, 0xE507_E724_2EA7_F95D))
        #expect(Checksum.crc(.crc32c, base64: "5QfnJC6n+V0=") == nil, "eight bytes for a 32-bit CRC")
        #expect(Checksum.crc(.crc32, base64: "pUaqcg==-3") == nil, "composite")
        #expect(Checksum.crc(.crc32, base64: "") == nil)
        #expect(Checksum.crc(.crc32, base64: String(repeating: "A", count: 5000)) == nil)
        #expect(Checksum.crc(.crc64nvme, 0xE507_E724_2EA7_F95D).description == "crc64nvme 5QfnJC6n+V0=")
    }

    @Test func digests() {
        #expect(Digest.sha256Hex("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        #expect(hex(Digest.hash(.md5, Array("hello".utf8))) == "5d41402abc4b2a76b9719d911017c592")
        #expect(
            hex(hmacSHA256(key: Array("key".utf8), data: Array("The quick brown fox jumps over the lazy dog".utf8)))
                == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    }
}

@Suite(.timeLimit(.minutes(1))) struct AsyncLimiterTests {
    /// What queued callbacks were told, in order: "<tag> <granted>".
    final class Calls: Sendable {
        let list = Mutex<[String]>([])
        func record(_ tag: String) -> @Sendable (Bool) -> Void {
            { granted in self.list.withLock { $0.append("\(tag) \(granted)") } }
        }
    }

    @Test func neverExceedsItsLimit() async throws {
        final class Counts: Sendable {
            let value = Mutex((current: 0, peak: 0))
        }
        let limiter = AsyncLimiter(limit: 3)
        let box = Counts()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    try await limiter.withPermit {
                        box.value.withLock {
                            $0.current += 1
                            $0.peak = max($0.peak, $0.current)
                        }
                        try await Task.sleep(for: .milliseconds(2))
                        box.value.withLock { $0.current -= 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(box.value.withLock { $0.peak } == 3)
        #expect(limiter.inUse == 0)
    }

    @Test func urgentWaitersGoFirstAndTheReservedSlotIsTheirs() async throws {
        let limiter = AsyncLimiter(limit: 2, reserved: 1)
        func untilWaiting(_ count: Int) async throws {
            while limiter.waiting < count { try await Task.sleep(for: .milliseconds(1)) }
        }
        try await limiter.acquire()
        // The last slot is kept for urgent work: an ordinary holder waits for it...
        let ordinary = Task { try await limiter.acquire() }
        try await untilWaiting(1)
        // ...an urgent one takes it at once.
        try await limiter.acquire(urgent: true)
        #expect(limiter.inUse == 2)
        let later = Task { try await limiter.acquire() }
        try await untilWaiting(2)
        let urgent = Task { try await limiter.acquire(urgent: true) }
        try await untilWaiting(3)
        // A freed slot goes to the urgent waiter, ahead of the two that came before it.
        limiter.release()
        try await urgent.value
        #expect(limiter.waiting == 2 && limiter.inUse == 2)
        // The next freed slot is the reserved one: ordinary waiters go on waiting.
        limiter.release()
        #expect(limiter.waiting == 2 && limiter.inUse == 1)
        limiter.release()
        try await ordinary.value
        #expect(limiter.waiting == 1 && limiter.inUse == 1)
        limiter.release()
        try await later.value
        limiter.release()
        #expect(limiter.inUse == 0 && limiter.waiting == 0)
    }

    @Test func aPromotedWaiterTakesTheReservedSlotAndACancelledUrgentOneLeaves() async throws {
        let limiter = AsyncLimiter(limit: 2, reserved: 1)
        func untilWaiting(_ count: Int) async throws {
            while limiter.waiting < count { try await Task.sleep(for: .milliseconds(1)) }
        }
        try await limiter.acquire()
        let first = Task { try await limiter.acquire(tag: "a") }
        try await untilWaiting(1)
        let second = Task { try await limiter.acquire(tag: "b") }
        try await untilWaiting(2)
        // A request now waits for b: it takes the reserved slot at once, ahead of a.
        limiter.promote("b")
        try await second.value
        #expect(limiter.waiting == 1 && limiter.inUse == 2)
        // An urgent waiter queued ahead of a, then cancelled: a is still next.
        let urgent = Task { try await limiter.acquire(urgent: true, tag: "c") }
        try await untilWaiting(2)
        urgent.cancel()
        await #expect(throws: CancellationError.self) { try await urgent.value }
        #expect(limiter.waiting == 1)
        limiter.release()
        limiter.release()
        try await first.value
        limiter.release()
        #expect(limiter.inUse == 0 && limiter.waiting == 0)
    }

    @Test func queuedCallbacksShareTheLineWithTasksAndCanBeWithdrawn() async throws {
        let calls = Calls()
        let limiter = AsyncLimiter(limit: 2, reserved: 1)
        // A free slot: called at once, before `enter` returns.
        limiter.enter(tag: "a", start: calls.record("a"))
        #expect(calls.list.withLock { $0 } == ["a true"] && limiter.inUse == 1)
        // The last slot is reserved: ordinary callbacks wait, in order, with a task between.
        let b = limiter.enter(tag: "b", start: calls.record("b"))
        let task = Task { try await limiter.acquire(tag: "t") }
        while limiter.waiting < 2 { try await Task.sleep(for: .milliseconds(1)) }
        let c = limiter.enter(tag: "c", start: calls.record("c"))
        let d = limiter.enter(tag: "d", start: calls.record("d"))
        #expect(limiter.waiting == 4 && calls.list.withLock { $0 } == ["a true"])
        // Promoted: d takes the reserved slot at once, ahead of the others.
        limiter.promote("d")
        #expect(calls.list.withLock { $0 } == ["a true", "d true"] && limiter.inUse == 2)
        // Withdrawn: told so, and out of the line; withdrawing a granted one does nothing.
        limiter.withdraw(b)
        limiter.withdraw(d)
        #expect(calls.list.withLock { $0 } == ["a true", "d true", "b false"] && limiter.waiting == 2)
        // Freed slots go by arrival: the task, then c.
        limiter.release()
        limiter.release()
        try await task.value
        #expect(limiter.waiting == 1 && limiter.inUse == 1)
        limiter.release()
        #expect(calls.list.withLock { $0 } == ["a true", "d true", "b false", "c true"])
        limiter.withdraw(c)
        // A model promoted before its worker queues: its callback takes the reserved slot
        // at once, ahead of an ordinary one that came first.
        let f = limiter.enter(tag: "f", start: calls.record("f"))
        #expect(limiter.waiting == 1)
        limiter.promote("e")
        limiter.enter(tag: "e", start: calls.record("e"))
        #expect(calls.list.withLock { $0.last } == "e true" && limiter.inUse == 2 && limiter.waiting == 1)
        limiter.demote("e")
        limiter.release()
        limiter.release()
        #expect(calls.list.withLock { $0.last } == "f true" && limiter.inUse == 1)
        limiter.withdraw(f)
        limiter.release()
        #expect(limiter.inUse == 0 && limiter.waiting == 0 && calls.list.withLock { $0.count } == 6)
    }

    @Test func aHastenedWaiterGoesFirstOrTakesTheReservedSlot() async throws {
        let calls = Calls()
        let limiter = AsyncLimiter(limit: 1)
        limiter.enter(start: calls.record("a"))
        let b = limiter.enter(start: calls.record("b"))
        let c = limiter.enter(start: calls.record("c"))
        // No slot free: c only moves ahead of b; a second call and an unknown ticket do nothing.
        limiter.hasten(c)
        limiter.hasten(c)
        limiter.hasten(12345)
        #expect(calls.list.withLock { $0 } == ["a true"] && limiter.waiting == 2)
        limiter.release()
        limiter.release()
        #expect(calls.list.withLock { $0 } == ["a true", "c true", "b true"])
        limiter.withdraw(b)
        limiter.release()
        // With a slot reserved for urgent work, a hastened waiter takes it at once.
        let reserving = AsyncLimiter(limit: 2, reserved: 1)
        reserving.enter(start: calls.record("d"))
        let e = reserving.enter(start: calls.record("e"))
        reserving.hasten(e)
        #expect(calls.list.withLock { $0.suffix(2) } == ["d true", "e true"] && reserving.inUse == 2)
        reserving.release()
        reserving.release()
        #expect(limiter.inUse == 0 && reserving.inUse == 0 && limiter.waiting == 0)
    }

    @Test func aDemotedWaiterGoesBackToItsPlaceByArrival() async throws {
        let limiter = AsyncLimiter(limit: 1)
        func untilWaiting(_ count: Int) async throws {
            while limiter.waiting < count { try await Task.sleep(for: .milliseconds(1)) }
        }
        final class Order: Sendable {
            let tags = Mutex<[String]>([])
        }
        let order = Order()
        try await limiter.acquire()
        var waiters: [Task<Void, any Error>] = []
        for (index, tag) in ["a", "b", "c"].enumerated() {
            waiters.append(
                Task {
                    try await limiter.acquire(tag: tag)
                    order.tags.withLock { $0.append(tag) }
                })
            try await untilWaiting(index + 1)
        }
        // A request waited for c, then gave up: c is behind b again, not at the head.
        limiter.promote("c")
        limiter.demote("c")
        for taken in 1...3 {
            limiter.release()
            while order.tags.withLock({ $0.count }) < taken { try await Task.sleep(for: .milliseconds(1)) }
        }
        for waiter in waiters { try await waiter.value }
        #expect(order.tags.withLock { $0 } == ["a", "b", "c"])
        limiter.release()
        #expect(limiter.inUse == 0 && limiter.waiting == 0)
    }

    @Test func aPromotionCountsForAWaiterThatComesLaterUntilDemoted() async throws {
        let limiter = AsyncLimiter(limit: 1)
        func untilWaiting(_ count: Int) async throws {
            while limiter.waiting < count { try await Task.sleep(for: .milliseconds(1)) }
        }
        try await limiter.acquire()
        let first = Task { try await limiter.acquire(tag: "a") }
        try await untilWaiting(1)
        // A request waits for b before b's worker has joined the line: b still goes first.
        limiter.promote("b")
        let second = Task { try await limiter.acquire(tag: "b") }
        try await untilWaiting(2)
        limiter.release()
        try await second.value
        // The request has gone: b's next wait is ordinary, behind a.
        limiter.demote("b")
        let third = Task { try await limiter.acquire(tag: "b") }
        try await untilWaiting(2)
        limiter.release()
        try await first.value
        #expect(limiter.waiting == 1)
        limiter.release()
        try await third.value
        limiter.release()
        #expect(limiter.inUse == 0 && limiter.waiting == 0)
    }

    @Test func aCancelledWaiterLeavesTheQueue() async throws {
        let limiter = AsyncLimiter(limit: 1)
        try await limiter.acquire()
        let waiter = Task { try await limiter.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        limiter.release()
        #expect(limiter.inUse == 0)
        try await limiter.acquire()
        limiter.release()
    }
}

@Suite struct RetryPolicyTests {
    @Test func delaysGrowAndStayWithinBounds() {
        let policy = RetryPolicy(maxAttempts: 10, initialDelay: .seconds(1), maxDelay: .seconds(8))
        for attempt in 1...10 {
            let delay = policy.delay(afterAttempt: attempt)
            let base = min(8.0, pow(2.0, Double(attempt - 1)))
            #expect(delay >= .milliseconds(Int(base * 500)) && delay <= .milliseconds(Int(base * 1000)))
        }
    }

    @Test func stopsOnPermanentErrorsAndAfterTheLastAttempt() async {
        let policy = RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(1), maxDelay: .milliseconds(2))
        let calls = Mutex(0)
        await #expect(throws: HTTPStatusError.self) {
            try await policy.run { _ in
                calls.withLock { $0 += 1 }
                throw HTTPStatusError(status: 404, body: [], context: "x")
            }
        }
        #expect(calls.withLock { $0 } == 1)
        await #expect(throws: HTTPStatusError.self) {
            try await policy.run { _ in
                calls.withLock { $0 += 1 }
                throw HTTPStatusError(status: 503, body: [], context: "x")
            }
        }
        #expect(calls.withLock { $0 } == 4)
    }
}

@Suite struct TextTests {
    @Test func redactsCredentialsInURIs() {
        #expect(
            Redaction.uri("https://user:pw@host/p/m.tgz?X-Amz-Signature=abc")
                == "https://<redacted>@host/p/m.tgz?<redacted>")
        #expect(Redaction.uri("s3://bucket/key") == "s3://bucket/key")
        #expect(Redaction.uri("http://h/a#frag") == "http://h/a")
    }

    @Test func urlParts() throws {
        let url = try #require(URLParts("https://user@Example.com:8443/a/b/c.tgz?x=1#f"))
        #expect(url.host == "example.com" && url.authority == "user@Example.com:8443")
        #expect(url.path == "/a/b/c.tgz" && url.pathAndQuery == "/a/b/c.tgz?x=1")
        #expect(url.resolve("/z") == "https://user@Example.com:8443/z")
        #expect(url.resolve("d.tgz") == "https://user@Example.com:8443/a/b/d.tgz")
        #expect(url.resolve("//cdn/x") == "https://cdn/x")
        #expect(url.resolve("http://other/y") == "http://other/y")
        #expect(URLParts("http://[::1]:80/x")?.host == "[::1]")
        #expect(URLParts("no-scheme") == nil)
        #expect(percentDecoded("a%20b%2Fc") == "a b/c")
        #expect(percentDecoded("bad%zz") == nil)
    }

    @Test func serverErrorReasons() {
        #expect(LoadFailure.extractReason(Array(#"{"error":"Model iris not found"}"#.utf8)) == "Model iris not found")
        #expect(
            LoadFailure.extractReason(Array(#"{"error": "load failed: line 1\nline 2"}"#.utf8))
                == "load failed: line 1\nline 2")
        #expect(LoadFailure.extractReason(Array("Internal Server Error".utf8)) == "Internal Server Error")
        #expect(LoadFailure.extractReason(Array(String(repeating: "x", count: 2000).utf8)).count == 513)
    }

    @Test func storageLocations() throws {
        #expect(try StorageLocation.parse("s3://bucket/a/b") == .s3(bucket: "bucket", key: "a/b"))
        #expect(try StorageLocation.parse("s3://bucket") == .s3(bucket: "bucket", key: ""))
        #expect(try StorageLocation.parse("gs://b/o") == .gcs(bucket: "b", object: "o"))
        #expect(try StorageLocation.parse("file:///m/x") == .local(path: "/m/x"))
        #expect(try StorageLocation.parse("/mnt/pvc/m") == .local(path: "/mnt/pvc/m"))
        #expect(try StorageLocation.parse("HTTPS://h/m.tgz") == .http(url: "HTTPS://h/m.tgz"))
        for bad in [
            "", "s3:/x", "s3:://x", "hdfs://n/p", "pvc:///p", "abfs://c/p", "models/x", "s3:///key", "file://rel",
        ] {
            #expect(throws: UnsupportedStorage.self) { try StorageLocation.parse(bad) }
        }
    }
}

@Suite struct XMLScannerTests {
    @Test func findsElementsAndDecodesEntities() {
        let xml = XMLScanner(
            Array(
                """
                <?xml version="1.0"?><ListBucketResult xmlns="x"><Name>b</Name><IsTruncated>true</IsTruncated>
                <Contents><Key>a&amp;b &lt;c&gt; &#252;&#x20AC;</Key><Size>3</Size><ETag>&quot;abc&quot;</ETag></Contents>
                <Contents><Key>k2</Key><Size>0</Size><Empty/></Contents><KeyCount>2</KeyCount>
                <NextContinuationToken>t/1=</NextContinuationToken></ListBucketResult>
                """.utf8))
        let contents = xml.elements("Contents")
        #expect(contents.count == 2)
        #expect(contents[0].value("Key") == "a&b <c> ü€")
        #expect(contents[0].value("ETag") == "\"abc\"")
        #expect(contents[1].value("Empty") == "")
        #expect(xml.value("IsTruncated") == "true")
        #expect(xml.value("Key") == "a&b <c> ü€")
        #expect(xml.value("NextContinuationToken") == "t/1=")
        #expect(xml.value("Missing") == nil)
        #expect(XMLScanner(Array("<A>x".utf8)).value("A") == nil)
    }
}

/// Our SigV4 against botocore's (an independent implementation), on the cases that
/// trip signers up: keys with spaces, '+', '=', '~', '%', non-ASCII; query values with
/// '/'; session tokens; ports in the host.
@Suite struct SigV4Tests {
    struct Case: Codable {
        var url: String
        var token: String?
        /// Sends `x-amz-checksum-mode: ENABLED`, which S3 wants signed like any x-amz-* header.
        var checksumMode: Bool?
    }

    @Test func matchesBotocore() throws {
        let cases = [
            Case(url: "http://127.0.0.1:9000/models/m1/a%20b.txt"),
            Case(url: "https://bucket.s3.eu-west-1.amazonaws.com/a%2Bb%3Dc~d.txt"),
            Case(url: "http://127.0.0.1:9000/models/%C3%BC/%C3%B6%25.txt", token: "FwoGZXIvYXdzE//token+with/slash="),
            Case(url: "http://localhost:5000/models?list-type=2&prefix=models%2Fm1%2F&max-keys=1000&encoding-type=url"),
            Case(url: "https://s3.us-east-1.amazonaws.com/b?continuation-token=1%2Fabc%3D%3D&list-type=2&prefix="),
            Case(url: "http://127.0.0.1:9000/models/big/w.bin", token: "FwoGZXIvYXdzE", checksumMode: true),
        ]
        let time = UTCTime(seconds: 1_440_938_160)  // 2015-08-30T12:36:00Z
        let credentials = AWSCredentials(
            accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        let script = """
            import json, sys, datetime
            from unittest import mock
            import botocore.auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            fixed = datetime.datetime(2015, 8, 30, 12, 36, 0)
            out = []
            for case in json.loads(sys.argv[1]):
                creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", case.get("token"))
                region = "eu-west-1" if "eu-west-1" in case["url"] else "us-east-1"
                headers = {"x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
                if case.get("checksumMode"):
                    headers["x-amz-checksum-mode"] = "ENABLED"
                request = AWSRequest(method="GET", url=case["url"], headers=headers)
                with mock.patch.object(botocore.auth, "get_current_datetime", return_value=fixed):
                    botocore.auth.S3SigV4Auth(creds, "s3", region).add_auth(request)
                out.append(request.headers["Authorization"])
            print(json.dumps(out))
            """
        let input = String(decoding: try JSONEncoder().encode(cases), as: UTF8.self)
        let output = try TestSupport.run(try TestPaths.venvTool("tools", "python3"), ["-c", script, input])
        let expected = try JSONDecoder().decode([String].self, from: Data(output.utf8))
        for (index, item) in cases.enumerated() {
            var request = HTTPRequest(url: item.url)
            if item.checksumMode == true { request.headers.append(S3Client.checksumModeHeader) }
            var creds = credentials
            creds.sessionToken = item.token
            let region = item.url.contains("eu-west-1") ? "eu-west-1" : "us-east-1"
            SigV4Signer(region: region, service: "s3").sign(&request, credentials: creds, at: time)
            #expect(request.credentials.first?.value == expected[index], "case \(item.url)")
        }
    }

    @Test func encodesLikeRFC3986() {
        #expect(uriEncode("a b+c=d~e/f") == "a%20b%2Bc%3Dd~e%2Ff")
        #expect(uriEncode("a b/ü", keepSlash: true) == "a%20b/%C3%BC")
    }
}

@Suite struct S3ConfigurationTests {
    func base(_ env: [String: String], _ bucket: String = "models") throws -> String {
        let config = try S3Configuration.from(environment: env)
        let (origin, path) = config.base(bucket: bucket)
        return origin + path
    }

    @Test func addressing() throws {
        #expect(try base([:]) == "https://models.s3.us-east-1.amazonaws.com")
        #expect(try base(["AWS_REGION": "eu-west-2"]) == "https://models.s3.eu-west-2.amazonaws.com")
        #expect(
            try base(["AWS_DEFAULT_REGION": "ap-south-1", "AWS_REGION": "x"])
                == "https://models.s3.ap-south-1.amazonaws.com")
        #expect(try base([:], "my.dotted.bucket") == "https://s3.us-east-1.amazonaws.com/my.dotted.bucket")
        #expect(try base(["S3_USER_VIRTUAL_BUCKET": "false"]) == "https://s3.us-east-1.amazonaws.com/models")
        #expect(try base(["AWS_ENDPOINT_URL": "http://127.0.0.1:9000"]) == "http://127.0.0.1:9000/models")
        #expect(try base(["AWS_ENDPOINT_URL": "http://minio.kubeflow:9000/"]) == "http://minio.kubeflow:9000/models")
        #expect(
            try base(["AWS_ENDPOINT_URL": "https://minio.example", "S3_USER_VIRTUAL_BUCKET": "true"])
                == "https://models.minio.example")
        #expect(
            try base(["S3_ENDPOINT": "minio-service.kubeflow:9000", "S3_USE_HTTPS": "0"])
                == "http://minio-service.kubeflow:9000/models")
        #expect(
            try base(["S3_ENDPOINT": "minio-service.kubeflow:9000"]) == "https://minio-service.kubeflow:9000/models")
        #expect(
            try base(["AWS_ENDPOINT_URL_S3": "http://a:1", "AWS_ENDPOINT_URL": "http://b:2"]) == "http://a:1/models")
        #expect(try base(["S3_USE_ACCELERATE": "true"]) == "https://models.s3-accelerate.amazonaws.com")
        #expect(throws: ConfigurationError.self) {
            try S3Configuration.from(environment: ["AWS_ENDPOINT_URL": "not a url"])
        }
    }

    @Test func tlsAndCredentials() throws {
        let config = try S3Configuration.from(environment: ["S3_VERIFY_SSL": "0", "AWS_CA_BUNDLE": "/ca.pem"])
        #expect(!config.verifyTLS && config.caBundle == "/ca.pem")
        #expect(try S3Configuration.from(environment: ["S3_VERIFY_SSL": "1"]).verifyTLS)
        func source(_ env: [String: String]) -> String {
            switch S3Configuration.credentialSource(environment: env, region: "us-east-1") {
            case .anonymous: return "anonymous"
            case .fixed(let c): return "fixed \(c.accessKeyId) \(c.sessionToken ?? "-")"
            case .webIdentity(let role, let file, let session, let sts): return "web \(role) \(file) \(session) \(sts)"
            }
        }
        #expect(source([:]) == "anonymous")
        #expect(
            source(["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"]) == "fixed k t")
        #expect(
            source(["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "awsAnonymousCredential": "True"])
                == "anonymous")
        #expect(
            source(["AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"])
                == "web arn:r /t model-agent https://sts.us-east-1.amazonaws.com")
        #expect(
            source([
                "AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ENDPOINT_URL_STS": "http://sts:1",
            ])
                == "web arn:r /t model-agent http://sts:1")
        #expect(
            S3Client.md5FromETag("\"5d41402abc4b2a76b9719d911017c592\"")
                == .md5(hex: "5d41402abc4b2a76b9719d911017c592"))
        #expect(S3Client.md5FromETag("\"5d41402abc4b2a76b9719d911017c592-3\"") == nil)
    }

    @Test func parsesISO8601() {
        #expect(UTCTime.parseISO8601("2015-08-30T12:36:00Z")?.seconds == 1_440_938_160)
        #expect(UTCTime.parseISO8601("2015-08-30T12:36:00.123Z")?.seconds == 1_440_938_160)
        #expect(UTCTime.parseISO8601("2015-08-30T14:36:00+02:00")?.seconds == 1_440_938_160)
        #expect(UTCTime(seconds: 1_440_938_160).amzDate == "20150830T123600Z")
        #expect(UTCTime.parseISO8601("garbage") == nil)
    }
}

extension TextTests {
    @Test func serverAnswersAndTimestampsAreDecodedProperly() {
        #expect(LoadFailure.extractReason(Array(#"{"error": "say \"hi\" \u00e9"}"#.utf8)) == "say \"hi\" é")
        #expect(LoadFailure.extractReason(Array(#"{"detail": "no error key"}"#.utf8)) == #"{"detail": "no error key"}"#)
        #expect(UTCTime(seconds: 1_440_938_160).iso8601 == "2015-08-30T12:36:00Z")
        let stamp = AgentLogHandler.timestamp()
        #expect(stamp.count == 24 && stamp.hasSuffix("Z") && stamp.dropFirst(19).hasPrefix("."))
    }
}
