//! The TOML configuration file. Every key of ../shared/PRODUCT.md is accepted; unknown
//! keys and bad values are refused at start with the key, line and what is allowed.

use crate::units::{Duration, Size};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad config file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_hostname")]
    pub hostname: String,
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default = "default_submission")]
    pub submission: ListenerConfig,
    #[serde(default = "default_imap")]
    pub imap: ListenerConfig,
    #[serde(default = "default_pop3")]
    pub pop3: ListenerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub connector: Vec<ConnectorConfig>,
    #[serde(default)]
    pub scan: ScanConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub backup: BackupConfig,
    #[serde(default)]
    pub outbreak: OutbreakConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub auth_checks: AuthChecksConfig,
    /// The file this was read from (none for the built-in defaults); a backup keeps it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The process itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The account `serve` runs as when started as root: it switches to it before
    /// opening anything, keeping only the right to bind ports below 1024
    /// (CAP_NET_BIND_SERVICE). Unset, a root start with a config file is refused;
    /// `"root"` says to stay root (not advised).
    pub user: Option<String>,
}

/// "1GB".
fn default_min_free() -> Size {
    Size(1_000_000_000)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            min_free: default_min_free(),
            backend: StoreBackend::default(),
            blobs: BlobBackend::default(),
            url: None,
            node: None,
            connections: default_store_connections(),
            ca_file: None,
            bucket: None,
            endpoint: None,
            region: default_s3_region(),
            prefix: String::new(),
            credentials_file: None,
        }
    }
}

/// The server's log (standard error, the journal under systemd) and the message event
/// log kept in the store (`lazaret trace`, `lazaret exposure`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one line per event, `key=value` fields) or `json` (one JSON object per
    /// line, for log shippers).
    #[serde(default)]
    pub format: LogFormat,
    /// How long the store keeps each message event (accepted, delivered, read,
    /// downloaded…): what `trace` and `exposure` can look back on.
    #[serde(default = "default_event_retention")]
    pub event_retention: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_event_retention() -> Duration {
    Duration(90 * 86400)
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            event_retention: default_event_retention(),
        }
    }
}

/// SPF, DKIM and DMARC of mail arriving on the inbound port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthChecksConfig {
    /// Check, and add an `Authentication-Results:` header. Off by default in this
    /// version: every inbound message then waits for DNS (SPF, the DKIM key, DMARC).
    #[serde(default)]
    pub enabled: bool,
    /// Refuse (550 5.7.1) a message that fails DMARC when its domain publishes p=reject.
    #[serde(default = "yes")]
    pub dmarc_reject: bool,
    /// Put a message that fails DMARC for a domain publishing p=quarantine into
    /// Lazaret's quarantine (restorable) instead of the recipients' mailboxes.
    #[serde(default = "yes")]
    pub dmarc_quarantine: bool,
    /// Quarantine a message whose `From:` is one of our own domains but that neither
    /// SPF nor DKIM authenticates for it — the worm's favourite forgery — whether or
    /// not the domain publishes a DMARC record.
    #[serde(default = "yes")]
    pub own_domain_quarantine: bool,
}

impl Default for AuthChecksConfig {
    fn default() -> Self {
        AuthChecksConfig {
            enabled: false,
            dmarc_reject: true,
            dmarc_quarantine: true,
            own_domain_quarantine: true,
        }
    }
}

/// Where `lazaret backup` writes. Not in the product page's example, optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Backups directory; relative paths are inside `data_dir`. Another disk is
    /// better: a backup on the store's disk goes down with it.
    #[serde(default = "default_backup_dir")]
    pub dir: PathBuf,
}

fn default_backup_dir() -> PathBuf {
    PathBuf::from("backups")
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: default_backup_dir(),
        }
    }
}

