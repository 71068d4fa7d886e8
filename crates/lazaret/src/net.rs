//! What every listener shares: a connection that may be upgraded to TLS, and the
//! accept loop that hands each connection to its protocol's driver once the per-address
//! connection limits let it in.

use crate::connection_limits::{ConnectionGate, Refused};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// IMAP COMPRESS=DEFLATE (RFC 4978) over either of the above.
    Deflate(Box<Deflated>),
}

impl Conn {
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Deflate(d) => d.read(buf).await,
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match self {
            Conn::Plain(s) => s.write_all(data).await,
            Conn::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Deflate(d) => d.write_all(data).await,
        }
    }

    /// Whether COMPRESS is already on.
    pub fn compressed(&self) -> bool {
        matches!(self, Conn::Deflate(_))
    }

    /// STARTTLS/STLS: sends the session's go-ahead reply, then runs the handshake on
    /// the plain connection. None means the session must end.
    pub async fn start_tls(
        mut self,
        go_ahead: &[u8],
        acceptor: Option<&TlsAcceptor>,
        timeout: std::time::Duration,
    ) -> Option<Conn> {
        self.write_all(go_ahead).await.ok()?;
        let (Conn::Plain(tcp), Some(acceptor)) = (self, acceptor) else {
            return None;
        };
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Some(Conn::Tls(Box::new(tls))),
            _ => None,
        }
    }
}

/// Raw deflate (RFC 1951, no zlib header) both ways, as RFC 4978 has it: each write is
/// flushed to a byte boundary (a sync flush) so the client can read every response at
/// once.
pub struct Deflated {
    inner: Conn,
    inflate: flate2::Decompress,
    deflate: flate2::Compress,
    /// Compressed bytes read and not inflated yet.
    input: Vec<u8>,
    at: usize,
}

impl Deflated {
    pub fn new(inner: Conn) -> Deflated {
        Deflated {
            inner,
            inflate: flate2::Decompress::new(false),
            deflate: flate2::Compress::new(flate2::Compression::fast(), false),
            input: Vec::new(),
            at: 0,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bad =
            |e: flate2::DecompressError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        loop {
            if self.at < self.input.len() {
                let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
                self.inflate
                    .decompress(&self.input[self.at..], buf, flate2::FlushDecompress::Sync)
                    .map_err(bad)?;
                self.at += (self.inflate.total_in() - before_in) as usize;
                let produced = (self.inflate.total_out() - before_out) as usize;
                if produced > 0 {
                    return Ok(produced);
                }
            }
            self.input.drain(..self.at);
            self.at = 0;
            let mut chunk = [0u8; 16384];
            // Boxed: Conn::read calls this, which calls Conn::read.
            let n = Box::pin(self.inner.read(&mut chunk)).await?;
            if n == 0 {
                return Ok(0);
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut at = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(4096));
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&data[at..], &mut out, flate2::FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            at += (self.deflate.total_in() - before) as usize;
            // Done when all input is taken and the flush had room to finish.
            if at == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        Box::pin(self.inner.write_all(&out)).await
    }
}

/// How a listener turns away a connection over `[limits.connections]`: the line its
/// protocol uses for "not now" (none on implicit-TLS ports, where no plain text may be
/// sent).
#[derive(Clone, Copy)]
pub enum Refusal {
    Smtp,
    Imap,
    Pop3,
    Silent,
}

impl Refusal {
    fn line(self, why: &Refused) -> Option<String> {
        match self {
            Refusal::Smtp => Some(format!("421 4.7.0 {why}\r\n")),
            Refusal::Imap => Some(format!("* BYE [UNAVAILABLE] {why}\r\n")),
            Refusal::Pop3 => Some(format!("-ERR [SYS/TEMP] {why}\r\n")),
            Refusal::Silent => None,
        }
    }
}

/// Accepts connections until the task is aborted, spawning `handle` for each that
/// `gate` lets in; the others get `refusal`'s line and are closed.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    gate: Arc<ConnectionGate>,
    refusal: Refusal,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => match gate.admit(peer.ip()) {
                Ok(admitted) => {
                    let _ = stream.set_nodelay(true);
                    let session = handle(stream, peer);
                    tokio::spawn(async move {
                        session.await;
                        drop(admitted);
                    });
                }
                Err(why) => {
                    let line = refusal.line(&why);
                    tokio::spawn(async move {
                        if let Some(line) = line {
                            let write = stream.write_all(line.as_bytes());
                            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write)
                                .await;
                        }
                    });
                }
            },
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
