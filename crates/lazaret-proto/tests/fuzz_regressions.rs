//! Inputs the fuzzers found (fuzz/), kept as tests of the normal suite.

use lazaret_proto::imap::structure;

/// `imap_fetch` timeout: a 1 KB multipart whose parsed parts name the same children
/// again and again; BODYSTRUCTURE walked them 2^depth times. Now it describes at most
/// a bounded number of parts and ends.
#[test]
fn bodystructure_of_parts_shared_between_multiparts_ends() {
    let raw = include_bytes!("fuzz_regressions/bodystructure_shared_children.eml");
    let message = structure::parse(raw).expect("mail-parser takes it");
    for extended in [false, true] {
        let mut out = Vec::new();
        structure::body_structure(&mut out, &message, extended);
        assert!(out.starts_with(b"("), "a BODYSTRUCTURE");
        assert!(out.len() < 4 << 20, "bounded: {} bytes", out.len());
    }
}
