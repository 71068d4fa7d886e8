//! A client for clamd, the ClamAV daemon: `INSTREAM` scans, `VERSION` for status.
//! Written here because the protocol is three commands of a few bytes and the crates
//! for it are thin wrappers with async runtimes of their own; blocking I/O with
//! timeouts, called from a worker thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl std::str::FromStr for Address {
    type Err = String;

    /// `unix:/run/clamav/clamd.ctl` or `tcp:127.0.0.1:3310`.
    fn from_str(s: &str) -> Result<Address, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/clamav/clamd.ctl".into());
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            if !addr.contains(':') {
                return Err("tcp: needs HOST:PORT, e.g. tcp:127.0.0.1:3310".into());
            }
            Ok(Address::Tcp(addr.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a clamd address: use unix:/path/to/clamd.ctl or tcp:HOST:PORT"
            ))
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("cannot reach clamd at {address}: {source}")]
    Unreachable {
        address: String,
        source: std::io::Error,
    },
    #[error("clamd at {address}: {message}")]
    Failed { address: String, message: String },
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Bytes sent per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Clamd {
    pub address: Address,
    pub timeout: Duration,
}

impl Clamd {
    pub fn new(address: Address) -> Clamd {
        Clamd {
            address,
            timeout: Duration::from_secs(60),
        }
    }

    fn connect(&self) -> Result<Box<dyn Stream>, ClamdError> {
        let unreachable = |source| ClamdError::Unreachable {
            address: self.address.to_string(),
            source,
        };
        Ok(match &self.address {
            Address::Unix(path) => {
                let s = UnixStream::connect(path).map_err(unreachable)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                Box::new(s)
            }
            Address::Tcp(addr) => {
                let s = TcpStream::connect(addr).map_err(unreachable)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                Box::new(s)
            }
        })
    }

    fn failed(&self, message: impl Into<String>) -> ClamdError {
        ClamdError::Failed {
            address: self.address.to_string(),
            message: message.into(),
        }
    }

    /// Sends a command (`z` form: NUL-terminated) and reads the NUL-terminated reply.
    fn exchange(
        &self,
        send: &mut dyn FnMut(&mut dyn Stream) -> std::io::Result<()>,
    ) -> Result<String, ClamdError> {
        let mut s = self.connect()?;
        let io = |e: std::io::Error| self.failed(e.to_string());
        send(&mut s).map_err(io)?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).map_err(io)?;
        let text = String::from_utf8_lossy(&reply);
        Ok(text.trim_end_matches(['\0', '\n']).to_string())
    }

    /// The daemon's version line, e.g. `ClamAV 1.4.3/27000/...`.
    pub fn version(&self) -> Result<String, ClamdError> {
        // A status check: answer soon or count as down.
        let quick = Clamd {
            address: self.address.clone(),
            timeout: self.timeout.min(Duration::from_secs(5)),
        };
        quick.exchange(&mut |s| s.write_all(b"zVERSION\0"))
    }

    /// Scans bytes; Ok(None) when clean, Ok(Some(name)) when clamd found something.
    pub fn scan(&self, data: &[u8]) -> Result<Option<String>, ClamdError> {
        let reply = self.exchange(&mut |s| {
            s.write_all(b"zINSTREAM\0")?;
            for chunk in data.chunks(CHUNK) {
                s.write_all(&(chunk.len() as u32).to_be_bytes())?;
                s.write_all(chunk)?;
            }
            s.write_all(&[0, 0, 0, 0])?;
            s.flush()
        })?;
        // "stream: OK", "stream: NAME FOUND", "...  ERROR".
        let body = reply.strip_prefix("stream: ").unwrap_or(&reply);
        if body == "OK" {
            Ok(None)
        } else if let Some(name) = body.strip_suffix(" FOUND") {
            Ok(Some(name.to_string()))
        } else {
            Err(self.failed(if body.is_empty() {
                "closed the connection without an answer".to_string()
            } else {
                body.to_string()
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "unix:/run/c.ctl".parse::<Address>().unwrap(),
            Address::Unix("/run/c.ctl".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:3310".parse::<Address>().unwrap().to_string(),
            "tcp:127.0.0.1:3310"
        );
        assert!("clamd.sock".parse::<Address>().is_err());
        assert!("tcp:localhost".parse::<Address>().is_err());
    }

    #[test]
    fn unreachable_says_where() {
        let c = Clamd::new(Address::Unix("/nonexistent/clamd.ctl".into()));
        let e = c.scan(b"x").unwrap_err().to_string();
        assert!(
            e.contains("cannot reach clamd at unix:/nonexistent/clamd.ctl"),
            "{e}"
        );
    }
}
