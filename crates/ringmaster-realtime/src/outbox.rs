//! A WebSocket's byte stream, shared by its connection task and by publishers.
//!
//! A publisher writes an already-encoded frame straight into the kernel's socket buffer from
//! its own thread, so fanning one event out to N sockets costs N `write(2)` calls and no task
//! wake-ups (the per-socket queue and task hop were where fan-out time went). Only what the
//! kernel does not take at once waits here, for the connection task to write when the socket
//! turns writable. Every write, the connection task's own included, goes through the same
//! queue, so frames never interleave and keep their order.

use crate::protocol::ProtocolError;
use bytes::{Buf as _, Bytes};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The byte stream under a WebSocket (an upgraded HTTP connection).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// What became of a frame handed to [`Outbox::publish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Published {
    /// Written, or queued behind earlier bytes.
    Sent,
    /// The socket already has its maximum of frames waiting: it has been told to close as a
    /// slow consumer.
    Evicted,
    /// The connection is closing or broken; nothing was written.
    Gone,
}

/// Why the connection task must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Close with this Pusher error (after writing what is queued).
    Close(ProtocolError),
    /// A write failed: the peer is gone.
    Broken,
}

struct State {
    io: Box<dyn Transport>,
    /// Bytes the kernel has not taken yet, in order.
    queued: VecDeque<Bytes>,
    /// Once set, publishers' frames are refused.
    order: Option<Order>,
}

/// One socket's write side (and, for the connection task, its read side).
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the connection task: bytes were queued or an order was given.
    wake: Notify,
    /// Publisher frames that may wait here before the socket counts as a slow consumer.
    limit: usize,
}

impl Outbox {
    /// Wraps an upgraded connection; `limit` is the slow-consumer threshold in frames.
    pub(crate) fn new(io: impl Transport + 'static, limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                io: Box::new(io),
                queued: VecDeque::new(),
                order: None,
            }),
            wake: Notify::new(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes an encoded frame from a publisher's thread without waiting: what the kernel does
    /// not take is queued for the connection task, up to the slow-consumer limit.
    pub(crate) fn publish(&self, frame: &Bytes) -> Published {
        let mut state = self.lock();
        if state.order.is_some() {
            return Published::Gone;
        }
        if state.queued.len() >= self.limit {
            state.order = Some(Order::Close(ProtocolError::SlowConsumer));
            drop(state);
            self.wake.notify_one();
            return Published::Evicted;
        }
        let was_idle = state.queued.is_empty();
        write_or_queue(&mut state, frame);
        let broken = state.order == Some(Order::Broken);
        let queued = !state.queued.is_empty();
        drop(state);
        // The connection task writes out the queue from the moment it starts.
        if broken || (was_idle && queued) {
            self.wake.notify_one();
        }
        if broken {
            Published::Gone
        } else {
            Published::Sent
        }
    }

    /// Writes (or queues) one of the connection's own frames, regardless of orders and of the
    /// slow-consumer limit; the connection task then awaits [`Outbox::poll_drain`].
    pub(crate) fn write_own(&self, frame: &Bytes) {
        write_or_queue(&mut self.lock(), frame);
    }

    /// Tells the connection task to close with `error` once what is queued is written;
    /// publishers' frames are refused from now on. The first order wins.
    pub(crate) fn order_close(&self, error: ProtocolError) {
        let mut state = self.lock();
        if state.order.is_none() {
            state.order = Some(Order::Close(error));
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The order given to the connection, if any.
    pub(crate) fn order(&self) -> Option<Order> {
        self.lock().order
    }

    /// Resolves when bytes were queued or an order was given since the last call.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Writes out what is queued; `Pending` until the kernel took all of it.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        drain(&mut state, cx)
    }

    /// Whether bytes are waiting for the socket to turn writable.
    pub(crate) fn has_queued(&self) -> bool {
        !self.lock().queued.is_empty()
    }
}

/// Writes `frame` now if nothing is queued ahead of it, and queues whatever the kernel did not
/// take. A failed write marks the connection broken.
fn write_or_queue(state: &mut State, frame: &Bytes) {
    if !state.queued.is_empty() {
        state.queued.push_back(frame.clone());
        return;
    }
    // A no-op waker is enough: whenever this leaves bytes queued, the connection task is woken
    // (or is the caller) and polls the write with its own waker. It never waits on the socket
    // while the queue is empty, so this poll cannot displace its registration.
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut state.io).poll_write(&mut cx, frame) {
        Poll::Ready(Ok(n)) if n == frame.len() => {}
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => state.order = Some(Order::Broken),
        Poll::Ready(Ok(n)) => state.queued.push_back(frame.slice(n..)),
        Poll::Pending => state.queued.push_back(frame.clone()),
    }
}

