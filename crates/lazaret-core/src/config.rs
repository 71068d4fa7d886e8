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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: StoreBackend,
    #[serde(default)]
    pub blobs: BlobBackend,
    pub url: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    #[serde(default)]
    pub on_ingest: OnIngest,
    pub signatures: Option<PathBuf>,
    pub clamd: Option<String>,
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
    }
}
fn default_imap() -> ListenerConfig {
    ListenerConfig {
        listen: vec!["127.0.0.1:2143".parse().unwrap()],
    }
}
fn default_pop3() -> ListenerConfig {
    ListenerConfig {
        listen: vec!["127.0.0.1:2110".parse().unwrap()],
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
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            poll_interval: default_poll_interval(),
            retry_delay: default_retry_delay(),
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
        Config::parse(&text, path)
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
        if self.smtp.max_sessions == 0 {
            return Err(invalid("smtp.max_sessions", "must be at least 1".into()));
        }
        if self.smtp.idle_timeout.0 == 0 {
            return Err(invalid("smtp.idle_timeout", "must be at least 1s".into()));
        }
        if self.store.backend != StoreBackend::Embedded {
            return Err(invalid(
                "store.backend",
                "only \"embedded\" is available in this version".into(),
            ));
        }
        if self.store.blobs != BlobBackend::Fs {
            return Err(invalid(
                "store.blobs",
                "only \"fs\" is available in this version".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls",
                "give both cert and key, or neither (a self-signed pair is then made)".into(),
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
        assert!(e.contains("store.backend"), "{e}");
    }
}
