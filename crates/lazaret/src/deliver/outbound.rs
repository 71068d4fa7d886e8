//! Outbound delivery. The runner watches the remote queues; for each queue with due
//! mail whose connector's schedule is open it starts workers, up to
//! `connections_per_destination` per queue and `max_connections` in all. A worker takes
//! a batch of the queue's due messages, sends them over one connection, and records each
//! outcome (delivered, deferred with backoff, or failed with a DSN) as it goes.
//!
//! A worker that panics, or a message it cannot even read, counts a worker failure
//! against the message in hand; twice and the message moves to `poison`.

use crate::deliver::certificates::Certificates;
use crate::deliver::client::{Client, ConnectOptions, SendReport};
use crate::deliver::dane::{self, Dane, HostDane};
use crate::deliver::dsn::{self, FailedRecipient};
use crate::deliver::mta_sts::{self, MtaSts};
use crate::deliver::next_hop::{self, Host, NoRoute};
use crate::deliver::{now, retry};
use crate::server::Server;
use hickory_resolver::TokioResolver;
use lazaret_core::config::{Config, OutboundTls};
use lazaret_store::{AttemptOutcome, Incoming, QueuedMessage};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

/// How often a queue held only by its connector's schedule is looked at again.
const SCHEDULE_RECHECK: Duration = Duration::from_secs(20);

pub struct Outbound {
    tls: TlsConnector,
    resolver: Option<TokioResolver>,
    certificates: Arc<Certificates>,
    mta_sts: Option<MtaSts>,
    dane: Option<Dane>,
    connections: Arc<Semaphore>,
    workers: Mutex<HashMap<u64, Claim>>,
    next_worker: AtomicU64,
}

/// What one worker holds: its queue, the items it claimed, the one it is sending.
struct Claim {
    queue: String,
    items: HashSet<i64>,
    current: Option<i64>,
}

