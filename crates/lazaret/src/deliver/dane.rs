//! DANE for SMTP (RFC 7672): a receiving domain that signs its zone with DNSSEC and
//! publishes TLSA records for its MX hosts gets mail only over TLS with a certificate
//! those records name — no plain-text fallback, no certificate authority needed.
//!
//! Lazaret does not validate DNSSEC itself: like Postfix it trusts the AD bit of a
//! validating resolver it talks to (`[delivery] dns_servers`, else /etc/resolv.conf),
//! which should therefore run on this machine. The general resolver cannot say whether
//! an answer was validated (hickory keeps the answer, not its header), so the few
//! questions DANE needs are asked here: one UDP query with AD set (RFC 6840 §5.7, "tell
//! me if you validated"), TCP when the answer is truncated; hickory-proto encodes and
//! decodes the messages.
//!
//! For a domain whose MX answer is validated, each MX host whose address answer is too
//! gets its `_25._tcp.HOST` TLSA records looked up: usable DANE-TA(2)/DANE-EE(3)
//! records make TLS mandatory and authenticated by them; validated records none of
//! which is usable still make TLS mandatory (§2.2); a validated "no such records" leaves
//! the host to the usual policy; a lookup that fails makes the host unusable for now
//! (§2.2: mail is not sent where an attacker may have suppressed the records).
//! Answers are kept for their TTL (at most an hour; failures 30 s).

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest an answer is kept, whatever its TTL.
const MAX_KEEP: Duration = Duration::from_secs(3600);
/// How long a failed lookup is remembered (so a dead resolver is not asked per batch).
const FAILED_KEEP: Duration = Duration::from_secs(30);
/// Time allowed for one resolver's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// UDP payload offered in EDNS (the DNS flag day 2020 value: no IP fragmentation).
const UDP_PAYLOAD: u16 = 1232;

/// One TLSA record DANE can use for SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// DANE-TA (2) or DANE-EE (3).
    pub usage: u8,
    /// Full certificate (0) or its SubjectPublicKeyInfo (1).
    pub selector: u8,
    /// The data itself (0), its SHA-256 (1) or SHA-512 (2).
    pub matching: u8,
    pub data: Vec<u8>,
}

/// What DANE asks of the connection to one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDane {
    /// Nothing: no validated TLSA records (the connector and MTA-STS decide).
    None,
    /// TLS is mandatory but not authenticated: validated TLSA records, none usable.
    Encrypt,
    /// TLS is mandatory and the server's certificate must match one of these.
    Match(Vec<Tlsa>),
    /// Do not use this host now: its TLSA lookup failed where DNSSEC says records may
    /// exist.
    Unusable(String),
}

/// An answer as DANE reads it.
#[derive(Debug, Clone)]
struct Answer {
    /// The resolver validated it (AD bit).
    secure: bool,
    rcode: ResponseCode,
    records: Vec<RData>,
}

/// Answers by name and type, each with the moment it expires.
type Cache = HashMap<(String, RecordType), (Instant, Result<Answer, String>)>;

pub struct Dane {
    servers: Vec<SocketAddr>,
    cache: Mutex<Cache>,
}

