//! From a remote queue to the servers to try: the connector that owns the queue, then
//! its smarthost, or the destination domain's MX hosts (a static map from the config
//! first, then DNS through hickory-resolver, falling back to the domain's own address
//! when it has no MX, as RFC 5321 §5.1 says).

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use lazaret_core::config::{ConnectorConfig, REMOTE_QUEUE_PREFIX, SMARTHOST_QUEUE_PREFIX};
use std::net::SocketAddr;

/// Where a queue's mail goes.
#[derive(Debug, Clone)]
pub struct Route {
    pub connector: ConnectorConfig,
    pub target: Target,
}

#[derive(Debug, Clone)]
pub enum Target {
    /// `host:port` of a smarthost.
    Smarthost(String),
    /// A domain delivered to its MX hosts.
    Mx(String),
}

/// A host to connect to, with the name to present for TLS.
#[derive(Debug, Clone)]
pub struct Host {
    pub addr: SocketAddr,
    pub name: String,
    /// How the connection differs from the usual (`without TLS: …`), for the log.
    pub note: Option<String>,
}

/// Why there is nowhere to send: permanent problems fail the recipients at once.
#[derive(Debug, Clone)]
pub struct NoRoute {
    pub permanent: bool,
    pub status: &'static str,
    pub reason: String,
}

/// The route of a remote queue under the connectors configured now.
pub fn route_of(queue: &str, connectors: &[ConnectorConfig]) -> Result<Route, NoRoute> {
    if let Some(name) = queue.strip_prefix(SMARTHOST_QUEUE_PREFIX) {
        let connector = connectors
            .iter()
            .find(|c| c.name == name && c.smarthost.is_some())
            .ok_or_else(|| NoRoute {
                // The config lost this connector: keep the mail for the admin.
                permanent: false,
                status: "4.4.0",
                reason: format!("no smarthost connector named {name:?} in the configuration"),
            })?;
        let host = connector.smarthost.clone().unwrap_or_default();
        return Ok(Route {
            connector: connector.clone(),
            target: Target::Smarthost(host),
        });
    }
    let domain = queue.strip_prefix(REMOTE_QUEUE_PREFIX).unwrap_or(queue);
    let connector = connectors
        .iter()
        .find(|c| c.matches(domain))
        .ok_or_else(|| NoRoute {
            permanent: true,
            status: "5.4.4",
            reason: format!("no connector routes mail for {domain}"),
        })?;
    let target = match &connector.smarthost {
        Some(host) => Target::Smarthost(host.clone()),
        None => Target::Mx(domain.to_string()),
    };
    Ok(Route {
        connector: connector.clone(),
        target,
    })
}

async fn lookup(host_port: &str, name: &str) -> Result<Vec<Host>, std::io::Error> {
    Ok(tokio::net::lookup_host(host_port)
        .await?
        .map(|addr| Host {
            addr,
            name: name.to_string(),
            note: None,
        })
        .collect())
}

fn host_of(host_port: &str) -> &str {
    host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']')
}

/// The hosts to try for a target, best first.
pub async fn resolve(
    target: &Target,
    static_mx: &std::collections::BTreeMap<String, String>,
    resolver: Option<&TokioResolver>,
) -> Result<Vec<Host>, NoRoute> {
    let temporary = |reason: String| NoRoute {
        permanent: false,
        status: "4.4.3",
        reason,
    };
    match target {
        Target::Smarthost(host_port) => lookup(host_port, host_of(host_port))
            .await
            .map_err(|e| temporary(format!("cannot resolve smarthost {host_port}: {e}"))),
        Target::Mx(domain) => {
            if let Some(fixed) = static_mx.get(domain) {
                let mut hosts = Vec::new();
                for hp in fixed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    hosts.extend(lookup(hp, host_of(hp)).await.unwrap_or_default());
                }
                return Ok(hosts);
            }
            let resolver = resolver.ok_or_else(|| {
                temporary("no DNS resolver could be set up (the log at start says why)".into())
            })?;
            let exchanges = match resolver.mx_lookup(format!("{domain}.")).await {
                Ok(answer) => {
                    let mut mx: Vec<(u16, String)> = answer
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::MX(mx) => Some((
                                mx.preference,
                                mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                            )),
                            _ => None,
                        })
                        .collect();
                    mx.sort();
                    mx.into_iter().map(|(_, h)| h).collect::<Vec<_>>()
                }
                Err(e) if e.is_nx_domain() => {
                    return Err(NoRoute {
                        permanent: true,
                        status: "5.1.2",
                        reason: format!("domain {domain} does not exist"),
                    })
                }
                Err(e) if e.is_no_records_found() => vec![domain.clone()],
                Err(e) => return Err(temporary(format!("MX lookup for {domain}: {e}"))),
            };
            if exchanges.iter().any(|h| h.is_empty()) {
                // RFC 7505 null MX: the domain takes no mail.
                return Err(NoRoute {
                    permanent: true,
                    status: "5.1.10",
                    reason: format!("{domain} accepts no mail (null MX)"),
                });
            }
            let mut hosts = Vec::new();
            for exchange in exchanges {
                hosts.extend(
                    lookup(&format!("{exchange}:25"), &exchange)
                        .await
                        .unwrap_or_default(),
                );
            }
            if hosts.is_empty() {
                return Err(temporary(format!(
                    "no address for the MX hosts of {domain}"
                )));
            }
            Ok(hosts)
        }
    }
}

/// The resolver for MX lookups: `[delivery] dns_servers` when set, else the system's
/// (/etc/resolv.conf).
pub fn resolver(servers: &[std::net::SocketAddr]) -> Result<TokioResolver, String> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    if servers.is_empty() {
        return TokioResolver::builder_tokio()
            .and_then(|b| b.with_tls_config(no_dns_over_tls()).build())
            .map_err(|e| e.to_string());
    }
    let name_servers = servers
        .iter()
        .map(|addr| {
            let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
            udp.port = addr.port();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_tls_config(no_dns_over_tls())
        .build()
        .map_err(|e| e.to_string())
}

/// The TLS settings hickory wants for DNS over TLS, which Lazaret never asks for (its
/// name servers are plain UDP/TCP). Without them hickory builds its own from the
/// system's certificate authorities and refuses to build at all where there are none
/// — and then no MX lookup or inbound SPF/DKIM check could run on such a machine.
fn no_dns_over_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connectors() -> Vec<ConnectorConfig> {
        let mut relay = ConnectorConfig::direct();
        relay.name = "partner".into();
        relay.domains = vec!["partner.test".into()];
        relay.smarthost = Some("127.0.0.1:2626".into());
        relay.route = None;
        vec![relay, ConnectorConfig::direct()]
    }

    #[test]
    fn queues_map_to_their_connector() {
        let c = connectors();
        let r = route_of("smarthost:partner", &c).unwrap();
        assert!(matches!(r.target, Target::Smarthost(ref h) if h == "127.0.0.1:2626"));
        let r = route_of("remote:example.org", &c).unwrap();
        assert_eq!(r.connector.name, "direct");
        assert!(matches!(r.target, Target::Mx(ref d) if d == "example.org"));
        assert!(!route_of("smarthost:gone", &c).unwrap_err().permanent);
        assert!(route_of("remote:x.test", &c[..1]).unwrap_err().permanent);
        assert_eq!(host_of("[::1]:25"), "::1");
    }
}