/// Seeing an outbreak before any signature does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutbreakConfig {
    /// Group near-identical mail into clusters as it is stored (`lazaret clusters`).
    /// Costs a few index lookups per message; off, `clusters` shows nothing new.
    #[serde(default = "yes")]
    pub clusters: bool,
    /// Hold new copies of a cluster that grows this fast (`"200/10m"`: 200 new members
    /// within ten minutes, counted to the minute) frozen in `inbound` until the admin
    /// thaws or quarantines them. Off when absent.
    #[serde(default)]
    pub hold_growth: Option<RateLimit>,
    /// ... and only when that growth came from at least this many distinct envelope
    /// senders: one sender's bulk mail is a mailing, a worm sends from every host it
    /// infected.
    #[serde(default = "default_hold_senders")]
    pub hold_senders: u64,
    /// An address told (by a message through the queues) when a cluster is held.
    #[serde(default)]
    pub notify: Option<String>,
}

fn default_hold_senders() -> u64 {
    3
}

fn yes() -> bool {
    true
}

impl Default for OutbreakConfig {
    fn default() -> Self {
        OutbreakConfig {
            clusters: true,
            hold_growth: None,
            hold_senders: default_hold_senders(),
            notify: None,
        }
    }
}

/// Per-sender rate limits: over one, SMTP answers `451 4.7.1` until the window moves on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Per authenticated user on the submission port: an infected client must not push
    /// thousands of copies out.
    #[serde(default = "default_submission_limits")]
    pub submission: SenderLimits,
    /// Per client IP on the inbound port (off by default: one big sender's servers can
    /// rightly send a lot).
    #[serde(default)]
    pub inbound: SenderLimits,
    /// Per client IP on every listener: connections open at once and new ones per
    /// window, as Postfix's anvil does for SMTP.
    #[serde(default)]
    pub connections: ConnectionLimits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            submission: default_submission_limits(),
            inbound: SenderLimits::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Connections from one client address, on SMTP, submission, IMAP and POP3 together.
/// Over a limit the connection gets the protocol's "try later" line and is closed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Open at once (0: no limit). An office behind one NAT address opens many: list
    /// it in `exempt`.
    #[serde(default = "default_max_open_per_ip")]
    pub max_open: usize,
    /// New connections, each `"COUNT/DURATION"` (all must hold).
    #[serde(default = "default_connection_rate")]
    pub rate: Vec<RateLimit>,
    /// Addresses and networks never limited (`"192.0.2.0/24"`, `"2001:db8::/32"`,
    /// `"198.51.100.7"`); loopback by default.
    #[serde(default = "default_connection_exempt")]
    pub exempt: Vec<String>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_open: default_max_open_per_ip(),
            rate: default_connection_rate(),
            exempt: default_connection_exempt(),
        }
    }
}

impl ConnectionLimits {
    /// The exempt networks, parsed; a bare address is a network of one.
    pub fn exempt_networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.exempt
            .iter()
            .map(|text| {
                let text = text.trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("{text:?} is not an address or network (write \"192.0.2.0/24\" or \"::1\")")
                    })
            })
            .collect()
    }
}

fn default_max_open_per_ip() -> usize {
    50
}
fn default_connection_rate() -> Vec<RateLimit> {
    vec![RateLimit::new(300, 60)]
}
fn default_connection_exempt() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}

fn default_submission_limits() -> SenderLimits {
    SenderLimits {
        messages: vec![RateLimit::new(200, 60), RateLimit::new(2_000, 3_600)],
        recipients: vec![RateLimit::new(1_000, 60), RateLimit::new(10_000, 3_600)],
    }
}

/// Limits on messages (transactions) and on recipients, each any number of
/// `"COUNT/DURATION"` (all must hold); an empty list is no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderLimits {
    #[serde(default)]
    pub messages: Vec<RateLimit>,
    #[serde(default)]
    pub recipients: Vec<RateLimit>,
}

/// At most `count` per `per` (sliding), written `"200/1m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u64,
    pub per: std::time::Duration,
}

