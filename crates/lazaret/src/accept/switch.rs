//! The inbound listener's on/off switch (`lazaret smtp stop|start`): stopping closes the
//! listening sockets, so new connections are refused by the kernel, while sessions
//! already open finish their work; starting binds the same addresses again.

use crate::server::Server;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct SmtpSwitch {
    /// The addresses actually bound (port 0 resolved), rebound on start.
    addresses: Vec<SocketAddr>,
    /// Listeners bound at startup, not yet accepting.
    initial: Mutex<Vec<TcpListener>>,
    accept_loops: Mutex<Vec<JoinHandle<()>>>,
}

impl SmtpSwitch {
    pub async fn bind(configured: &[SocketAddr]) -> Result<SmtpSwitch> {
        let mut listeners = Vec::new();
        for addr in configured {
            listeners.push(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("smtp.listen: cannot listen on {addr}"))?,
            );
        }
        let addresses = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<_>>()?;
        Ok(SmtpSwitch {
            addresses,
            initial: Mutex::new(listeners),
            accept_loops: Mutex::new(Vec::new()),
        })
    }

    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    pub fn is_up(&self) -> bool {
        !self
            .accept_loops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Starts accepting; a no-op when already up.
    pub async fn start_accepting(&self, server: Arc<Server>) -> Result<()> {
        if self.is_up() {
            return Ok(());
        }
        let mut listeners: Vec<TcpListener> =
            std::mem::take(&mut *self.initial.lock().unwrap_or_else(|e| e.into_inner()));
        if listeners.is_empty() {
            for addr in &self.addresses {
                listeners.push(TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} again (is another program using the port?)")
                })?);
            }
        }
        let mut loops = self.accept_loops.lock().unwrap_or_else(|e| e.into_inner());
        for listener in listeners {
            let server = server.clone();
            loops.push(tokio::spawn(crate::net::accept_loop(
                listener,
                server.connection_gate.clone(),
                crate::net::Refusal::Smtp,
                move |stream, peer| {
                    super::session::handle(
                        server.clone(),
                        stream,
                        peer,
                        super::session::Port::Inbound,
                    )
                },
            )));
        }
        Ok(())
    }

    /// Closes the listening sockets. Returns whether it was up.
    pub fn stop(&self) -> bool {
        self.initial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let loops: Vec<_> = self
            .accept_loops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let was_up = !loops.is_empty();
        for handle in loops {
            handle.abort();
        }
        was_up
    }
}
