//! What every listener shares: a connection that may be upgraded to TLS, and the
//! accept loop that hands each connection to its protocol's driver.

use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
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
        }
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

/// Accepts connections until the task is aborted, spawning `handle` for each.
pub async fn accept_loop<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