impl RateLimit {
    pub fn new(count: u64, per_secs: u64) -> RateLimit {
        RateLimit {
            count,
            per: std::time::Duration::from_secs(per_secs),
        }
    }

    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let err = || format!("{text:?}: write COUNT/DURATION, like \"200/1m\" or \"2000/1h\"");
        let (count, per) = text.split_once('/').ok_or_else(err)?;
        let count: u64 = count.trim().parse().map_err(|_| err())?;
        let per = Duration::parse(per).map_err(|_| err())?;
        if count == 0 || per.0 == 0 {
            return Err(err());
        }
        Ok(RateLimit {
            count,
            per: per.as_std(),
        })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.per.as_secs();
        let (n, unit) = match secs {
            s if s % 86_400 == 0 => (s / 86_400, "d"),
            s if s % 3_600 == 0 => (s / 3_600, "h"),
            s if s % 60 == 0 => (s / 60, "m"),
            s => (s, "s"),
        };
        write!(f, "{}/{n}{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RateLimit::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How logins of users (POP3, IMAP, submission) are guarded against guessing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A wrong password is answered only after this long.
    #[serde(default = "default_failure_delay")]
    pub failure_delay: Duration,
    /// Failed logins from one address within `lockout` before it is refused outright.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_lockout")]
    pub lockout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            failure_delay: default_failure_delay(),
            max_failures: default_max_failures(),
            lockout: default_lockout(),
        }
    }
}

fn default_failure_delay() -> Duration {
    Duration(2)
}
fn default_max_failures() -> u32 {
    10
}
fn default_lockout() -> Duration {
    Duration(900)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    #[serde(default = "default_smtp_listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: Size,
    /// RCPT commands accepted per message; the next gets 452.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Concurrent sessions over all inbound listeners; the next connection gets 421.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A session silent this long is closed with 421.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Protocol errors tolerated in one session before it is closed with 421.
    #[serde(default = "default_max_errors")]
    pub max_errors: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS ports: TLS from the first byte (IMAPS 993; submission 465, RFC
    /// 8314). IMAP and submission.
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    /// IMAP: how often an idling client gets `* OK still here` (default 2 minutes).
    #[serde(default)]
    pub idle_keepalive: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Plain HTTP, for the CLI on this machine: keep it on loopback.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// HTTPS with the `[tls]` pair: the same API and web console for a browser on
    /// another machine (the session cookie is then `Secure`).
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    #[default]
    Fs,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Free space kept on the data directory's filesystem: below it, new mail is
    /// refused (`452 4.3.1`, IMAP `NO [OVERQUOTA]`) while admin actions (quarantine,
    /// delete, restore) go on in the reserve.
    #[serde(default = "default_min_free")]
    pub min_free: Size,
    #[serde(default)]
    pub backend: StoreBackend,
    #[serde(default)]
    pub blobs: BlobBackend,
    /// `backend = "postgres"`: the database every node shares
    /// (`postgres://user:password@host:port/database`); never logged with its password.
    pub url: Option<String>,
    /// `backend = "postgres"`: this node's name in `status` and in its queue leases;
    /// the machine's host name by default. Each node needs a name of its own.
    pub node: Option<String>,
    /// `backend = "postgres"`: connections this node keeps open to the database at most.
    #[serde(default = "default_store_connections")]
    pub connections: usize,
    /// `backend = "postgres"`: the CA (PEM) that signed the database's TLS certificate,
    /// trusted instead of the system's roots. Whether TLS is used is the url's
    /// `sslmode`; a certificate is always verified.
    pub ca_file: Option<PathBuf>,
    /// `blobs = "s3"`: the bucket message bodies go to (it must exist).
    pub bucket: Option<String>,
    /// The S3 service's address (`http://127.0.0.1:9000` for MinIO or Garage on the
    /// same host); none: Amazon S3 itself, in `region`.
    pub endpoint: Option<String>,
    /// The bucket's region; services that ignore it accept the default.
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Key prefix inside the bucket, so that several stores can share one.
    #[serde(default)]
    pub prefix: String,
    /// A file (mode 0600) holding `access_key_id = "…"` and `secret_access_key =
    /// "…"`; without it the keys come from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`. Never written to a log.
    pub credentials_file: Option<PathBuf>,
}

impl StoreConfig {
    /// Whether other servers may share this store (`backend = "postgres"`): its
    /// switches are then followed from the shared settings, and PostgreSQL's own tools
    /// back it up.
    pub fn is_shared(&self) -> bool {
        self.backend == StoreBackend::Postgres
    }
}

fn default_store_connections() -> usize {
    16
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
    pub smarthost: Option<String>,
    pub route: Option<String>,
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// TLS toward this connector's hosts: `may` (STARTTLS when offered, any
    /// certificate, plain text if the handshake fails), `encrypt` (STARTTLS or no
    /// delivery, any certificate), `verify` (STARTTLS with a certificate valid for the
    /// host's name under the system's certificate authorities, or no delivery). A
    /// domain's MTA-STS `enforce` policy asks for `verify` on its own.
    #[serde(default)]
    pub tls: OutboundTls,
}

/// How much TLS a connection to a next hop needs (see `ConnectorConfig::tls`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    #[default]
    May,
    Encrypt,
    Verify,
}

