import NIOCore
import NIOHTTP1

/// A request head as `HTTP1Parser` found it: the start line's parts, and the fields as
/// they arrived (`HTTP1Fields`).
struct HTTP1RequestHead {
    var method: HTTPMethod
    var uri: String
    var version: HTTPVersion
    var fields: HTTP1Fields
    /// Where the request target ends in `fields.bytes`: the start line up to there is
    /// forwarded as it came.
    var targetEnd: Int
    /// What the `Connection` fields list (`HTTP1Fields.connectionTokens`).
    var connectionTokens: [Range<Int>]
    var isKeepAlive: Bool

    var headers: HTTPHeaders { fields.headers }
}

/// A response head as `HTTP1Parser` found it.
struct HTTP1ResponseHead {
    var version: HTTPVersion
    var code: Int
    var fields: HTTP1Fields
    /// Where the status line ends in `fields.bytes`: from after the version to there
    /// (` 200 OK`), it is forwarded as it came.
    var statusLineEnd: Int
    var connectionTokens: [Range<Int>]
    var isKeepAlive: Bool

    var headers: HTTPHeaders { fields.headers }
}
