//! Signature files (.hdb, .hsb, .ndb, .rules) as an admin might drop them in the
//! directory, then a scan with what parsed: never a panic.
#![no_main]
use lazaret_scan::{signatures, Engine, ScanLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let name = ["x.hdb", "x.hsb", "x.ndb", "x.rules"][usize::from(kind & 3)];
    // The first half is the file, the second what is scanned with it.
    let (file, sample) = rest.split_at(rest.len() / 2);
    let Ok(parsed) = signatures::parse_file(name, file) else {
        return;
    };
    let engine = Engine::new(vec![parsed], ScanLimits::default());
    let _ = engine.scan_file("sample.bin", sample);
    let _ = engine.hash_signatures();
});
