//! The mbox and Maildir readers of `lazaret import` (and the mbox writer of `lazaret
//! export`), included from the server's source as they are: any bytes read as an mbox
//! file never panic and never take more than the file; any message written by export
//! reads back byte for byte; any set of Maildir names reads without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/lazaret/src/mailfile/mod.rs"]
#[allow(dead_code)]
mod mailfile;

use mailfile::{maildir, mbox};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => read_any(rest),
        1 => round_trip(rest),
        _ => maildir_names(rest),
    }
});

fn read_any(data: &[u8]) {
    let mut reader = mbox::MboxReader::new(data);
    let mut taken = 0u64;
    let mut messages = 0;
    while let Ok(Some(m)) = reader.next_message() {
        taken += m.bytes;
        messages += 1;
        assert!(taken <= data.len() as u64, "read more than the file holds");
        assert!(messages <= data.len() + 1, "messages out of nothing");
    }
}

/// What export writes, import reads back: the message with CRLF line ends (the store
/// keeps mail as SMTP carries it, so that is what export is given).
fn round_trip(data: &[u8]) {
    let message = mailfile::to_crlf(data);
    // A message ends with a line end in the store (SMTP's DATA guarantees it).
    let mut message = message;
    if !message.ends_with(b"\r\n") {
        message.extend_from_slice(b"\r\n");
    }
    // An mbox file ends its lines with LF: a CR before a line's CRLF is read back as
    // part of the line end (the format cannot tell them apart), so such a message
    // loses that CR; anything else must come back whole.
    if message.windows(3).any(|w| w == b"\r\r\n") {
        return;
    }
    let mut file = Vec::new();
    mbox::write_message(&mut file, "a@x.test", 1_795_428_000, &message).unwrap();
    mbox::write_message(&mut file, "b@x.test", 1_795_428_001, b"Subject: next\r\n\r\nx\r\n").unwrap();
    let mut reader = mbox::MboxReader::new(&file[..]);
    let first = reader.next_message().unwrap().expect("the message");
    assert_eq!(first.data, message, "export then import changed the message");
    assert_eq!(first.date, Some(1_795_428_000));
    let second = reader.next_message().unwrap().expect("the one after it");
    assert_eq!(second.data, b"Subject: next\r\n\r\nx\r\n");
    assert!(reader.next_message().unwrap().is_none());
}

fn maildir_names(data: &[u8]) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let root = std::env::temp_dir().join(format!("lazaret-fuzz-maildir-{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(root.join("cur"));
    let mut made = 0;
    for name in data.split(|&b| b == b'\n').take(16) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.is_empty() || name.len() > 200 || name.contains(['/', '\0']) || name == "." || name == ".." {
            continue;
        }
        let made_ok = if name.starts_with('.') {
            std::fs::create_dir_all(root.join(name).join("cur")).is_ok()
                && std::fs::write(root.join(name).join("cur").join("1.x:2,S"), b"x").is_ok()
        } else {
            std::fs::write(root.join("cur").join(name), b"Subject: s\r\n\r\n").is_ok()
        };
        made += made_ok as usize;
    }
    if let Ok(folders) = maildir::folders(&root) {
        let files: usize = folders.iter().map(|f| f.files.len()).sum();
        assert!(files <= made, "{files} files found, {made} made");
    }
    let _ = std::fs::remove_dir_all(&root);
}
