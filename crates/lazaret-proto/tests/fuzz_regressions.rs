//! Inputs the fuzzers found (fuzz/), kept as tests of the normal suite.

use lazaret_proto::imap::framing::{Framer, Input};
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

/// `imap_framer` timeout (2026-12-01): `a LOGIN ali {00}` — a synchronizing literal of
/// zero bytes — got a continuation on every call, so the session answered `+` for
/// ever without reading, its output growing without bound (330 MB within a second on
/// a live server, before any login). Now one continuation per literal.
#[test]
fn an_empty_literal_gets_one_continuation() {
    let data = include_bytes!("fuzz_regressions/imap_framer_empty_literal.bin");
    let (_, stream) = data.split_first().unwrap();
    let mut framer = Framer::new(4096, 1024);
    let mut calls = 0;
    for chunk in stream.chunks(1) {
        framer.push(chunk);
        loop {
            calls += 1;
            assert!(calls < 100_000, "the framer answers without end");
            match framer.next_input() {
                Input::Incomplete => break,
                Input::Reject { close: true, .. } => return,
                _ => {}
            }
        }
    }
}
