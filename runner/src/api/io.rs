//! `SendTimeout`: a connection whose writes fail once the peer has not taken any data for a
//! while, so a client that sends a request and then never reads the response cannot hold a
//! connection (and its slot under `max_connections`) forever.
//!
//! hyper's `header_read_timeout` covers the request head and our body timeout covers the body;
//! nothing in hyper bounds how long a response write may stay blocked on a full socket buffer.
//! The timer runs only while a write (or flush) is pending and restarts whenever one makes
//! progress, so a slow but live reader of a large response is never cut off.
//!
//! Must not: buffer or inspect the data; it only decides when a pending write has waited too long.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` with a bound on how long a write may stay pending (see the module docs).
pub(crate) struct SendTimeout<T> {
    inner: T,
    timeout: Duration,
    /// Armed while a write or flush is pending; `None` after any progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> SendTimeout<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        SendTimeout {
            inner,
            timeout,
            deadline: None,
        }
    }

    /// Called when the inner write is pending: arms the timer if needed and says whether it
    /// has run out (then the write fails with `TimedOut`).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        deadline.as_mut().poll(cx).is_ready()
    }

    fn check<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending if self.expired(cx) => {
                self.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read the response in time",
                )))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                self.deadline = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The send timeout, with tokio's paused clock.
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn test_blocked_write_times_out_and_progress_resets() {
        // A 64-byte pipe: the first write fits, the next blocks until the reader reads.
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = SendTimeout::new(a, Duration::from_secs(5));
        w.write_all(&[1; 64]).await.unwrap();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            // Reads slowly (every 3 s, under the timeout), then stops reading for good.
            let mut buf = [0; 64];
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                b.read_exact(&mut buf).await.unwrap();
            }
            b
        });
        // Progress every 3 s keeps the writer alive past 5 s in total.
        for _ in 0..3 {
            w.write_all(&[2; 64]).await.unwrap();
        }
        let _b = reader.await.unwrap();
        let err = w.write_all(&[3; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
