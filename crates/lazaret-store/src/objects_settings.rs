//! Where an S3-compatible bucket is and how to sign requests to it
//! (`[store] blobs = "s3"`), with or without the `s3` feature.

/// Where the bucket is and how to sign requests to it.
#[derive(Clone)]
pub struct ObjectSettings {
    /// None: Amazon S3 in `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Prepended to every key ("" or ending in `/`).
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for ObjectSettings {
    // The secret key stays out of every log line and error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
