//! A build without the `s3` feature: `[store] blobs = "s3"` is refused when the store
//! opens, and no message can be in a bucket. Mirrors `objects.rs`'s interface.

use crate::{Result, StoreError};
use std::time::Duration;

pub use crate::objects_settings::ObjectSettings;

/// Never made: every method is unreachable.
pub enum Objects {}

impl Objects {
    pub fn open(_settings: &ObjectSettings) -> Result<Objects> {
        Err(StoreError::Invalid(
            "store.blobs = \"s3\": this build of Lazaret has no S3 support; build it with the `s3` feature (on by default)".into(),
        ))
    }
    pub fn describe(&self, _uid: &str) -> String {
        match *self {}
    }
    pub fn put(&self, _uid: &str, _data: Vec<u8>) -> Result<()> {
        match *self {}
    }
    pub fn put_many(&self, _messages: Vec<(String, Vec<u8>)>) -> Result<()> {
        match *self {}
    }
    pub fn fetch(&self, _uid: &str, _range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>> {
        match *self {}
    }
    pub fn read_into(&self, _uid: &str, _buf: &mut Vec<u8>) -> Result<usize> {
        match *self {}
    }
    pub fn get(&self, _uid: &str, _range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>> {
        match *self {}
    }
    pub fn delete(&self, _uids: Vec<String>) -> usize {
        match *self {}
    }
    pub fn older_than(&self, _age: Duration) -> Result<Vec<String>> {
        match *self {}
    }
}
