//! cpio archives in their four on-disk forms: portable ASCII (odc, `070707`), SVR4
//! ASCII (newc, `070701`/`070702`) and the old binary form in either byte order.
//! Written here because the crates.io readers handle newc only, and each header is a
//! fixed run of fields.

use super::{Stopped, Walk};

const TRAILER: &[u8] = b"TRAILER!!!";
const REGULAR_FILE: u32 = 0o100000;
const FILE_TYPE: u32 = 0o170000;

#[derive(Clone, Copy)]
enum Form {
    Odc,
    Newc,
    Binary { big_endian: bool },
}

fn form(data: &[u8]) -> Option<Form> {
    if data.starts_with(b"070707") {
        Some(Form::Odc)
    } else if data.starts_with(b"070701") || data.starts_with(b"070702") {
        Some(Form::Newc)
    } else if data.starts_with(&[0xc7, 0x71]) {
        Some(Form::Binary { big_endian: false })
    } else if data.starts_with(&[0x71, 0xc7]) {
        Some(Form::Binary { big_endian: true })
    } else {
        None
    }
}

/// The binary forms have a two-byte magic only: the first header must also parse and
/// name its file with a NUL-terminated name.
pub(super) fn is(data: &[u8]) -> bool {
    match form(data) {
        Some(Form::Binary { .. }) => header(data, 0).is_some_and(|h| h.name_end > 0),
        Some(_) => data.len() >= 76,
        None => false,
    }
}

struct Header {
    mode: u32,
    name_start: usize,
    name_end: usize,
    data_start: usize,
    size: usize,
    /// Where the next header starts.
    next: usize,
}

fn header(data: &[u8], at: usize) -> Option<Header> {
    let rest = data.get(at..)?;
    let (mode, namesize, size, fixed, align) = match form(rest)? {
        Form::Odc => {
            let octal = |from: usize, len: usize| field(rest.get(from..from + len)?, 8);
            (octal(18, 6)?, octal(59, 6)?, octal(65, 11)?, 76, 1)
        }
        Form::Newc => {
            let hex = |n: usize| field(rest.get(6 + n * 8..6 + n * 8 + 8)?, 16);
            (hex(1)?, hex(11)?, hex(6)?, 110, 4)
        }
        Form::Binary { big_endian } => {
            let word = |n: usize| {
                let b: [u8; 2] = rest.get(n * 2..n * 2 + 2)?.try_into().ok()?;
                Some(u32::from(if big_endian {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                }))
            };
            // The 32-bit size is two 16-bit words, the high one first.
            (word(3)?, word(10)?, (word(11)? << 16) | word(12)?, 26, 2)
        }
    };
    let name_start = at + fixed;
    let namesize = namesize as usize;
    if namesize == 0 || namesize > 4096 || data.get(name_start + namesize - 1) != Some(&0) {
        return None;
    }
    let pad = |n: usize| n.div_ceil(align) * align;
    // newc pads the header and name together; the binary form pads the name alone.
    let data_start = match align {
        4 => at + pad(fixed + namesize),
        _ => name_start + pad(namesize),
    };
    let size = size as usize;
    Some(Header {
        mode,
        name_start,
        name_end: name_start + namesize - 1,
        data_start,
        size,
        next: data_start.checked_add(pad(size))?,
    })
}

fn field(digits: &[u8], radix: u32) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    let mut at = 0;
    while at < data.len() {
        let Some(h) = header(data, at) else {
            return Err(Stopped::Broken(format!("{path}: bad header at byte {at}")));
        };
        let name = &data[h.name_start..h.name_end];
        if name == TRAILER {
            return Ok(());
        }
        let Some(content) = data.get(h.data_start..h.data_start + h.size) else {
            return Err(Stopped::Broken(format!(
                "{path}: member at byte {at} is truncated"
            )));
        };
        if h.mode & FILE_TYPE == REGULAR_FILE {
            let content = walk.take(path, content.to_vec(), h.size as u64)?;
            let name = String::from_utf8_lossy(name);
            walk.file(path, name.trim_start_matches("./"), content, depth)?;
        }
        at = h.next;
    }
    // An archive without its trailer was cut short, but every member read is whole.
    Ok(())
}