fn drain(state: &mut State, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while let Some(front) = state.queued.front_mut() {
        match Pin::new(&mut state.io).poll_write(cx, front) {
            Poll::Ready(Ok(0)) => {
                state.order = Some(Order::Broken);
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            Poll::Ready(Ok(n)) if n == front.len() => {
                state.queued.pop_front();
            }
            Poll::Ready(Ok(n)) => front.advance(n),
            Poll::Ready(Err(e)) => {
                state.order = Some(Order::Broken);
                return Poll::Ready(Err(e));
            }
            Poll::Pending => return Poll::Pending,
        }
    }
    // Release the deque's buffer: an idle socket should hold none.
    state.queued = VecDeque::new();
    Pin::new(&mut state.io).poll_flush(cx)
}

/// The byte stream as tungstenite sees it: reads come from the socket, writes join the
/// outbox's queue (accepted whole, so a frame is never split by a publisher's frame).
pub(crate) struct Wire(pub(crate) std::sync::Arc<Outbox>);

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.lock().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.0.lock();
        if state.queued.is_empty() {
            match Pin::new(&mut state.io).poll_write(cx, buf) {
                Poll::Ready(Ok(n)) if n == buf.len() => return Poll::Ready(Ok(n)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    state.queued.push_back(Bytes::copy_from_slice(&buf[n..]));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => state.queued.push_back(Bytes::copy_from_slice(buf)),
            }
        } else {
            state.queued.push_back(Bytes::copy_from_slice(buf));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        drain(&mut self.0.lock(), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.0.lock();
        std::task::ready!(drain(&mut state, cx))?;
        Pin::new(&mut state.io).poll_shutdown(cx)
    }
}

/// A server-to-client text frame (unmasked, so the same bytes serve every recipient).
pub(crate) fn text_frame(payload: &str) -> Bytes {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    header
        .format(len, &mut out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload.as_bytes());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt as _;

    #[test]
    fn text_frames_are_unmasked_with_the_shortest_length() {
        assert_eq!(&text_frame("hi")[..], b"\x81\x02hi");
        let long = "x".repeat(300);
        let frame = text_frame(&long);
        assert_eq!(&frame[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(frame.len(), 304);
    }

    #[tokio::test]
    async fn frames_beyond_the_kernel_wait_in_order_and_a_full_queue_evicts() {
        // A 64-byte pipe stands in for a socket whose peer stopped reading.
        let (near, mut far) = tokio::io::duplex(64);
        let outbox = Arc::new(Outbox::new(near, 2));
        let frame = Bytes::from(vec![b'a'; 40]);
        let other = Bytes::from(vec![b'b'; 40]);
        assert_eq!(outbox.publish(&frame), Published::Sent);
        assert_eq!(outbox.publish(&other), Published::Sent);
        assert!(outbox.has_queued());
        assert_eq!(outbox.publish(&other), Published::Sent);
        assert_eq!(outbox.publish(&other), Published::Evicted);
        assert_eq!(
            outbox.order(),
            Some(Order::Close(ProtocolError::SlowConsumer))
        );
        assert_eq!(outbox.publish(&other), Published::Gone);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.map(|_| all)
        });
        std::future::poll_fn(|cx| outbox.poll_drain(cx))
            .await
            .unwrap();
        drop(outbox);
        let all = reader.await.unwrap().unwrap();
        let mut expected = vec![b'a'; 40];
        expected.extend(vec![b'b'; 80]);
        assert_eq!(all, expected);
    }
}
