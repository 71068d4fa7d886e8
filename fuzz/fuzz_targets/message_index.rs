//! What the store and the scanner do with every message accepted: the metadata parse
//! (headers, parts, part and archive-member hashes, searchable text), the outbreak
//! fingerprint, and a scan with body, hash and rule signatures, for arbitrary bytes.
#![no_main]
use lazaret_scan::containers::Limits;
use lazaret_scan::fingerprint::TextFingerprint;
use lazaret_scan::{signatures, Engine, ScanLimits};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let files = [
            ("fuzz.ndb", &b"Fuzz.Body:0:*:4d5a90\nFuzz.Text:0:*:696e766f696365\n"[..]),
            (
                "fuzz.hsb",
                &b"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:*:Fuzz.Sha:73\n"[..],
            ),
        ]
        .iter()
        .map(|(name, body)| signatures::parse_file(name, body).expect("the fuzz signatures parse"))
        .collect();
        Engine::new(
            files,
            ScanLimits {
                archive: Limits {
                    max_depth: 3,
                    max_files: 64,
                    max_bytes: 1 << 20,
                    max_ratio: 100,
                    files_only: false,
                },
                max_total: 1 << 20,
                flag: true,
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let meta = lazaret_store::MessageMetadata::extract(data);
    let fp = TextFingerprint::of(&meta.text);
    let _ = fp.keys();
    if let Some(sig) = fp.signature_bytes() {
        assert_eq!(lazaret_scan::fingerprint::agreement(&sig, &sig), Some(32));
    }
    let _ = engine().scan_message(data);
});
