//! Parsed DNS records for the authentication checks, kept until their TTL runs out.
//!
//! The resolver caches answers, but `mail-auth` parses each answer again at every
//! message: the SPF and DMARC records, and the DKIM key (base64, then the public key
//! itself). Mail comes in runs from the same few domains, so keeping the parsed records
//! saves most of that work. `mail-auth` asks for a cache through its `ResolverCache`
//! trait and ships none; this is the smallest one that bounds its memory.

use mail_auth::ResolverCache;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Records kept at most; past it the expired ones go, and if none has expired, all.
/// A mail server talks to thousands of domains a day, not millions.
const MAX_ENTRIES: usize = 8_192;

pub struct RecordCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for RecordCache<K, V> {
    fn default() -> Self {
        RecordCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for RecordCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_record_is_kept_until_its_time_and_the_cache_stays_bounded() {
        let cache: RecordCache<Box<str>, u32> = RecordCache::default();
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert("a.test.".into(), 1, later);
        cache.insert("gone.test.".into(), 2, Instant::now());
        assert_eq!(cache.get("a.test."), Some(1));
        assert_eq!(cache.get("gone.test."), None);
        for n in 0..MAX_ENTRIES as u32 + 10 {
            cache.insert(format!("{n}.test.").into(), n, later);
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
        assert_eq!(cache.remove("a.test."), None); // cleared with the rest
    }
}