impl Outbound {
    pub fn new(config: &Config) -> Outbound {
        let delivery = &config.delivery;
        let resolver = match crate::deliver::next_hop::resolver(&delivery.dns_servers) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("no DNS resolver ({e}); route = \"mx\" works only for [delivery] static_mx domains");
                None
            }
        };
        let certificates = Arc::new(Certificates::from_system());
        let mta_sts = delivery.mta_sts.then(|| {
            MtaSts::new(
                Some(config.data_dir.join("mta-sts.json")),
                certificates.clone(),
            )
        });
        let dane = delivery
            .dane
            .then(|| Dane::new(&delivery.dns_servers))
            .and_then(|d| {
                d.map_err(|e| {
                    tracing::error!(
                        "DANE is on but cannot ask a resolver ({e}): mail by MX goes without it"
                    )
                })
                .ok()
            });
        Outbound {
            tls: crate::deliver::client::opportunistic_tls(),
            resolver,
            certificates,
            mta_sts,
            dane,
            connections: Arc::new(Semaphore::new(delivery.max_connections)),
            workers: Mutex::new(HashMap::new()),
            next_worker: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Claim>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn workers_on(&self, queue: &str) -> usize {
        self.lock().values().filter(|c| c.queue == queue).count()
    }

    /// What outbound TLS rests on, for `status`: MTA-STS on or off with the policies
    /// it holds, and how many certificate authorities verification trusts.
    pub fn tls_status(&self) -> serde_json::Value {
        let policies: Vec<_> = self
            .mta_sts
            .as_ref()
            .map(|m| m.policies())
            .unwrap_or_default()
            .into_iter()
            .map(|(domain, policy, fetched_at)| {
                serde_json::json!({
                    "domain": domain,
                    "mode": policy.mode,
                    "mx": policy.mx,
                    "max_age": policy.max_age,
                    "fetched_at": fetched_at,
                })
            })
            .collect();
        serde_json::json!({
            "mta_sts": self.mta_sts.is_some(),
            "dane": self.dane.is_some(),
            "dane_resolvers": self
                .dane
                .as_ref()
                .map(|d| d.servers().iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap_or_default(),
            "trusted_roots": self.certificates.roots,
            "policies": policies,
        })
    }

    /// Connections open or being opened right now, for `status`.
    pub fn active_workers(&self) -> usize {
        self.lock().len()
    }

    fn busy_items(&self, queue: &str) -> Vec<i64> {
        self.lock()
            .values()
            .filter(|c| c.queue == queue)
            .flat_map(|c| c.items.iter().copied())
            .collect()
    }

    fn set_current(&self, worker: u64, item: Option<i64>) {
        if let Some(c) = self.lock().get_mut(&worker) {
            c.current = item;
        }
    }
}

pub async fn run(server: Arc<Server>) {
    let poll = server.config.delivery.poll_interval.as_std();
    loop {
        let due = match server.store_call(|s| s.outbound_queues()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("outbound runner: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let t = now();
        let mut wait = poll;
        for (queue, earliest) in due {
            if earliest > t {
                wait = wait.min(Duration::from_secs((earliest - t) as u64));
                continue;
            }
            if let Ok(route) = next_hop::route_of(&queue, server.connectors.list()) {
                if !server.connectors.is_open(&route.connector.name) {
                    wait = wait.min(SCHEDULE_RECHECK);
                    continue;
                }
            }
            if server.outbound.workers_on(&queue)
                < server.config.delivery.connections_per_destination
            {
                start_worker(server.clone(), queue);
            }
        }
        tokio::select! {
            _ = server.outbound_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn start_worker(server: Arc<Server>, queue: String) {
    let id = server.outbound.next_worker.fetch_add(1, Ordering::Relaxed);
    server.outbound.lock().insert(
        id,
        Claim {
            queue: queue.clone(),
            items: HashSet::new(),
            current: None,
        },
    );
    let task = tokio::spawn(worker(server.clone(), queue.clone(), id));
    tokio::spawn(async move {
        let outcome = task.await;
        let claim = server.outbound.lock().remove(&id);
        if let Err(e) = outcome {
            let culprit = claim.and_then(|c| c.current);
            tracing::error!(queue = %queue, item = ?culprit, "delivery worker failed: {e}");
            if let Some(item) = culprit {
                let error = format!("delivery worker failed: {e}");
                match server
                    .store_call(move |s| s.record_worker_failure(vec![item], error))
                    .await
                {
                    Ok(n) if n > 0 => tracing::error!("q{item} moved to the poison queue"),
                    Ok(_) => {}
                    Err(e) => tracing::error!("cannot record the worker failure: {e}"),
                }
            }
            server.outbound_wake.notify_one();
        }
    });
}

async fn worker(server: Arc<Server>, queue: String, id: u64) {
    let limit = server.config.delivery.messages_per_connection;
    let mut worked = false;
    loop {
        let busy = server.outbound.busy_items(&queue);
        let q = queue.clone();
        let batch = match server
            .store_call(move |s| s.outbound_due(&q, limit, &busy))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %queue, "cannot read the queue: {e}");
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        worked = true;
        if let Some(c) = server.outbound.lock().get_mut(&id) {
            c.items = batch.iter().map(|m| m.item).collect();
        }
        if batch.len() == limit {
            // More is waiting: let the runner add a connection if the limit allows.
            server.outbound_wake.notify_one();
        }
        let Ok(permit) = server.outbound.connections.clone().acquire_owned().await else {
            break;
        };
        deliver_batch(&server, &queue, id, batch).await;
        drop(permit);
        if let Some(c) = server.outbound.lock().get_mut(&id) {
            c.items.clear();
            c.current = None;
        }
    }
    if worked {
        server.outbound_wake.notify_one();
    }
}

/// One recipient's fate in an attempt.
enum Fate {
    Delivered,
    Deferred(String),
    Failed { status: String, diagnostic: String },
}

async fn deliver_batch(server: &Arc<Server>, queue: &str, worker: u64, batch: Vec<QueuedMessage>) {
    let delivery = &server.config.delivery;
    let mut recorder = Recorder::new(server.clone());
    let mut need = TlsNeed::default();
    let hosts = match next_hop::route_of(queue, server.connectors.list()) {
        Ok(route) => {
            let hosts = next_hop::resolve(
                &route.target,
                &delivery.static_mx,
                server.outbound.resolver.as_ref(),
            )
            .await;
            need = tls_need(server, &route).await;
            match hosts {
                Ok(hosts) => {
                    dane_need(server, &route, &hosts, &mut need).await;
                    need.admit(hosts)
                }
                Err(e) => Err(e),
            }
        }
        Err(no_route) => Err(no_route),
    };
    let hosts = match hosts {
        Ok(h) if !h.is_empty() => h,
        other => {
            let e = other.err().unwrap_or_else(|| NoRoute {
                permanent: false,
                status: "4.4.3",
                reason: "no address to connect to".into(),
            });
            tracing::warn!(queue, "{}", e.reason);
            for msg in batch {
                let outcome = settle(server, &msg, None, |_| route_fate(&e)).await;
                recorder.push(outcome).await;
            }
            recorder.finish().await;
            return;
        }
    };

    let (mut client, host) = match connect_any(server, &hosts, &need).await {
        Ok(found) => found,
        Err(error) => {
            tracing::info!(queue, "deferred {} message(s): {error}", batch.len());
            for msg in batch {
                let outcome = settle(server, &msg, None, |_| Fate::Deferred(error.clone())).await;
                recorder.push(outcome).await;
            }
            recorder.finish().await;
            return;
        }
    };
    for msg in batch {
        server.outbound.set_current(worker, Some(msg.item));
        let blob = msg.message.clone();
        let data = match server.store_call(move |s| s.message_raw(&blob)).await {
            Ok(d) => d,
            Err(e) => {
                // Not a delivery problem the code knows how to classify.
                let (item, error) = (
                    msg.item,
                    format!("cannot read message {}: {e}", msg.message),
                );
                tracing::error!(queue, "{error}");
                let _ = server
                    .store_call(move |s| s.record_worker_failure(vec![item], error))
                    .await;
                continue;
            }
        };
        match client.send(&msg.mail_from, &msg.rcpts, &data).await {
            Ok(report) => {
                let mut outcome =
                    settle(server, &msg, Some(&data), |r| reply_fate(&report, r, &host)).await;
                outcome.remote = Some(match &host.note {
                    Some(note) => format!("{} ({note})", host.addr),
                    None => host.addr.to_string(),
                });
                recorder.push(outcome).await;
            }
            Err(e) => {
                let error = format!("{}: {e}", host.addr);
                tracing::info!(queue, item = msg.item, "connection lost: {error}");
                let outcome =
                    settle(server, &msg, Some(&data), |_| Fate::Deferred(error.clone())).await;
                recorder.push(outcome).await;
                // The rest of the batch was not tried; it stays due for the next round.
                recorder.finish().await;
                return;
            }
        }
    }
    server.outbound.set_current(worker, None);
    client.quit().await;
    recorder.finish().await;
}

fn route_fate(e: &NoRoute) -> Fate {
    if e.permanent {
        Fate::Failed {
            status: e.status.to_string(),
            diagnostic: e.reason.clone(),
        }
    } else {
        Fate::Deferred(e.reason.clone())
    }
}

fn reply_fate(report: &SendReport, rcpt: &str, host: &Host) -> Fate {
    let Some((_, reply)) = report.rcpts.iter().find(|(r, _)| r == rcpt) else {
        return Fate::Deferred("no reply for this recipient".into());
    };
    if reply.is_positive() {
        Fate::Delivered
    } else if reply.is_permanent() {
        Fate::Failed {
            status: dsn::status_of(reply.code, reply.status.as_deref()),
            diagnostic: reply.to_string(),
        }
    } else {
        Fate::Deferred(format!("{} said: {reply}", host.name))
    }
}

/// What TLS the connections of one batch need, and why (for the log and the
/// deferral reason).
#[derive(Default)]
struct TlsNeed {
    level: OutboundTls,
    /// The destination's MTA-STS policy, when it has one in force.
    policy: Option<(String, mta_sts::Policy)>,
    why: String,
    /// What DANE asks of each MX host (by name, and IPv6 or not: the address answer
    /// that must be validated) of a domain whose MX answer DNSSEC validated; empty
    /// when DANE is off or does not apply.
    dane: HashMap<(String, bool), HostDane>,
}

impl TlsNeed {
    fn dane_of(&self, host: &Host) -> &HostDane {
        self.dane
            .get(&(host.name.clone(), host.addr.is_ipv6()))
            .unwrap_or(&HostDane::None)
    }

    /// Whether a connection to `host` may fall back to plain text after a failed
    /// STARTTLS handshake.
    fn plain_text_allowed(&self, host: &Host) -> bool {
        self.level == OutboundTls::May && *self.dane_of(host) == HostDane::None
    }

    fn enforced(&self) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|(_, p)| p.mode == mta_sts::Mode::Enforce)
    }

    fn testing(&self) -> Option<&str> {
        match &self.policy {
            Some((domain, p)) if p.mode == mta_sts::Mode::Testing => Some(domain),
            _ => None,
        }
    }

    /// Only the MX hosts an enforced policy lists (a testing policy only logs the
    /// others).
    fn admit(&self, hosts: Vec<Host>) -> Result<Vec<Host>, NoRoute> {
        let Some((domain, policy)) = &self.policy else {
            return self.admit_dane(hosts);
        };
        let (listed, other): (Vec<Host>, Vec<Host>) =
            hosts.into_iter().partition(|h| policy.allows(&h.name));
        if policy.mode == mta_sts::Mode::Testing {
            for h in &other {
                tracing::warn!(domain, host = %h.name, "MTA-STS testing: the policy does not list this MX host (mail goes on)");
            }
            return Ok(listed.into_iter().chain(other).collect());
        }
        if listed.is_empty() {
            let names: Vec<&str> = other.iter().map(|h| h.name.as_str()).collect();
            return Err(NoRoute {
                permanent: false,
                status: "4.7.5",
                reason: format!(
                    "MTA-STS policy of {domain} (mode enforce) lists none of its MX hosts ({}): policy mx {}",
                    names.join(", "),
                    policy.mx.join(", ")
                ),
            });
        }
        Ok(listed)
    }

    /// Leaves out the MX hosts DANE says not to use now; when that is all of them, the
    /// mail waits with the reason.
    fn admit_dane(&self, hosts: Vec<Host>) -> Result<Vec<Host>, NoRoute> {
        let mut reasons = Vec::new();
        let usable: Vec<Host> = hosts
            .into_iter()
            .filter(|h| match self.dane_of(h) {
                HostDane::Unusable(why) => {
                    tracing::warn!(host = %h.name, "DANE: {why}; not using this MX host now");
                    reasons.push(why.clone());
                    false
                }
                _ => true,
            })
            .collect();
        if usable.is_empty() && !reasons.is_empty() {
            return Err(NoRoute {
                permanent: false,
                status: "4.7.5",
                reason: format!("DANE: {}", reasons.join("; ")),
            });
        }
        Ok(usable)
    }
}

/// DANE for a domain delivered by MX (not a smarthost, not `static_mx`) whose MX answer
/// DNSSEC validated: what each host asks. Where any host has TLSA records, DANE takes
/// the place of the domain's MTA-STS policy (RFC 8461 §2).
async fn dane_need(
    server: &Arc<Server>,
    route: &next_hop::Route,
    hosts: &[Host],
    need: &mut TlsNeed,
) {
    let Some(dane) = &server.outbound.dane else {
        return;
    };
    let next_hop::Target::Mx(domain) = &route.target else {
        return;
    };
    if server.config.delivery.static_mx.contains_key(domain) || !dane.domain_secure(domain).await {
        return;
    }
    for host in hosts {
        let key = (host.name.clone(), host.addr.is_ipv6());
        if need.dane.contains_key(&key) {
            continue;
        }
        let wants = dane
            .host(&host.name, host.addr.is_ipv6(), host.addr.port())
            .await;
        need.dane.insert(key, wants);
    }
    if need.dane.values().any(|d| *d != HostDane::None) {
        if need.policy.is_some() {
            tracing::debug!(domain, "DANE applies: the MTA-STS policy is not used");
            // Only an enforced policy raised the level above the connector's.
            need.level = route.connector.tls;
            need.policy = None;
        }
        need.why = format!("DANE (TLSA records of {domain}'s MX hosts)");
    }
}

/// The connector's `tls`, raised to `verify` by an enforced MTA-STS policy of the
/// destination domain (mail by MX only: a smarthost or a `static_mx` host is the
/// admin's own choice).
async fn tls_need(server: &Arc<Server>, route: &next_hop::Route) -> TlsNeed {
    let mut need = TlsNeed {
        level: route.connector.tls,
        policy: None,
        why: format!(
            "connector {} (tls = {:?})",
            route.connector.name, route.connector.tls
        )
        .to_lowercase(),
        dane: HashMap::new(),
    };
    let next_hop::Target::Mx(domain) = &route.target else {
        return need;
    };
    if server.config.delivery.static_mx.contains_key(domain) {
        return need;
    }
    let (Some(sts), Some(resolver)) = (&server.outbound.mta_sts, &server.outbound.resolver) else {
        return need;
    };
    if let Some(policy) = sts.policy_for(domain, resolver).await {
        if policy.mode == mta_sts::Mode::Enforce && need.level < OutboundTls::Verify {
            need.level = OutboundTls::Verify;
            need.why = format!("the MTA-STS policy of {domain} (mode enforce)");
        }
        need.policy = Some((domain.clone(), policy));
    }
    need
}

/// Connects to the first host that answers with the TLS `need` asks for. At `may`
/// (RFC 7435 opportunistic TLS) a host whose STARTTLS handshake fails is tried again
/// at once without TLS, as Postfix does at `smtp_tls_security_level = may`: failing the
/// same handshake at every retry deferred such mail until it expired. At `encrypt` and
/// `verify` there is no plain-text retry, and at `verify` the certificate must be
/// valid for the host's name (checked before any command goes over the connection).
/// The host carries how the connection went (it goes into the `delivered` event).
async fn connect_any(
    server: &Arc<Server>,
    hosts: &[Host],
    need: &TlsNeed,
) -> Result<(Client, Host), String> {
    let d = &server.config.delivery;
    let mut errors = Vec::new();
    for host in hosts {
        let mut opts = ConnectOptions {
            helo: &server.config.hostname,
            tls: Some(&server.outbound.tls),
            server_name: &host.name,
            connect_timeout: d.connect_timeout.as_std(),
            command_timeout: d.command_timeout.as_std(),
        };
        let client = match Client::connect(host.addr, &opts).await {
            Ok(c) => c,
            Err(e) if e.is_tls_handshake() && need.plain_text_allowed(host) => {
                tracing::warn!(host = %host.addr, "STARTTLS failed ({e}); trying again without TLS");
                opts.tls = None;
                match Client::connect(host.addr, &opts).await {
                    Ok(c) => {
                        let mut plain = host.clone();
                        plain.note = Some(format!("without TLS: STARTTLS failed ({e})"));
                        return Ok((c, plain));
                    }
                    Err(e2) => {
                        errors.push(format!("{}: {e}; without TLS: {e2}", host.addr));
                        continue;
                    }
                }
            }
            Err(e) => {
                errors.push(format!("{}: {e}", host.addr));
                continue;
            }
        };
        match check_tls(server, &client, host, need) {
            Ok(note) => {
                tracing::debug!(host = %host.addr, tls = client.tls, "connected");
                let mut host = host.clone();
                host.note = note;
                return Ok((client, host));
            }
            Err(e) => {
                client.quit().await;
                errors.push(format!(
                    "{} ({}): {e}, required by {}",
                    host.addr, host.name, need.why
                ));
            }
        }
    }
    Err(errors.join("; "))
}

/// Whether a connection meets the need; `Ok` carries a note for the event log.
fn check_tls(
    server: &Server,
    client: &Client,
    host: &Host,
    need: &TlsNeed,
) -> Result<Option<String>, String> {
    let verified = || match client.peer_certificates() {
        Some(chain) => server.outbound.certificates.verify(chain, &host.name),
        None => Err("no TLS".to_string()),
    };
    match need.dane_of(host) {
        HostDane::Match(tlsa) => {
            let chain = client
                .peer_certificates()
                .filter(|_| client.tls)
                .ok_or("the server offers no STARTTLS")?;
            let how = dane::verify(chain, tlsa, &host.name)?;
            return Ok(Some(format!(
                "TLS authenticated by DANE ({how}) for {}",
                host.name
            )));
        }
        HostDane::Encrypt => {
            if !client.tls {
                return Err("the server offers no STARTTLS".into());
            }
            if need.level == OutboundTls::Verify {
                verified()?;
            }
            return Ok(Some(format!(
                "TLS required by DANE (no usable TLSA record) for {}",
                host.name
            )));
        }
        HostDane::None | HostDane::Unusable(_) => {}
    }
    if need.level >= OutboundTls::Encrypt && !client.tls {
        return Err("the server offers no STARTTLS".into());
    }
    if need.level == OutboundTls::Verify {
        verified()?;
        let by = if need.enforced() {
            "MTA-STS"
        } else {
            "tls = verify"
        };
        return Ok(Some(format!("TLS verified for {} ({by})", host.name)));
    }
    if let Some(domain) = need.testing() {
        if let Err(e) = verified() {
            tracing::warn!(domain, host = %host.name, "MTA-STS testing: {e} (mail goes on)");
            return Ok(Some(format!("MTA-STS testing: {e}")));
        }
    }
    Ok(None)
}

/// Turns each recipient's fate into the store's outcome: a retry time for the
/// deferred (or failure, once the message has outlived `give_up_after`), and a DSN for
/// the failed unless the sender is null or the scanner flagged the message.
async fn settle(
    server: &Arc<Server>,
    msg: &QueuedMessage,
    data: Option<&[u8]>,
    fate_of: impl Fn(&str) -> Fate,
) -> AttemptOutcome {
    let t = now();
    let next = retry::next_attempt(&server.config.delivery, t, msg.created, msg.attempts);
    let mut outcome = AttemptOutcome {
        item: msg.item,
        next_attempt: next.unwrap_or(t),
        ..Default::default()
    };
    let mut failed = Vec::new();
    for rcpt in &msg.rcpts {
        match fate_of(rcpt) {
            Fate::Delivered => outcome.delivered.push(rcpt.clone()),
            Fate::Deferred(error) if next.is_some() => {
                outcome.error = Some(error);
                outcome.deferred.push(rcpt.clone());
            }
            Fate::Deferred(error) => {
                let days = server.config.delivery.give_up_after.0 as f64 / 86400.0;
                failed.push(FailedRecipient {
                    address: rcpt.clone(),
                    status: "4.4.7".into(),
                    diagnostic: format!("gave up after {days:.1} days; last error: {error}"),
                    remote_mta: None,
                });
            }
            Fate::Failed { status, diagnostic } => failed.push(FailedRecipient {
                address: rcpt.clone(),
                status,
                diagnostic,
                remote_mta: None,
            }),
        }
    }
    for f in &failed {
        tracing::info!(item = msg.item, rcpt = %f.address, status = %f.status, "failed: {}", f.diagnostic);
        outcome.failed.push(f.address.clone());
    }
    if !outcome.delivered.is_empty() {
        tracing::debug!(
            item = msg.item,
            count = outcome.delivered.len(),
            "delivered"
        );
    }
    if failed.is_empty() {
        return outcome;
    }
    outcome.error = Some(failed[0].diagnostic.clone());
    if msg.mail_from.is_empty() || msg.flagged {
        // Never a bounce to a bounce, never one for mail the scanner caught.
        return outcome;
    }
    let original = match data {
        Some(d) => d.to_vec(),
        None => {
            let blob = msg.message.clone();
            // A DSN returns only the headers: no need to read the body.
            server
                .store_call(move |s| s.message_head(&blob))
                .await
                .unwrap_or_default()
        }
    };
    let dsn_id = hex::encode(rand::random::<[u8; 8]>());
    let report = dsn::Report {
        hostname: &server.config.hostname,
        queue_id: &msg.message,
        arrival: msg.created,
        original: &original,
        failed: &failed,
    };
    outcome.dsn = Some(Incoming {
        id: dsn_id.clone(),
        mail_from: String::new(),
        rcpt_to: vec![msg.mail_from.clone()],
        helo: server.config.hostname.clone(),
        peer: "127.0.0.1".into(),
        data: dsn::build(&report, &msg.mail_from, &dsn_id),
        scan: None,
        via: lazaret_store::Via::Server("dsn"),
        auth: None,
    });
    outcome
}

/// Records outcomes in the background while the connection carries the next message;
/// the store's group commit batches what arrives meanwhile.
struct Recorder {
    server: Arc<Server>,
    pending: Vec<AttemptOutcome>,
    inflight: Option<tokio::task::JoinHandle<()>>,
    dsn_queued: bool,
}

impl Recorder {
    fn new(server: Arc<Server>) -> Recorder {
        Recorder {
            server,
            pending: Vec::new(),
            inflight: None,
            dsn_queued: false,
        }
    }

    async fn push(&mut self, outcome: AttemptOutcome) {
        self.dsn_queued |= outcome.dsn.is_some();
        self.pending.push(outcome);
        if self.inflight.as_ref().is_none_or(|h| h.is_finished()) {
            if let Some(h) = self.inflight.take() {
                let _ = h.await;
            }
            let batch = std::mem::take(&mut self.pending);
            let server = self.server.clone();
            self.inflight = Some(tokio::spawn(async move { record(&server, batch).await }));
        }
    }

    /// Waits until everything pushed is committed.
    async fn finish(mut self) {
        if let Some(h) = self.inflight.take() {
            let _ = h.await;
        }
        let batch = std::mem::take(&mut self.pending);
        record(&self.server, batch).await;
        if self.dsn_queued {
            self.server.queue_wake.notify_one();
        }
    }
}

async fn record(server: &Arc<Server>, batch: Vec<AttemptOutcome>) {
    if batch.is_empty() {
        return;
    }
    for o in &batch {
        server
            .metrics
            .deliveries(true, o.delivered.len(), o.deferred.len(), o.failed.len());
        if o.dsn.is_some() {
            server.metrics.dsn();
        }
    }
    if let Err(e) = server.store_call(move |s| s.record_attempts(batch)).await {
        // The items stay due and will be sent again: a duplicate, never a loss.
        tracing::error!("cannot record delivery outcomes: {e}");
    }
}
