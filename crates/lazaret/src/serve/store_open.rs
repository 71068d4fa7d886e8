//! Opens the store `[store]` names: the embedded database in data_dir, with message
//! bodies in packs beside it or (`blobs = "s3"`) in a bucket; or (`backend =
//! "postgres"`) the database and bucket several nodes share.

use anyhow::{bail, Context, Result};
use lazaret_core::config::{BlobBackend, StoreBackend};
use lazaret_core::Config;
use lazaret_store::objects::ObjectSettings;
use lazaret_store::{EmbeddedStore, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

pub fn open(config: &Config) -> Result<Arc<dyn Store>> {
    let objects = object_settings(config)?;
    if let Some(o) = &objects {
        tracing::info!(
            "message bodies go to s3://{}/{} at {}",
            o.bucket,
            o.prefix,
            o.endpoint.as_deref().unwrap_or("Amazon S3")
        );
    }
    if config.store.backend == StoreBackend::Postgres {
        return open_postgres(config, objects);
    }
    let store = EmbeddedStore::open_with_objects(&config.data_dir, objects.as_ref())
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

#[cfg(feature = "postgres")]
fn open_postgres(config: &Config, objects: Option<ObjectSettings>) -> Result<Arc<dyn Store>> {
    use lazaret_store::postgres::{redacted, PostgresSettings, PostgresStore};
    // Checked when the config was read: a URL, and blobs = "s3".
    let url = config.store.url.clone().unwrap_or_default();
    let objects = objects
        .map(|o| lazaret_store::objects::Objects::open(&o))
        .transpose()
        .context("cannot reach the bucket [store] names")?;
    let settings = PostgresSettings {
        url: url.clone(),
        node: match &config.store.node {
            Some(node) => node.clone(),
            None => host_name(),
        },
        connections: config.store.connections,
        ca_file: config.store.ca_file.clone(),
    };
    let store = PostgresStore::open(&settings, objects)
        .with_context(|| format!("cannot open the PostgreSQL store at {}", redacted(&url)))?;
    tracing::info!(
        "store: PostgreSQL at {} as node {:?}",
        redacted(&url),
        settings.node
    );
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_config: &Config, _objects: Option<ObjectSettings>) -> Result<Arc<dyn Store>> {
    bail!(
        "[store] backend = \"postgres\": this lazaret was built without PostgreSQL support \
         (the `postgres` feature); build it with the default features"
    )
}

/// The machine's name, the node's name unless `[store] node` gives one.
#[cfg(feature = "postgres")]
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "lazaret".into())
}

fn object_settings(config: &Config) -> Result<Option<ObjectSettings>> {
    let store = &config.store;
    if store.blobs != BlobBackend::S3 {
        return Ok(None);
    }
    let (access_key_id, secret_access_key) = match &store.credentials_file {
        Some(file) => {
            let file = if file.is_relative() {
                config.data_dir.join(file)
            } else {
                file.clone()
            };
            credentials_from_file(&file)?
        }
        None => match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(id), Ok(secret)) => (id, secret),
            _ => bail!(
                "store.blobs = \"s3\" needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or [store] credentials_file"
            ),
        },
    };
    Ok(Some(ObjectSettings {
        endpoint: store.endpoint.clone(),
        // Checked when the config was read.
        bucket: store.bucket.clone().unwrap_or_default(),
        region: store.region.clone(),
        prefix: store.prefix.clone(),
        access_key_id,
        secret_access_key,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

/// Reads the keys from a file only its owner can read: a secret readable by others is
/// refused, as ssh refuses such a key.
fn credentials_from_file(file: &Path) -> Result<(String, String)> {
    let meta = std::fs::metadata(file)
        .with_context(|| format!("store.credentials_file: cannot read {}", file.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "store.credentials_file: {} can be read by others; chmod 600 it",
            file.display()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("store.credentials_file: cannot read {}", file.display()))?;
    // The parser's error could quote the secret: say only where the file is wrong.
    let parsed: CredentialsFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "store.credentials_file: {} must hold access_key_id = \"…\" and secret_access_key = \"…\" ({})",
            file.display(),
            e.span()
                .map(|s| format!("at byte {}", s.start))
                .unwrap_or_else(|| "unreadable".into())
        )
    })?;
    Ok((parsed.access_key_id, parsed.secret_access_key))
}
