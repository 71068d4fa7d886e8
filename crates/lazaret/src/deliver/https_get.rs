//! One HTTPS GET for a small document (an MTA-STS policy): the host resolved through
//! delivery's resolver (`[delivery] dns_servers` when set), port 443, a certificate
//! valid for the host under the trusted roots, HTTP/1.1 through hyper, no redirects
//! (RFC 8461 §3.3 forbids following them), the body capped.

use crate::deliver::certificates::Certificates;
use hickory_resolver::TokioResolver;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

const PORT: u16 = 443;

pub async fn get(
    host: &str,
    path: &str,
    resolver: &TokioResolver,
    certificates: &Certificates,
    max_bytes: usize,
) -> Result<Vec<u8>, String> {
    let url = format!("https://{host}{path}");
    let addresses: Vec<SocketAddr> = resolver
        .lookup_ip(format!("{host}."))
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .iter()
        .map(|ip| SocketAddr::new(ip, PORT))
        .collect();
    let mut last_error = format!("{url}: no address");
    let mut tcp = None;
    for addr in addresses {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_error = format!("{url}: {addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(last_error)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{url}: {e}"))?;
    let tls = certificates
        .https()?
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{url}: TLS: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "Lazaret")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != hyper::StatusCode::OK {
        driver.abort();
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| format!("{url}: body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(body.to_vec())
}
