import Foundation
import Synchronization
import Testing

@testable import ModelAgent

@Suite struct ChecksumTests {
    @Test func crc32KnownVectors() {
        var ieee = CRC32.ieee()
        ieee.update(Array("123456789".utf8))
        #expect(ieee.value == 0xCBF4_3926)
        var castagnoli = CRC32.castagnoli()
        castagnoli.update(Array("123456789".utf8))
        #expect(castagnoli.value == 0xE306_9283)
        var empty = CRC32.ieee()
        empty.update([])
        #expect(empty.value == 0)
    }

    @Test func crc32IsIncremental() {
        let data = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var whole = CRC32.castagnoli()
        whole.update(data)
        var parts = CRC32.castagnoli()
        parts.update(Array(data[..<7]))
        parts.update(Array(data[7..<50_001]))
        parts.update(Array(data[50_001...]))
        #expect(whole.value == parts.value)
    }

    @Test func digests() {
        #expect(Digest.sha256Hex("hello") == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        #expect(hex(Digest.hash(.md5, Array("hello".utf8))) == "5d41402abc4b2a76b9719d911017c592")
        #expect(
            hex(hmacSHA256(key: Array("key".utf8), data: Array("The quick brown fox jumps over the lazy dog".utf8)))
                == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    }
}

@Suite struct AsyncLimiterTests {
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
            "", "s3:/x", "s3:://x", "hdfs://n/p", "pvc://claim/p", "abfs://c/p", "models/x", "s3:///key", "file://rel",
        ] {
            #expect(throws: UnsupportedStorage.self) { try StorageLocation.parse(bad) }
        }
    }
}
