import NIOCore
import NIOHTTP1

/// A request head as `HTTP1Parser` found it: the start line's parts, and the fields as
/// they arrived (`HTTP1Fields`).
struct HTTP1RequestHead {
    let method: HTTPMethod
    let uri: String
    let version: HTTPVersion
    let fields: HTTP1Fields
    /// Where the request target ends in `fields.bytes`: the start line up to there is
    /// forwarded as it came.
    let targetEnd: Int
    let isKeepAlive: Bool

    var headers: HTTPHeaders { fields.headers }
}

/// A response head as `HTTP1Parser` found it.
struct HTTP1ResponseHead {
    let version: HTTPVersion
    let code: Int
    let fields: HTTP1Fields
    /// Where the status line ends in `fields.bytes`: from after the version to there
    /// (` 200 OK`), it is forwarded as it came.
    let statusLineEnd: Int
    let isKeepAlive: Bool

    var headers: HTTPHeaders { fields.headers }
}