/// Prefix of queues for mail relayed through a connector's smarthost.
pub const SMARTHOST_QUEUE_PREFIX: &str = "smarthost:";
/// Prefix of queues for mail sent to a domain's MX hosts.
pub const REMOTE_QUEUE_PREFIX: &str = "remote:";

impl ConnectorConfig {
    /// The connector used when the config file names none: every remote domain, sent
    /// straight to its MX hosts, always.
    pub fn direct() -> ConnectorConfig {
        ConnectorConfig {
            name: "direct".into(),
            domains: vec!["*".into()],
            smarthost: None,
            route: Some("mx".into()),
            schedule: default_schedule(),
            tls: OutboundTls::May,
        }
    }

    /// Does this connector take mail for `domain`? Patterns: `*`, `example.org`,
    /// `*.example.org` (subdomains only).
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.domains.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            match p.strip_prefix("*.") {
                _ if p == "*" => true,
                Some(suffix) => domain
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => domain == p,
            }
        })
    }

    /// The queue a message for `domain` waits in when this connector carries it.
    pub fn queue_for(&self, domain: &str) -> String {
        match &self.smarthost {
            Some(_) => format!("{SMARTHOST_QUEUE_PREFIX}{}", self.name),
            None => format!("{REMOTE_QUEUE_PREFIX}{}", domain.to_ascii_lowercase()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnIngest {
    #[default]
    Quarantine,
    Reject,
    Tag,
    Off,
}

/// What happens when clamd cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClamdFailure {
    /// Fail closed: mail waits (after-queue) or gets a 451 (reject mode).
    #[default]
    Defer,
    /// Fail open: the built-in engine's verdict alone decides.
    Accept,
}

/// What an archive bomb or a broken archive comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnLimits {
    /// A detection (`Heuristics.Limits.Exceeded`, `Heuristics.Broken.Archive`),
    /// handled as `on_ingest` says.
    #[default]
    Flag,
    /// Logged, and the message goes on.
    Pass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    #[serde(default)]
    pub on_ingest: OnIngest,
    /// Directory of signature files; relative paths are inside `data_dir`.
    #[serde(default = "default_signatures")]
    pub signatures: PathBuf,
    /// `unix:/path` or `tcp:host:port` of a clamd used as a second engine.
    pub clamd: Option<String>,
    #[serde(default)]
    pub clamd_failure: ClamdFailure,
    #[serde(default)]
    pub on_limits: OnLimits,
    /// Archives inside archives opened.
    #[serde(default = "default_max_archive_depth")]
    pub max_archive_depth: usize,
    /// Files taken out of the archives of one attachment.
    #[serde(default = "default_max_archive_files")]
    pub max_archive_files: usize,
    /// Bytes expanded from the archives of one attachment.
    #[serde(default = "default_max_expanded_size")]
    pub max_expanded_size: Size,
    /// Expanded size over compressed size of one archive member.
    #[serde(default = "default_max_expansion_ratio")]
    pub max_expansion_ratio: u64,
    /// Messages scanned at once by the after-queue scanner (default: CPU count).
    pub workers: Option<usize>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            on_ingest: OnIngest::default(),
            signatures: default_signatures(),
            clamd: None,
            clamd_failure: ClamdFailure::default(),
            on_limits: OnLimits::default(),
            max_archive_depth: default_max_archive_depth(),
            max_archive_files: default_max_archive_files(),
            max_expanded_size: default_max_expanded_size(),
            max_expansion_ratio: default_max_expansion_ratio(),
            workers: None,
        }
    }
}

