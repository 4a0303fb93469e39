// Compiled only into the fuzz build (scripts/fuzz passes -DFUZZING): nothing of it ships.
#if FUZZING
    import NIOCore
    import NIOHTTP1

    /// One entry point per parser of bytes from outside the process, for the libFuzzer
    /// targets in `Fuzz/` (`scripts/fuzz`). Each takes arbitrary bytes and must return or
    /// throw, never trap; everything it writes stays under `scratch`.
    package enum FuzzEntryPoints {
        package static let targets: [String] = [
            "models-json", "quantity", "marker", "tar", "zip", "gzip", "xml", "pbtxt", "gcs-json", "uri",
            "readiness-probe", "grpc-message", "recency", "http1",
        ]

        /// Runs target `name` on `data`; false for an unknown name.
        package static func run(_ name: String, _ data: UnsafeRawBufferPointer, scratch: String) -> Bool {
            let bytes = Array(data)
            switch name {
            case "models-json": modelsJSON(bytes)
            case "quantity": quantity(bytes)
            case "marker":
                _ = try? MarkerFile.parse(bytes, name: MarkerFile.prefix + String(repeating: "0", count: 64), path: "m")
            case "tar":
                extract(scratch) { staging, budget in
                    try TarExtractor(source: MemorySource(bytes)).extract(into: staging, budget: budget)
                }
            case "zip": zip(bytes, scratch: scratch)
            case "gzip": gzip(bytes, scratch: scratch)
            case "xml": xml(bytes)
            case "pbtxt": pbtxt(bytes)
            case "gcs-json": gcsJSON(bytes)
            case "uri": uri(bytes)
            case "readiness-probe": readinessProbe(bytes)
            case "grpc-message": grpcMessage(bytes)
            case "recency": _ = RecencyFile.parse(bytes)
            case "http1": http1(bytes)
            default: return false
            }
            return true
        }

        /// The proxy's HTTP/1 parsing as a connection sees it: the first byte picks requests
        /// or responses, how the bytes are split into reads, and raw or decoded chunks; then
        /// messages are parsed one after another until the bytes end or one is refused.
        private static func http1(_ bytes: [UInt8]) {
            guard let control = bytes.first else { return }
            let isRequest = control & 1 == 0
            let raw = control & 2 == 0
            let piece = Int(control >> 2) + 1
            var stream = bytes.dropFirst()[...]
            var buffer = ByteBuffer()
            var scanned = 0
            var body: HTTP1BodyReader?
            var emitted = 0
            while !stream.isEmpty {
                buffer.writeBytes(stream.prefix(piece))
                stream = stream.dropFirst(piece)
                do {
                    while buffer.readableBytes > 0 {
                        if var reader = body {
                            let ended = try reader.next(&buffer, raw: raw) { emitted += $0.readableBytes }
                            body = ended ? nil : reader
                            if !ended { break }
                        } else if isRequest {
                            guard let head = try HTTP1Parser.requestHead(&buffer, scanned: &scanned) else { break }
                            try HTTP1Parser.checkHost(head)
                            body = HTTP1BodyReader(try HTTP1Parser.requestFraming(head))
                            _ = InferenceRoute.changesRepository(path: head.uri)
                            var out = ByteBuffer()
                            ProxyHeaders.upstreamRequest(
                                head, clientAddress: "127.0.0.1", serverAuthority: "127.0.0.1:8080", into: &out)
                            if withinLimits(out, head.fields) {
                                var scannedOut = 0
                                let sent = try? HTTP1Parser.requestHead(&out, scanned: &scannedOut)
                                precondition(sent != nil && out.readableBytes == 0, "unparsable head sent")
                                if let sent {
                                    precondition((try? HTTP1Parser.requestFraming(sent)) != nil, "ambiguous head sent")
                                    precondition((try? HTTP1Parser.checkHost(sent)) != nil, "not one Host sent")
                                }
                            }
                        } else {
                            guard let head = try HTTP1Parser.responseHead(&buffer, scanned: &scanned) else { break }
                            let framing = try HTTP1Parser.responseFraming(head, requestMethod: .GET)
                            body = HTTP1BodyReader(framing)
                            for version in [HTTPVersion.http1_1, .http1_0] {
                                // What a client gets is one well-framed head: it parses, and
                                // never states both a length and a coding.
                                var out = ByteBuffer()
                                _ = ProxyHeaders.downstreamResponse(
                                    head, framing: framing, requestVersion: version, keepAlive: true, into: &out)
                                guard withinLimits(out, head.fields) else { continue }
                                var scannedOut = 0
                                let sent = try? HTTP1Parser.responseHead(&out, scanned: &scannedOut)
                                precondition(sent != nil && out.readableBytes == 0, "unparsable head sent")
                                precondition(
                                    sent?.fields.contains(.contentLength) != true
                                        || sent?.fields.contains(.transferEncoding) != true, "length and coding")
                            }
                        }
                    }
                } catch {
                    return
                }
            }
            precondition(emitted <= bytes.count)
        }

        /// A head the proxy wrote can be read back unless the fields it adds (at most four)
        /// took it over the parser's limits.
        private static func withinLimits(_ written: ByteBuffer, _ fields: HTTP1Fields) -> Bool {
            written.readableBytes < HTTP1Parser.maxHeadBytes && fields.fields.count + 4 <= HTTP1Parser.maxHeaderLines
        }

        private static func modelsJSON(_ bytes: [UInt8]) {
            guard let file = try? ModelsFile.parse(bytes) else { return }
            for entry in file.entries {
                _ = entry.spec.hash
                _ = entry.spec.markerJSON
                _ = Redaction.uri(entry.spec.storageUri)
                _ = try? StorageLocation.parse(entry.spec.storageUri)
            }
            for refusal in file.refusals { _ = refusal.description }
        }

        /// SERVING_READINESS_PROBE (copied from another container's env) and request
        /// targets as the proxy reads them.
        private static func readinessProbe(_ bytes: [UInt8]) {
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? ReadinessProbeSpec.parse(text, defaultPort: 8080)
            _ = ModelTraffic.modelName(inPath: text)
        }

        /// The first bytes of an h2c connection and of a gRPC request body, as the proxy
        /// reads them, fed in the pieces a client might send them in.
        private static func grpcMessage(_ bytes: [UInt8]) {
            _ = ProxyProtocolDetector.decide(bytes)
            var prefix: [UInt8] = []
            let step = max(1, Int(bytes.first ?? 1) % 7)
            var index = 0
            while index < bytes.count {
                let end = min(bytes.count, index + step)
                prefix.append(contentsOf: bytes[index..<end])
                index = end
                if GRPCModelName.parse(prefix) != .needMore { break }
            }
            if case .name(let name) = GRPCModelName.parse(bytes) { _ = try? ModelName(validating: name) }
        }

        private static func quantity(_ bytes: [UInt8]) {
            guard let quantity = try? MemoryQuantity(parsing: String(decoding: bytes, as: UTF8.self)) else { return }
            _ = quantity.normalized
            _ = quantity.bytes
        }

        /// Extracts into a fresh staging directory under `scratch`, with a 64 MiB budget.
        private static func extract(
            _ scratch: String, _ body: (StagingDirectory, ExtractionBudget) throws -> FetchReport
        ) {
            let base = scratch + "/" + randomID()
            let staging = StagingDirectory(root: base + ".staging", scratch: base + ".scratch")
            defer { staging.discard() }
            guard (try? FileSystem.makeDirectories(staging.root)) != nil else { return }
            _ = try? body(staging, ExtractionBudget(limit: 64 << 20, bound: .maximum))
        }

        private static func zip(_ bytes: [UInt8], scratch: String) {
            let path = scratch + "/input.zip"
            defer { try? FileSystem.removeFile(path) }
            guard (try? FileSystem.writeFile(path, bytes)) != nil, let file = try? OpenFile(reading: path) else {
                return
            }
            extract(scratch) { staging, budget in try ZipExtractor(file: file).extract(into: staging, budget: budget) }
        }

        /// The first byte picks raw DEFLATE or gzip; the output is read (up to 64 MiB) and,
        /// for gzip, also fed to the tar reader as a .tar.gz would be.
        private static func gzip(_ bytes: [UInt8], scratch: String) {
            guard let first = bytes.first else { return }
            let rest = Array(bytes.dropFirst())
            guard let inflater = try? ZlibInflater(MemorySource(rest), wrapper: first & 1 == 0 ? .gzip : .raw) else {
                return
            }
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            var total = 0
            while total < 64 << 20 {
                guard let n = try? buffer.withUnsafeMutableBytes({ try inflater.read(into: $0) }), n > 0 else { break }
                total += n
            }
            if first & 2 != 0 {
                extract(scratch) { staging, budget in
                    let source = try ZlibInflater(MemorySource(rest), wrapper: .gzip)
                    return try TarExtractor(source: source).extract(into: staging, budget: budget)
                }
            }
        }

        /// S3 listings and errors, STS answers: everything the XML scanner reads.
        private static func xml(_ bytes: [UInt8]) {
            _ = try? S3Client.parseListPage(bytes, operation: "list")
            _ = try? STSWebIdentity.parseAnswer(status: 200, body: bytes, role: "r")
            _ = S3Error(operation: "get", status: 403, body: bytes).description
            _ = ErrorDocument.reason(bytes)
            for element in XMLScanner(bytes).elements("Contents") { _ = element.value("Key") }
        }

        private static func pbtxt(_ bytes: [UInt8]) {
            let text = String(decoding: bytes, as: UTF8.self)
            _ = ProtoText.topLevelFields(text)
            _ = ProtoText.settingName("model", in: text)
        }

        /// GCS listings, token answers and error documents, and MLServer settings files.
        private static func gcsJSON(_ bytes: [UInt8]) {
            _ = try? GCSClient.parsePage(bytes, operation: "list")
            _ = GCSTokenProvider.parseTokenAnswer(bytes, now: 1_700_000_000)
            _ = GCSError(operation: "list", status: 403, body: bytes).description
            _ = LoadFailure.extractReason(bytes)
            _ = HostHeaders.decode(String(decoding: bytes, as: UTF8.self))
        }

        private static func uri(_ bytes: [UInt8]) {
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? StorageLocation.parse(text)
            _ = Redaction.uri(text)
            SecretRedactor().registerSecrets(inURI: text)
            if let url = URLParts(text) {
                _ = url.host
                _ = url.origin
                _ = url.path
                _ = try? HTTPStorageProvider.fileName(of: url, uri: text)
                _ = url.resolve(text)
            }
            _ = percentDecoded(Substring(text))
            _ = try? RelativePath.normalize(text)
            _ = try? ModelName(validating: text)
            _ = UTCTime.parseISO8601(text)
            // Header values from S3 (additional checksums) are short texts like these.
            _ = S3Client.additionalChecksum(["x-amz-checksum-crc64nvme": text, "x-amz-checksum-type": text])
            for algorithm in CRCAlgorithm.allCases { _ = Checksum.crc(algorithm, base64: text)?.description }
        }
    }
#endif
