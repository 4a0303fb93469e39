import NIOCore
import NIOHTTP1

/// Writes message heads as the proxy sends them. Names and values come from
/// `HTTP1Parser` (checked) or from the agent itself, so they hold no CR or LF.
enum HTTP1Writer {
    static func write(_ head: HTTPRequestHead, into buffer: inout ByteBuffer) {
        buffer.writeString(head.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(head.uri)
        buffer.writeStaticString(head.version.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
        write(head.headers, into: &buffer)
    }

    static func write(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(head.version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(head.status.code))
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(head.status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        write(head.headers, into: &buffer)
    }

    private static func write(_ headers: HTTPHeaders, into buffer: inout ByteBuffer) {
        for (name, value) in headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }
}
