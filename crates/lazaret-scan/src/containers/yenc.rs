//! yEnc-encoded files in text (`=ybegin … name=…` to `=yend`), the Usenet encoding some
//! mailers also use. Written here because it is a one-line transform: each byte is
//! stored plus 42, critical ones escaped with `=` and a further 64.

use super::{Stopped, Walk};
use memchr::memmem;

const BEGIN: &[u8] = b"=ybegin ";

pub(super) fn holds(data: &[u8]) -> bool {
    memmem::find(data, BEGIN).is_some()
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let starts: Vec<usize> = memmem::find_iter(data, BEGIN).collect();
    for at in starts {
        let rest = &data[at..];
        let header_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let header = String::from_utf8_lossy(&rest[..header_end]);
        // The name is the header's last field and may hold spaces.
        let name = header
            .split_once(" name=")
            .map(|(_, n)| {
                n.trim()
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        let body = rest.get(header_end + 1..).unwrap_or_default();
        let end = memmem::find(body, b"=yend").unwrap_or(body.len());
        let mut out = Vec::with_capacity(end);
        let mut escaped = false;
        for line in body[..end].split(|&b| b == b'\n') {
            if line.starts_with(b"=ypart ") {
                continue;
            }
            for &b in line.strip_suffix(b"\r").unwrap_or(line) {
                if escaped {
                    out.push(b.wrapping_sub(64).wrapping_sub(42));
                    escaped = false;
                } else if b == b'=' {
                    escaped = true;
                } else {
                    out.push(b.wrapping_sub(42));
                }
            }
        }
        if out.is_empty() {
            continue;
        }
        let out = walk.take(path, out, end as u64)?;
        walk.file(path, &name, out, depth)?;
    }
    Ok(())
}