impl Dane {
    /// Asks `servers`, or the name servers of /etc/resolv.conf when there are none.
    pub fn new(servers: &[SocketAddr]) -> Result<Dane, String> {
        let servers = if servers.is_empty() {
            system_servers()?
        } else {
            servers.to_vec()
        };
        for s in &servers {
            if !s.ip().is_loopback() {
                tracing::warn!(
                    resolver = %s,
                    "DANE trusts this resolver's DNSSEC validation over the network; a validating resolver on this machine is safer"
                );
            }
        }
        Ok(Dane {
            servers,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The resolvers asked, for `status`.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Whether DANE can apply to `domain`'s MX hosts at all: its MX answer (or, without
    /// MX records, its own address) is validated.
    pub async fn domain_secure(&self, domain: &str) -> bool {
        matches!(self.ask(domain, RecordType::MX).await,
            Ok(a) if a.secure && a.rcode == ResponseCode::NoError)
    }

    /// What DANE asks of a connection to MX host `host` (on `port`, over IPv6 or not).
    pub async fn host(&self, host: &str, ipv6: bool, port: u16) -> HostDane {
        let address = if ipv6 {
            RecordType::AAAA
        } else {
            RecordType::A
        };
        match self.ask(host, address).await {
            Ok(a) if a.secure && !a.records.is_empty() => {}
            _ => return HostDane::None,
        }
        let name = format!("_{port}._tcp.{host}");
        let answer = match self.ask(&name, RecordType::TLSA).await {
            Ok(a) => a,
            Err(e) => return HostDane::Unusable(format!("TLSA lookup for {name} failed: {e}")),
        };
        match answer.rcode {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            other => return HostDane::Unusable(format!("TLSA lookup for {name} failed: {other}")),
        }
        if !answer.secure || answer.records.is_empty() {
            return HostDane::None;
        }
        let usable: Vec<Tlsa> = answer
            .records
            .iter()
            .filter_map(|r| match r {
                RData::TLSA(t) => usable(t.cert_usage, t.selector, t.matching, &t.cert_data),
                _ => None,
            })
            .collect();
        if usable.is_empty() {
            HostDane::Encrypt
        } else {
            HostDane::Match(usable)
        }
    }

    async fn ask(&self, name: &str, rtype: RecordType) -> Result<Answer, String> {
        let key = (name.trim_end_matches('.').to_ascii_lowercase(), rtype);
        if let Some((until, answer)) = self.cache().get(&key) {
            if Instant::now() < *until {
                return answer.clone();
            }
        }
        let result = self.ask_servers(&key.0, rtype).await;
        let keep = match &result {
            Ok((_, ttl)) => Duration::from_secs(u64::from(*ttl)).min(MAX_KEEP),
            Err(_) => FAILED_KEEP,
        };
        let result = result.map(|(a, _)| a);
        let mut cache = self.cache();
        if cache.len() > 10_000 {
            let now = Instant::now();
            cache.retain(|_, (until, _)| *until > now);
        }
        cache.insert(key, (Instant::now() + keep, result.clone()));
        result
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first answer any resolver gives, and how long it may be kept.
    async fn ask_servers(&self, name: &str, rtype: RecordType) -> Result<(Answer, u32), String> {
        let query = query_for(name, rtype)?;
        let mut errors = Vec::new();
        for server in &self.servers {
            match exchange(*server, &query).await {
                Ok(reply) => return read_reply(&query, reply, rtype),
                Err(e) => errors.push(format!("{server}: {e}")),
            }
        }
        Err(errors.join("; "))
    }
}

/// Checks the chain a server presented against the host's usable TLSA records: a
/// DANE-EE record matching the server's own certificate (names and dates do not
/// matter, RFC 7672 §3.1.1), or a DANE-TA record matching a certificate of the chain
/// under which the server's certificate is valid now for `host` (§3.1.2).
pub fn verify(
    chain: &[CertificateDer<'_>],
    tlsa: &[Tlsa],
    host: &str,
) -> Result<&'static str, String> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or("the server sent no certificate")?;
    if tlsa
        .iter()
        .any(|t| t.usage == 3 && matches(t, leaf).unwrap_or(false))
    {
        return Ok("DANE-EE");
    }
    let mut last_error = "no TLSA record matches the server's certificate".to_string();
    for anchor in intermediates {
        if !tlsa
            .iter()
            .any(|t| t.usage == 2 && matches(t, anchor).unwrap_or(false))
        {
            continue;
        }
        match chains_to(chain, anchor, host) {
            Ok(()) => return Ok("DANE-TA"),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// A TLSA record if DANE for SMTP can use it: DANE-TA or DANE-EE, a known selector
/// and matching type, data of the right length.
fn usable(usage: CertUsage, selector: Selector, matching: Matching, data: &[u8]) -> Option<Tlsa> {
    let usage = u8::from(usage);
    let selector = u8::from(selector);
    let matching = u8::from(matching);
    let length_ok = match matching {
        0 => !data.is_empty(),
        1 => data.len() == 32,
        2 => data.len() == 64,
        _ => false,
    };
    ((usage == 2 || usage == 3) && selector <= 1 && length_ok).then(|| Tlsa {
        usage,
        selector,
        matching,
        data: data.to_vec(),
    })
}

fn matches(t: &Tlsa, cert: &CertificateDer<'_>) -> Result<bool, String> {
    use sha2::Digest;
    let selected: Vec<u8> = match t.selector {
        0 => cert.as_ref().to_vec(),
        _ => {
            let parsed = webpki::EndEntityCert::try_from(cert)
                .map_err(|e| format!("cannot read the certificate: {e}"))?;
            parsed.subject_public_key_info().as_ref().to_vec()
        }
    };
    Ok(match t.matching {
        0 => selected == t.data,
        1 => sha2::Sha256::digest(&selected).as_slice() == t.data,
        _ => sha2::Sha512::digest(&selected).as_slice() == t.data,
    })
}

/// Whether the server's certificate is valid now for `host` under `anchor` as the only
/// trust anchor.
fn chains_to(
    chain: &[CertificateDer<'_>],
    anchor: &CertificateDer<'_>,
    host: &str,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(anchor.clone().into_owned()).map_err(|e| {
        format!("the certificate the TLSA record names is not a usable anchor: {e}")
    })?;
    let verifier = super::certificates::verifier_for(roots.into())?;
    super::certificates::verify_chain(&verifier, chain, host)
        .map_err(|e| format!("{e} (under the DANE-TA anchor)"))
}

fn query_for(name: &str, rtype: RecordType) -> Result<Message, String> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let name = Name::from_ascii(&fqdn).map_err(|e| format!("{fqdn:?}: {e}"))?;
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    message.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    message.set_edns(edns);
    Ok(message)
}

fn read_reply(query: &Message, reply: Message, rtype: RecordType) -> Result<(Answer, u32), String> {
    if reply.metadata.id != query.metadata.id
        || reply.metadata.message_type != MessageType::Response
        || reply.queries != query.queries
    {
        return Err("an answer to another question".into());
    }
    let records: Vec<&hickory_resolver::proto::rr::Record> = reply
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .collect();
    // Negative answers are kept for five minutes (the SOA's minimum is not worth a
    // parse here); positive ones for their smallest TTL.
    let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(300);
    Ok((
        Answer {
            secure: reply.metadata.authentic_data,
            rcode: reply.metadata.response_code,
            records: records.into_iter().map(|r| r.data.clone()).collect(),
        },
        ttl,
    ))
}

/// One question to one resolver: UDP, then TCP if the answer did not fit.
async fn exchange(server: SocketAddr, query: &Message) -> Result<Message, String> {
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let reply = tokio::time::timeout(QUERY_TIMEOUT, async {
        let local: SocketAddr = if server.is_ipv6() {
            "[::]:0".parse().expect("address")
        } else {
            "0.0.0.0:0".parse().expect("address")
        };
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(&bytes).await?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = socket.recv(&mut buf).await?;
            // A stray datagram with another id is not our answer: keep waiting.
            if n >= 2 && buf[..2] == bytes[..2] {
                return Ok::<_, std::io::Error>(buf[..n].to_vec());
            }
        }
    })
    .await
    .map_err(|_| "no answer (timed out)".to_string())?
    .map_err(|e| e.to_string())?;
    let reply = Message::from_vec(&reply).map_err(|e| format!("unreadable answer: {e}"))?;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    tokio::time::timeout(QUERY_TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(server).await?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        let length = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(length)];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
    .await
    .map_err(|_| "no answer over TCP (timed out)".to_string())?
    .map_err(|e| format!("over TCP: {e}"))
    .and_then(|b| Message::from_vec(&b).map_err(|e| format!("unreadable answer: {e}")))
}

/// The name servers of /etc/resolv.conf.
fn system_servers() -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        return Err("no nameserver in /etc/resolv.conf".into());
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dane_ta_and_ee_with_known_fields_are_usable() {
        let sha = [7u8; 32];
        assert!(usable(CertUsage::DaneEe, Selector::Spki, Matching::Sha256, &sha).is_some());
        assert!(usable(CertUsage::DaneTa, Selector::Full, Matching::Sha256, &sha).is_some());
        assert!(usable(CertUsage::PkixEe, Selector::Spki, Matching::Sha256, &sha).is_none());
        assert!(usable(CertUsage::PkixTa, Selector::Full, Matching::Sha256, &sha).is_none());
        assert!(
            usable(CertUsage::DaneEe, Selector::Spki, Matching::Sha512, &sha).is_none(),
            "wrong length"
        );
        assert!(usable(
            CertUsage::DaneEe,
            Selector::Unassigned(9),
            Matching::Sha256,
            &sha
        )
        .is_none());
    }

    #[test]
    fn dane_ee_matches_the_certificate_or_its_key() {
        use sha2::Digest;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mx.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let by_key = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: sha2::Sha256::digest(&spki).to_vec(),
        };
        assert_eq!(
            verify(
                std::slice::from_ref(&der),
                std::slice::from_ref(&by_key),
                "any.name"
            ),
            Ok("DANE-EE")
        );
        let whole = Tlsa {
            usage: 3,
            selector: 0,
            matching: 2,
            data: sha2::Sha512::digest(der.as_ref()).to_vec(),
        };
        assert_eq!(
            verify(std::slice::from_ref(&der), &[whole], "any.name"),
            Ok("DANE-EE")
        );
        let other = Tlsa {
            data: vec![0; 32],
            ..by_key
        };
        assert!(verify(&[der], &[other], "mx.example").is_err());
    }

    #[test]
    fn queries_ask_for_validation_and_replies_must_match_them() {
        let q = query_for("_25._tcp.mx.example", RecordType::TLSA).unwrap();
        assert!(q.metadata.authentic_data && q.metadata.recursion_desired);
        let mut reply = q.clone();
        reply.metadata.message_type = MessageType::Response;
        reply.metadata.authentic_data = true;
        let (a, _) = read_reply(&q, reply.clone(), RecordType::TLSA).unwrap();
        assert!(a.secure && a.records.is_empty());
        reply.metadata.id = reply.metadata.id.wrapping_add(1);
        assert!(read_reply(&q, reply, RecordType::TLSA).is_err());
    }
}
