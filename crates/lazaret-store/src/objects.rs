//! Message bodies as objects in an S3-compatible bucket (`[store] blobs = "s3"`): one
//! immutable object per message, `<prefix>messages/<store id>`, written with a
//! create-only PUT (`If-None-Match: *`) before the rows that name it commit.
//!
//! The S3 client (`object_store`) is async while the store's calls block, so the
//! client runs on a runtime of its own (`bridge`) and each call waits for its answer.
//!
//! A message is read again within seconds of being written (the scanner, then the
//! first IMAP or POP3 client), so the newest bodies are kept in memory too
//! (`RECENT_BYTES`): those reads cost no request.

use crate::bridge::Bridge;
use crate::{Result, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub use crate::objects_settings::ObjectSettings;

pub struct Objects {
    client: Arc<dyn ObjectStore>,
    bridge: Bridge,
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    name: String,
    recent: Mutex<Recent>,
}

/// How many bytes of the newest bodies are kept in memory.
const RECENT_BYTES: usize = 64 << 20;

/// The newest bodies written, oldest first out.
#[derive(Default)]
struct Recent {
    bodies: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Recent {
    fn insert(&mut self, uid: &str, data: Bytes) {
        if data.len() > RECENT_BYTES / 8 || self.bodies.contains_key(uid) {
            return;
        }
        self.bytes += data.len();
        self.bodies.insert(uid.to_string(), data);
        self.order.push_back(uid.to_string());
        // Deleted bodies leave their names behind in `order`; drop them before they
        // outnumber the bodies kept.
        if self.order.len() > 2 * self.bodies.len() + 1024 {
            let bodies = &self.bodies;
            self.order.retain(|u| bodies.contains_key(u));
        }
        while self.bytes > RECENT_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.bodies.remove(&old) {
                self.bytes -= gone.len();
            }
        }
    }

    fn remove(&mut self, uid: &str) {
        // Its place in `order` goes when it comes round; it frees nothing then.
        if let Some(gone) = self.bodies.remove(uid) {
            self.bytes -= gone.len();
        }
    }
}

/// How long one request may take, and how often a failed one is tried again: an SMTP
/// client waits for the answer, so a bucket that is away must turn into a `451` within
/// seconds, not after the client library's default of minutes of retries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RETRIES: usize = 2;
const RETRY_WINDOW: Duration = Duration::from_secs(10);
/// Requests in flight at once for a batch (an import).
const PARALLEL_PUTS: usize = 16;

impl Objects {
    /// Connects and checks that the bucket answers (a listing of one key).
    pub fn open(settings: &ObjectSettings) -> Result<Objects> {
        // The HTTPS client takes the process's rustls provider: ring, as everywhere
        // in Lazaret (an error only says one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                max_retries: RETRIES,
                retry_timeout: RETRY_WINDOW,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::Invalid(format!("S3 bucket {}: {e}", settings.bucket)))?;
        let bridge = Bridge::new("S3", "lazaret-s3")?;
        let prefix = settings.prefix.clone();
        let objects = Objects {
            client: Arc::new(client),
            bridge,
            recent: Mutex::new(Recent::default()),
            name: format!("s3://{}/{}", settings.bucket, prefix),
            prefix,
        };
        objects.reachable()?;
        Ok(objects)
    }

    fn reachable(&self) -> Result<()> {
        let client = self.client.clone();
        let at = ObjectPath::from(format!("{}messages/", self.prefix));
        let name = self.name.clone();
        self.bridge.run(async move {
            match client.list(Some(&at)).next().await {
                None | Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(unavailable(&format!("list {name}"), e)),
            }
        })
    }

    fn key(&self, uid: &str) -> ObjectPath {
        ObjectPath::from(format!("{}messages/{uid}", self.prefix))
    }

    /// Where a message's object is, for messages.
    pub fn describe(&self, uid: &str) -> String {
        format!("{}messages/{uid}", self.name)
    }

    /// Stores a message's bytes; returns once the service has them. A key that exists
    /// already with the same length is the same message written before (a retried
    /// request whose first answer was lost): store ids are random and never reused.
    pub fn put(&self, uid: &str, data: Vec<u8>) -> Result<()> {
        let (client, key, what) = (self.client.clone(), self.key(uid), self.describe(uid));
        let data = Bytes::from(data);
        self.bridge
            .run(put_create(client, key, what, data.clone()))?;
        self.recent().insert(uid, data);
        Ok(())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores many messages, several requests at a time (an import); returns once the
    /// service has them all, or with the first failure.
    pub fn put_many(&self, messages: Vec<(String, Vec<u8>)>) -> Result<()> {
        let jobs: Vec<_> = messages
            .into_iter()
            .map(|(uid, data)| {
                let data = Bytes::from(data);
                let client = self.client.clone();
                let key = self.key(&uid);
                let what = self.describe(&uid);
                async move { put_create(client, key, what, data).await }
            })
            .collect();
        self.bridge.run(async move {
            let mut results = futures::stream::iter(jobs).buffer_unordered(PARALLEL_PUTS);
            while let Some(r) = results.next().await {
                r?;
            }
            Ok(())
        })
    }

    /// Appends the whole object to `buf`; returns how many bytes.
    pub fn read_into(&self, uid: &str, buf: &mut Vec<u8>) -> Result<usize> {
        let data = self.bytes(uid, None)?;
        buf.extend_from_slice(&data);
        Ok(data.len())
    }

    /// The object's bytes, or only those in `range`.
    pub fn get(&self, uid: &str, range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>> {
        self.bytes(uid, range).map(Vec::from)
    }

    /// The object's bytes as the service has them now (`lazaret check --deep`), never
    /// from memory.
    pub fn fetch(&self, uid: &str, range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>> {
        self.request(uid, range).map(Vec::from)
    }

    /// The bytes from memory when this node wrote them lately (a cheap clone of the
    /// shared buffer), else from the service; callers copy them once, where they go.
    fn bytes(&self, uid: &str, range: Option<std::ops::Range<u64>>) -> Result<Bytes> {
        if let Some(data) = self.recent().bodies.get(uid) {
            let len = data.len() as u64;
            let range = range.unwrap_or(0..len);
            let (start, end) = (range.start.min(len), range.end.min(len));
            return Ok(data.slice(start as usize..end as usize));
        }
        self.request(uid, range)
    }

    fn request(&self, uid: &str, range: Option<std::ops::Range<u64>>) -> Result<Bytes> {
        let client = self.client.clone();
        let key = self.key(uid);
        let what = self.describe(uid);
        self.bridge.run(async move {
            let options = GetOptions {
                range: range.map(GetRange::Bounded),
                ..GetOptions::default()
            };
            let got = client
                .get_opts(&key, options)
                .await
                .map_err(|e| unavailable(&format!("read {what}"), e))?;
            got.bytes()
                .await
                .map_err(|e| unavailable(&format!("read {what}"), e))
        })
    }

    /// Deletes these messages' objects (missing ones are no error); returns how many
    /// requests failed.
    pub fn delete(&self, uids: Vec<String>) -> usize {
        if uids.is_empty() {
            return 0;
        }
        {
            let mut recent = self.recent();
            for uid in &uids {
                recent.remove(uid);
            }
        }
        let client = self.client.clone();
        let keys: Vec<ObjectPath> = uids.iter().map(|u| self.key(u)).collect();
        let name = self.name.clone();
        self.bridge
            .run(async move {
                let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
                let mut results = client.delete_stream(stream);
                let mut failed = 0;
                while let Some(r) = results.next().await {
                    match r {
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            failed += 1;
                            if failed == 1 {
                                tracing::warn!("delete in {name}: {e}");
                            }
                        }
                    }
                }
                Ok(failed)
            })
            .unwrap_or(1)
    }

    /// Every message object's size, by store id (`lazaret check`): one listing.
    pub fn sizes(&self) -> Result<HashMap<String, u64>> {
        let client = self.client.clone();
        let at = ObjectPath::from(format!("{}messages/", self.prefix));
        let name = self.name.clone();
        self.bridge.run(async move {
            let mut listing = client.list(Some(&at));
            let mut out = HashMap::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| unavailable(&format!("list {name}"), e))?;
                if let Some(uid) = meta.location.filename() {
                    out.insert(uid.to_string(), meta.size);
                }
            }
            Ok(out)
        })
    }

    /// The size of a message's object as the service has it now; None if it has none.
    pub fn size(&self, uid: &str) -> Result<Option<u64>> {
        let (client, key, what) = (self.client.clone(), self.key(uid), self.describe(uid));
        self.bridge.run(async move {
            match client.head(&key).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(unavailable(&format!("look at {what}"), e)),
            }
        })
    }

    /// Store ids of the messages whose objects are older than `age` (for the sweep of
    /// objects no row names).
    pub fn older_than(&self, age: Duration) -> Result<Vec<String>> {
        let client = self.client.clone();
        let at = ObjectPath::from(format!("{}messages/", self.prefix));
        let name = self.name.clone();
        let before = SystemTime::now() - age;
        self.bridge.run(async move {
            let mut listing = client.list(Some(&at));
            let mut out = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| unavailable(&format!("list {name}"), e))?;
                if SystemTime::from(meta.last_modified) > before {
                    continue;
                }
                if let Some(uid) = meta.location.filename() {
                    out.push(uid.to_string());
                }
            }
            Ok(out)
        })
    }
}

async fn put_create(
    client: Arc<dyn ObjectStore>,
    key: ObjectPath,
    what: String,
    data: Bytes,
) -> Result<()> {
    let len = data.len() as u64;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match client.put_opts(&key, PutPayload::from(data), opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => match client.head(&key).await {
            Ok(meta) if meta.size == len => Ok(()),
            Ok(meta) => Err(StoreError::Exists(format!(
                "{what} exists already with {} bytes, not {len}",
                meta.size
            ))),
            Err(e) => Err(unavailable(&format!("write {what}"), e)),
        },
        Err(e) => Err(unavailable(&format!("write {what}"), e)),
    }
}

/// A failed request as the store reports it: an I/O error, so that SMTP answers with a
/// temporary failure and callers retry.
fn unavailable(what: &str, e: object_store::Error) -> StoreError {
    StoreError::Io {
        context: what.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}