fn default_signatures() -> PathBuf {
    PathBuf::from("signatures")
}
fn default_max_archive_depth() -> usize {
    5
}
fn default_max_archive_files() -> usize {
    1000
}
fn default_max_expanded_size() -> Size {
    Size(100 << 20)
}
fn default_max_expansion_ratio() -> u64 {
    250
}

/// How the queue runner works. Not in the product page's example, all optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How often the queue runner looks for due messages when nothing wakes it.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// Delay before a failed local delivery is tried again.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Duration,
    /// Waits between remote delivery attempts after a temporary failure; the last one
    /// repeats until `give_up_after`.
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule: Vec<Duration>,
    /// A message still undeliverable this long after it was accepted is returned to
    /// its sender with a DSN.
    #[serde(default = "default_give_up_after")]
    pub give_up_after: Duration,
    /// Concurrent outbound connections to one next hop (one remote queue).
    #[serde(default = "default_connections_per_destination")]
    pub connections_per_destination: usize,
    /// Concurrent outbound connections in all.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Messages sent over one connection before it is closed and a fresh one opened.
    #[serde(default = "default_messages_per_connection")]
    pub messages_per_connection: usize,
    /// Time allowed to connect, and for each reply of the remote server.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Duration,
    /// MX answers fixed by configuration ("example.org" = "127.0.0.1:2626"), used instead
    /// of DNS for those domains by `route = "mx"` connectors (closed networks, tests).
    #[serde(default)]
    pub static_mx: std::collections::BTreeMap<String, String>,
    /// DNS servers to ask ("IP:PORT", UDP then TCP) instead of those of
    /// /etc/resolv.conf: a local validating resolver, or a test's own server.
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
    /// Honour the MTA-STS policies (RFC 8461) of the domains mail goes to by MX: their
    /// MX hosts only, with a verified certificate, when they say `mode: enforce`.
    #[serde(default = "yes")]
    pub mta_sts: bool,
    /// DANE (RFC 7672): for domains whose DNSSEC-validated TLSA records name their MX
    /// hosts' certificates, deliver only over TLS with such a certificate. Trusts the
    /// AD bit of the resolver (`dns_servers`, else /etc/resolv.conf): turn it on with a
    /// validating resolver on this machine. Takes precedence over MTA-STS.
    #[serde(default)]
    pub dane: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./lazaret-data")
}
fn default_hostname() -> String {
    "localhost".into()
}
fn default_smtp_listen() -> Vec<SocketAddr> {
    vec!["127.0.0.1:2525".parse().unwrap()]
}
fn default_submission() -> ListenerConfig {
    ListenerConfig {
        listen: vec!["127.0.0.1:2587".parse().unwrap()],
        tls_listen: Vec::new(),
        idle_keepalive: None,
    }
}
fn default_imap() -> ListenerConfig {
    ListenerConfig {
        listen: vec!["127.0.0.1:2143".parse().unwrap()],
        tls_listen: Vec::new(),
        idle_keepalive: None,
    }
}
fn default_pop3() -> ListenerConfig {
    ListenerConfig {
        listen: vec!["127.0.0.1:2110".parse().unwrap()],
        tls_listen: Vec::new(),
        idle_keepalive: None,
    }
}
fn default_admin_listen() -> SocketAddr {
    "127.0.0.1:8025".parse().unwrap()
}
fn default_max_message_size() -> Size {
    Size(25_000_000)
}
fn default_max_recipients() -> usize {
    100
}
fn default_max_sessions() -> usize {
    200
}
fn default_idle_timeout() -> Duration {
    Duration(300)
}
fn default_max_errors() -> u32 {
    20
}
fn default_schedule() -> String {
    "always".into()
}
fn default_poll_interval() -> Duration {
    Duration(30)
}
fn default_retry_delay() -> Duration {
    Duration(300)
}
fn default_retry_schedule() -> Vec<Duration> {
    [300, 600, 1800, 3600, 7200, 14400].map(Duration).to_vec()
}
fn default_give_up_after() -> Duration {
    Duration(5 * 86400)
}
fn default_connections_per_destination() -> usize {
    4
}
fn default_max_connections() -> usize {
    64
}
fn default_messages_per_connection() -> usize {
    100
}
fn default_connect_timeout() -> Duration {
    Duration(30)
}
fn default_command_timeout() -> Duration {
    Duration(300)
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: default_smtp_listen(),
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_sessions: default_max_sessions(),
            idle_timeout: default_idle_timeout(),
            max_errors: default_max_errors(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            tls_listen: Vec::new(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            poll_interval: default_poll_interval(),
            retry_delay: default_retry_delay(),
            retry_schedule: default_retry_schedule(),
            give_up_after: default_give_up_after(),
            connections_per_destination: default_connections_per_destination(),
            max_connections: default_max_connections(),
            messages_per_connection: default_messages_per_connection(),
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
            static_mx: Default::default(),
            dns_servers: Vec::new(),
            mta_sts: true,
            dane: false,
        }
    }
}

