//! Every archive and container expander (zip, 7z, CAB, cpio, OLE2, PDF, RTF, TNEF,
//! encoded text, …, nested) with small limits:
//! never a panic, never more members or bytes handed out than the limits allow.
#![no_main]
use lazaret_scan::containers::{expand, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_depth: 3,
        max_files: 64,
        max_bytes: 1 << 20,
        max_ratio: 100,
        files_only: false,
    };
    let (mut files, mut bytes) = (0usize, 0u64);
    let _ = expand("fuzz.bin", data, &limits, &mut |m| {
        files += 1;
        bytes += m.data.len() as u64;
        assert!(m.depth <= limits.max_depth);
    });
    assert!(files <= limits.max_files, "{files} members handed out");
    assert!(bytes <= limits.max_bytes, "{bytes} bytes handed out");
});
