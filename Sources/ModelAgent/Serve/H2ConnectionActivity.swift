import NIOCore
import NIOHTTP2

/// One h2c client connection as the connection guard and the drain see it: busy while any
/// stream is open (busy connections are never evicted); closed, after a GOAWAY naming the
/// last stream it took, once it has had no stream for the idle timeout (before its first
/// stream: by the header deadline). While the port drains, the first answer sent on it
/// carries a GOAWAY too, so the client opens new streams elsewhere, as HTTP/1.1 clients are
/// told by `Connection: close`.
final class H2ConnectionActivity: NIOHTTP2StreamDelegate {
    private struct State {
        var open = 0
        var lastStream = HTTP2StreamID(0)
        var timer: Scheduled<Void>?
        var wentAway = false
    }

    private let channel: any Channel
    private let connections: ConnectionGuard
    private let slot: ConnectionGuard.Slot
    private let state: NIOLoopBoundBox<State>

    init(
        channel: any Channel, connections: ConnectionGuard, slot: ConnectionGuard.Slot,
        firstStreamBy deadline: NIODeadline
    ) {
        self.slot = slot
        self.channel = channel
        self.connections = connections
        state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: channel.eventLoop)
        state.value.timer = channel.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            closeIdle()
        }
    }

    func streamCreated(_ id: HTTP2StreamID, channel _: any Channel) {
        state.value.open += 1
        state.value.lastStream = max(state.value.lastStream, id)
        if state.value.open == 1 {
            state.value.timer?.cancel()
            state.value.timer = nil
            slot.markBusy(true)
        }
    }

    func streamClosed(_ id: HTTP2StreamID, channel _: any Channel) {
        state.value.open -= 1
        guard state.value.open == 0 else { return }
        slot.markBusy(false)
        guard channel.isActive else { return }
        let wait = connections.limits.idleTimeout ?? connections.limits.headerTimeout
        state.value.timer = channel.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(wait.nanoseconds)) {
            [self] in
            closeIdle()
        }
    }

    /// Tells the client to open no more streams here (those it opened still run).
    @discardableResult
    func goAway() -> EventLoopFuture<Void> {
        guard !state.value.wentAway, channel.isActive else { return channel.eventLoop.makeSucceededVoidFuture() }
        state.value.wentAway = true
        let frame = HTTP2Frame(
            streamID: .rootStream,
            payload: .goAway(lastStreamID: state.value.lastStream, errorCode: .noError, opaqueData: nil))
        return channel.writeAndFlush(frame)
    }

    /// The GOAWAY names the last stream taken, so a client whose new stream crossed it knows
    /// that stream was not processed and may send it again elsewhere.
    /// A client that stops reading holds back the GOAWAY's write: the close comes a second
    /// later at most.
    private func closeIdle() {
        let channel = self.channel
        let late = channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        goAway().whenComplete { _ in
            late.cancel()
            channel.close(promise: nil)
        }
    }
}
