import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Minimal HTTP for tests (talking to fixtures, MLServer and the agent's status server).
public enum TestHTTP {
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }()

    public struct Response: Sendable {
        public let status: Int
        public let body: Data
        /// Header names lowercased.
        public var headers: [String: String] = [:]
        public var text: String { String(decoding: body, as: UTF8.self) }

        public func json<T: Decodable>(_ type: T.Type) throws -> T {
            try JSONDecoder().decode(type, from: body)
        }
    }

    public static func request(
        _ method: String, _ url: String, body: Data? = nil, headers: [String: String] = [:]
    ) async throws -> Response {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if body != nil && headers["Content-Type"] == nil {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        return Response(status: http.statusCode, body: data, headers: headers)
    }

    public static func get(_ url: String, headers: [String: String] = [:]) async throws -> Response {
        try await request("GET", url, headers: headers)
    }

    public static func post(_ url: String, json: String) async throws -> Response {
        try await request("POST", url, body: Data(json.utf8))
    }
}