impl Config {
    /// Connectors in the order they are tried, or the built-in `direct` one.
    pub fn connectors(&self) -> Vec<ConnectorConfig> {
        if self.connector.is_empty() {
            vec![ConnectorConfig::direct()]
        } else {
            self.connector.clone()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse("", Path::new("<built-in defaults>")).expect("defaults are valid")
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it (data_dir, TLS files)
    /// are taken relative to the directory the server is started in, as admins expect
    /// from `./lazaret-data`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// `[backup] dir`, relative paths inside `data_dir`.
    pub fn backup_dir(&self) -> PathBuf {
        if self.backup.dir.is_absolute() {
            self.backup.dir.clone()
        } else {
            self.data_dir.join(&self.backup.dir)
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if self.hostname.trim().is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err(invalid(
                "hostname",
                format!("{:?} is not a host name", self.hostname),
            ));
        }
        if self.smtp.max_message_size.0 < 1024 {
            return Err(invalid(
                "smtp.max_message_size",
                "must be at least 1KB".into(),
            ));
        }
        if self.smtp.max_recipients == 0 {
            return Err(invalid("smtp.max_recipients", "must be at least 1".into()));
        }
        if let Err(message) = self.limits.connections.exempt_networks() {
            return Err(invalid("limits.connections.exempt", message));
        }
        if self.smtp.max_sessions == 0 {
            return Err(invalid("smtp.max_sessions", "must be at least 1".into()));
        }
        if self.smtp.idle_timeout.0 == 0 {
            return Err(invalid("smtp.idle_timeout", "must be at least 1s".into()));
        }
        match self.store.backend {
            StoreBackend::Postgres => {
                if self.store.url.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(
                        "store.url",
                        "backend = \"postgres\" needs the database's address: \
                         url = \"postgres://user:password@host:5432/lazaret\""
                            .into(),
                    ));
                }
                if self.store.blobs != BlobBackend::S3 {
                    return Err(invalid(
                        "store.blobs",
                        "backend = \"postgres\" keeps message bodies where every node reaches \
                         them: set blobs = \"s3\" and bucket"
                            .into(),
                    ));
                }
                if self.store.connections < 2 {
                    return Err(invalid(
                        "store.connections",
                        "must be at least 2 (one listens for the other nodes' news)".into(),
                    ));
                }
            }
            StoreBackend::Embedded => {
                if self.store.url.is_some()
                    || self.store.node.is_some()
                    || self.store.ca_file.is_some()
                {
                    return Err(invalid(
                        "store.url",
                        "url, node and ca_file are for backend = \"postgres\"; the embedded \
                         store lives in data_dir"
                            .into(),
                    ));
                }
            }
        }
        if self.store.blobs == BlobBackend::S3 {
            match &self.store.bucket {
                None => {
                    return Err(invalid(
                        "store.bucket",
                        "blobs = \"s3\" needs the bucket's name".into(),
                    ))
                }
                Some(b) if b.is_empty() || b.contains('/') => {
                    return Err(invalid(
                        "store.bucket",
                        format!("{b:?} is not a bucket name"),
                    ))
                }
                Some(_) => {}
            }
            if let Some(e) = &self.store.endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(invalid(
                        "store.endpoint",
                        format!("{e:?}: give the S3 service's URL, http:// or https://"),
                    ));
                }
            }
        }
        if let Some(clamd) = &self.scan.clamd {
            if !(clamd.starts_with("unix:/")
                || clamd.starts_with("tcp:") && clamd[4..].contains(':'))
            {
                return Err(invalid(
                    "scan.clamd",
                    format!("{clamd:?} is not a clamd address: use \"unix:/path/to/clamd.ctl\" or \"tcp:HOST:PORT\""),
                ));
            }
        }
        if self.scan.max_archive_depth == 0
            || self.scan.max_archive_files == 0
            || self.scan.max_expansion_ratio == 0
            || self.scan.workers == Some(0)
        {
            return Err(invalid(
                "scan",
                "max_archive_depth, max_archive_files, max_expansion_ratio and workers must be at least 1".into(),
            ));
        }
        if self.outbreak.hold_growth.is_some() && !self.outbreak.clusters {
            return Err(invalid(
                "outbreak.hold_growth",
                "holds growing clusters, so it needs `clusters = true`".into(),
            ));
        }
        if let Some(notify) = &self.outbreak.notify {
            let ok = notify
                .rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && (d.contains('.') || d == "localhost"));
            if !ok || notify.contains(char::is_whitespace) {
                return Err(invalid(
                    "outbreak.notify",
                    format!("{notify:?} is not a mail address"),
                ));
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls",
                "give both cert and key, or neither (a self-signed pair is then made)".into(),
            ));
        }
        if !self.pop3.tls_listen.is_empty() {
            return Err(invalid(
                "pop3.tls_listen",
                "implicit TLS is available on [imap] and [submission] in this version; use STLS on pop3".into(),
            ));
        }
        if self.delivery.retry_schedule.is_empty()
            || self.delivery.retry_schedule.iter().any(|d| d.0 == 0)
        {
            return Err(invalid(
                "delivery.retry_schedule",
                "give at least one wait, each at least 1s (e.g. [\"5m\", \"30m\", \"2h\"])".into(),
            ));
        }
        if self.delivery.connections_per_destination == 0
            || self.delivery.max_connections == 0
            || self.delivery.messages_per_connection == 0
        {
            return Err(invalid(
                "delivery",
                "connections_per_destination, max_connections and messages_per_connection must be at least 1".into(),
            ));
        }
        if self.delivery.poll_interval.0 == 0 {
            return Err(invalid(
                "delivery.poll_interval",
                "must be at least 1s".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.connector {
            if !names.insert(c.name.as_str()) {
                return Err(invalid(
                    "connector.name",
                    format!("connector {:?} is defined twice", c.name),
                ));
            }
            if let Err(e) = c.schedule.parse::<crate::Schedule>() {
                return Err(invalid(
                    "connector.schedule",
                    format!("connector {:?}: {e}", c.name),
                ));
            }
            if c.route.as_deref().is_some_and(|r| r != "mx") {
                return Err(invalid(
                    "connector.route",
                    format!("connector {:?}: the only route is \"mx\"", c.name),
                ));
            }
            if let Some(host) = &c.smarthost {
                if !host
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    return Err(invalid(
                        "connector.smarthost",
                        format!("connector {:?}: {host:?} is not host:port", c.name),
                    ));
                }
            }
            if c.domains.is_empty() {
                return Err(invalid(
                    "connector.domains",
                    format!(
                        "connector {:?} matches no domain (e.g. domains = [\"*\"])",
                        c.name
                    ),
                ));
            }
            if !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(invalid(
                    "connector.name",
                    format!("{:?}: use letters, digits, - and _", c.name),
                ));
            }
            if c.smarthost.is_some() == c.route.is_some() {
                return Err(invalid(
                    "connector",
                    format!(
                        "connector {:?} needs exactly one of smarthost = \"host:port\" or route = \"mx\"",
                        c.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn connector_domain_patterns() {
        let mut c = ConnectorConfig::direct();
        c.domains = vec!["example.org".into(), "*.corp.test".into()];
        assert!(c.matches("EXAMPLE.org"));
        assert!(!c.matches("sub.example.org"));
        assert!(c.matches("a.corp.test") && c.matches("x.y.corp.test"));
        assert!(!c.matches("corp.test") && !c.matches("xcorp.test"));
        assert!(ConnectorConfig::direct().matches("anything.example"));
        assert_eq!(c.queue_for("Example.org"), "remote:example.org");
    }

    #[test]
    fn bad_connectors_are_refused_with_the_key() {
        let bad = [
            ("[[connector]]\nname = \"a\"\ndomains = [\"*\"]\nsmarthost = \"h:1\"\nschedule = \"mon-fry\"", "connector.schedule"),
            ("[[connector]]\nname = \"a\"\ndomains = [\"*\"]\nsmarthost = \"nohost\"", "connector.smarthost"),
            ("[[connector]]\nname = \"a\"\ndomains = [\"*\"]\nroute = \"dns\"", "connector.route"),
            ("[[connector]]\nname = \"a\"\nroute = \"mx\"", "connector.domains"),
            ("[delivery]\nretry_schedule = []", "delivery.retry_schedule"),
        ];
        for (text, key) in bad {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn defaults_follow_the_product_page() {
        let c = Config::default();
        assert_eq!(c.data_dir, PathBuf::from("./lazaret-data"));
        assert_eq!(c.smtp.listen[0].to_string(), "127.0.0.1:2525");
        assert_eq!(c.smtp.max_message_size, Size(25_000_000));
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8025");
    }

    #[test]
    fn product_example_parses() {
        let text = r#"
data_dir = "./lazaret-data"
hostname = "mail.example.test"
[smtp]
listen = ["127.0.0.1:2525"]
max_message_size = "25MB"
[submission]
listen = ["127.0.0.1:2587"]
[imap]
listen = ["127.0.0.1:2143"]
[pop3]
listen = ["127.0.0.1:2110"]
[admin]
listen = "127.0.0.1:8025"
[tls]
cert = "cert.pem"
key = "key.pem"
[store]
backend = "embedded"
blobs = "fs"
[[connector]]
name = "internet"
domains = ["*"]
smarthost = "127.0.0.1:2626"
schedule = "always"
[scan]
on_ingest = "quarantine"
signatures = "signatures/"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.hostname, "mail.example.test");
        assert_eq!(c.connector[0].name, "internet");
        assert_eq!(c.scan.on_ingest, OnIngest::Quarantine);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = parse("[smtp]\nmax_message_size = \"25XB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("max_message_size"), "{e}");
        assert!(e.contains("25XB"), "{e}");

        let e = parse("[smtp]\nlisten = [\"nowhere\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");

        let e = parse("[smpt]\n").unwrap_err().to_string();
        assert!(e.contains("smpt"), "{e}");

        let e = parse("[store]\nbackend = \"postgres\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.url"), "{e}");
        let e = parse("[store]\nbackend = \"postgres\"\nurl = \"postgres://db/lazaret\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.blobs"), "{e}");
        let e = parse("[store]\nurl = \"postgres://db/lazaret\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.url"), "{e}");
        let e = parse("[store]\nca_file = \"/etc/lazaret/db-ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca_file are for backend"), "{e}");
        let c = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://db/lazaret\"\n\
             blobs = \"s3\"\nbucket = \"mail\"\nnode = \"mx2\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.store.node.as_deref(), c.store.connections),
            (Some("mx2"), 16)
        );

        let e = parse("[store]\nblobs = \"s3\"\n").unwrap_err().to_string();
        assert!(e.contains("store.bucket"), "{e}");
        let e =
            parse("[store]\nblobs = \"s3\"\nbucket = \"mail\"\nendpoint = \"localhost:9000\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("store.endpoint"), "{e}");
        let c = parse(
            "[store]\nblobs = \"s3\"\nbucket = \"mail\"\nendpoint = \"http://127.0.0.1:9000\"\n",
        )
        .unwrap();
        assert_eq!(c.store.region, "us-east-1");
    }
}
