//! The SMTP client of outbound delivery: EHLO, opportunistic STARTTLS, PIPELINING,
//! several recipients per transaction and RSET between messages so one connection
//! carries many. Replies are parsed by smtp-proto's `ResponseReceiver`; commands are a
//! line each and written here.

use smtp_proto::response::parser::ResponseReceiver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A reply of the remote server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`, if the server gave one.
    pub status: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.status {
            Some(status) => write!(
                f,
                "{} {status} {}",
                self.code,
                self.text.replace('\n', " / ")
            ),
            None => write!(f, "{} {}", self.code, self.text.replace('\n', " / ")),
        }
    }
}

/// Why a connection could not carry mail. All of these defer the messages involved:
/// even a 5xx greeting says nothing about the recipients, and another MX host or a
/// later attempt may take them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("{0}: timed out")]
    Timeout(&'static str),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("{stage} refused: {reply}")]
    Refused { stage: &'static str, reply: Reply },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
}

impl ClientError {
    /// The STARTTLS handshake itself failed (the server offered TLS it cannot do).
    pub fn is_tls_handshake(&self) -> bool {
        matches!(
            self,
            ClientError::Tls(_) | ClientError::Timeout("TLS handshake")
        )
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Default, Clone, Copy)]
struct Extensions {
    pipelining: bool,
    starttls: bool,
    eight_bit: bool,
    size: Option<u64>,
}

pub struct Client {
    stream: Stream,
    /// Bytes read but not yet parsed.
    pending: Vec<u8>,
    receiver: ResponseReceiver,
    ext: Extensions,
    timeout: Duration,
    pub tls: bool,
}

/// What the server said to one message's transaction.
#[derive(Debug)]
pub struct SendReport {
    /// Each recipient with the reply that decided it (RCPT's if refused, else DATA's).
    pub rcpts: Vec<(String, Reply)>,
}

pub struct ConnectOptions<'a> {
    pub helo: &'a str,
    pub tls: Option<&'a TlsConnector>,
    /// Name to present in SNI; an IP literal when the next hop has no name.
    pub server_name: &'a str,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl Client {
    /// Connects, reads the greeting, says EHLO (HELO if refused), and upgrades to TLS
    /// when the server offers STARTTLS and `tls` is given.
    pub async fn connect(
        addr: SocketAddr,
        opts: &ConnectOptions<'_>,
    ) -> Result<Client, ClientError> {
        let tcp = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("connect"))?
            .map_err(|e| ClientError::Connect(addr, e))?;
        let _ = tcp.set_nodelay(true);
        let mut client = Client {
            stream: Stream::Plain(tcp),
            pending: Vec::new(),
            receiver: ResponseReceiver::default(),
            ext: Extensions::default(),
            timeout: opts.command_timeout,
            tls: false,
        };
        let greeting = client.reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused {
                stage: "greeting",
                reply: greeting,
            });
        }
        client.hello(opts.helo).await?;
        if let (true, Some(connector)) = (client.ext.starttls, opts.tls) {
            client.write(b"STARTTLS\r\n").await?;
            let reply = client.reply().await?;
            if reply.code == 220 {
                client = client.upgrade(connector, opts.server_name).await?;
                client.hello(opts.helo).await?;
            }
        }
        Ok(client)
    }

    /// The certificate chain the server sent in the TLS handshake (none in plain text).
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match &self.stream {
            Stream::Tls(tls) => tls.get_ref().1.peer_certificates(),
            Stream::Plain(_) => None,
        }
    }

    async fn upgrade(self, connector: &TlsConnector, name: &str) -> Result<Client, ClientError> {
        let Stream::Plain(tcp) = self.stream else {
            return Ok(self);
        };
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| ClientError::Protocol(format!("bad TLS server name {name:?}: {e}")))?;
        let tls = tokio::time::timeout(self.timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("TLS handshake"))?
            .map_err(ClientError::Tls)?;
        Ok(Client {
            stream: Stream::Tls(Box::new(tls)),
            pending: Vec::new(),
            receiver: ResponseReceiver::default(),
            ext: Extensions::default(),
            timeout: self.timeout,
            tls: true,
        })
    }

    async fn hello(&mut self, helo: &str) -> Result<(), ClientError> {
        self.write(format!("EHLO {helo}\r\n").as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.code == 250 {
            self.ext = parse_extensions(&reply.text);
            return Ok(());
        }
        self.write(format!("HELO {helo}\r\n").as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.code != 250 {
            return Err(ClientError::Refused {
                stage: "HELO",
                reply,
            });
        }
        self.ext = Extensions::default();
        Ok(())
    }

    /// Sends one message to `rcpts`. A connection problem is an error; what the server
    /// refused is in the report, per recipient.
    pub async fn send(
        &mut self,
        from: &str,
        rcpts: &[String],
        data: &[u8],
    ) -> Result<SendReport, ClientError> {
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", data.len()));
        }
        if self.ext.eight_bit && data.iter().any(|b| *b >= 0x80) {
            mail.push_str(" BODY=8BITMIME");
        }
        mail.push_str("\r\n");
        let rcpt_lines: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();

        let (mail_reply, rcpt_replies, data_reply) = if self.ext.pipelining {
            let mut batch = mail.into_bytes();
            for line in &rcpt_lines {
                batch.extend_from_slice(line.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.write(&batch).await?;
            let mail_reply = self.reply().await?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                rcpt_replies.push(self.reply().await?);
            }
            (mail_reply, rcpt_replies, Some(self.reply().await?))
        } else {
            self.write(mail.as_bytes()).await?;
            let mail_reply = self.reply().await?;
            let mut rcpt_replies = Vec::new();
            if mail_reply.is_positive() {
                for line in &rcpt_lines {
                    self.write(line.as_bytes()).await?;
                    rcpt_replies.push(self.reply().await?);
                }
            }
            let data_reply = if rcpt_replies.iter().any(Reply::is_positive) {
                self.write(b"DATA\r\n").await?;
                Some(self.reply().await?)
            } else {
                None
            };
            (mail_reply, rcpt_replies, data_reply)
        };

        if !mail_reply.is_positive() {
            if data_reply.as_ref().is_some_and(|r| r.code == 354) {
                // A pipelined DATA the server took anyway: end it empty, then reset.
                self.write(b".\r\n").await?;
                self.reply().await?;
            }
            self.reset().await?;
            return Ok(SendReport {
                rcpts: rcpts
                    .iter()
                    .map(|r| (r.clone(), mail_reply.clone()))
                    .collect(),
            });
        }
        let accepted = rcpt_replies.iter().filter(|r| r.is_positive()).count();
        let final_reply = match data_reply {
            Some(r) if r.code == 354 && accepted > 0 => {
                self.write(&dot_stuff(data)).await?;
                self.reply().await?
            }
            Some(r) if r.code == 354 => {
                self.write(b".\r\n").await?;
                self.reply().await?;
                r
            }
            Some(r) => r,
            None => Reply {
                code: 554,
                status: None,
                text: "no valid recipients".into(),
            },
        };
        let report = SendReport {
            rcpts: rcpts
                .iter()
                .zip(rcpt_replies)
                .map(|(r, reply)| {
                    let decided = if reply.is_positive() {
                        final_reply.clone()
                    } else {
                        reply
                    };
                    (r.clone(), decided)
                })
                .collect(),
        };
        if !final_reply.is_positive() || accepted < rcpts.len() {
            // Leave the session clean for the next message on this connection.
            self.reset().await?;
        }
        Ok(report)
    }

    pub async fn reset(&mut self) -> Result<(), ClientError> {
        self.write(b"RSET\r\n").await?;
        let reply = self.reply().await?;
        if reply.code != 250 {
            return Err(ClientError::Refused {
                stage: "RSET",
                reply,
            });
        }
        Ok(())
    }

    pub async fn quit(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reply()).await;
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let io = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(data).await,
                Stream::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
            }
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| ClientError::Timeout("write"))?
            .map_err(ClientError::Io)
    }

    /// Reads one (possibly multi-line) reply.
    async fn reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            if !self.pending.is_empty() {
                let mut iter = self.pending.iter();
                let parsed = self.receiver.parse(&mut iter);
                let consumed = self.pending.len() - iter.len();
                self.pending.drain(..consumed);
                match parsed {
                    Ok(r) => {
                        self.receiver.reset();
                        let [class, subject, detail] = r.esc;
                        return Ok(Reply {
                            code: r.code,
                            status: (class != 0).then(|| format!("{class}.{subject}.{detail}")),
                            text: r.message,
                        });
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(e) => {
                        return Err(ClientError::Protocol(format!("unreadable reply: {e:?}")))
                    }
                }
            }
            let mut buf = [0u8; 4096];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut buf).await,
                    Stream::Tls(s) => s.read(&mut buf).await,
                }
            };
            let n = tokio::time::timeout(self.timeout, read)
                .await
                .map_err(|_| ClientError::Timeout("reply"))??;
            if n == 0 {
                return Err(ClientError::Protocol(
                    "connection closed by the server".into(),
                ));
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

fn parse_extensions(text: &str) -> Extensions {
    let mut ext = Extensions::default();
    // The first line is the server's name; each further line one extension.
    for line in text.lines().skip(1) {
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        match keyword.as_str() {
            "PIPELINING" => ext.pipelining = true,
            "STARTTLS" => ext.starttls = true,
            "8BITMIME" => ext.eight_bit = true,
            "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
            _ => {}
        }
    }
    ext
}

/// The message as DATA sends it: lines starting with '.' doubled, bare LF turned into
/// CRLF, a CRLF at the end, then the terminating ".\r\n".
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 5);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// TLS for opportunistic STARTTLS (RFC 7435): any certificate is accepted, because
/// the alternative the protocol leaves is sending in plain text. The handshake still
/// checks the server's signature over the exchange with its presented key.
pub fn opportunistic_tls() -> TlsConnector {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_line_ends() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x\nend"), b"..x\r\nend\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
    }

    #[test]
    fn extensions_from_ehlo_text() {
        let e = parse_extensions("mx.example\nPIPELINING\nSIZE 1000\nSTARTTLS\n8BITMIME");
        assert!(e.pipelining && e.starttls && e.eight_bit);
        assert_eq!(e.size, Some(1000));
        assert!(!parse_extensions("mx.example").pipelining);
    }
}
