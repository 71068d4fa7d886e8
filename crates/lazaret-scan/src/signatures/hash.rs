//! ClamAV hash signatures: `.hdb` lines `MD5:SIZE:NAME[:MIN_FLEVEL]` and `.hsb` lines
//! `SHA256:SIZE:NAME[:MIN_FLEVEL]` (a 40-digit SHA-1 is accepted there too, as ClamAV
//! does). SIZE is the file's size in bytes, or `*` for any size.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

#[derive(Debug, Clone)]
pub struct HashSignature {
    pub kind: HashKind,
    pub digest: Vec<u8>,
    /// None: any size.
    pub size: Option<u64>,
    pub name: String,
}

/// Parses one line; `sha` says whether it comes from an `.hsb` file.
pub fn parse_line(line: &str, sha: bool) -> Result<HashSignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(3..=4).contains(&fields.len()) {
        return Err(format!(
            "expected HASH:SIZE:NAME (3 fields separated by ':'), found {} field(s)",
            fields.len()
        ));
    }
    let digest =
        hex::decode(fields[0]).map_err(|_| format!("{:?} is not a hex digest", fields[0]))?;
    let kind = match (sha, digest.len()) {
        (false, 16) => HashKind::Md5,
        (true, 20) => HashKind::Sha1,
        (true, 32) => HashKind::Sha256,
        (false, n) => {
            return Err(format!(
                "an .hdb hash is an MD5 (32 hex digits), this has {}",
                n * 2
            ))
        }
        (true, n) => {
            return Err(format!(
                "an .hsb hash is a SHA-256 (64 hex digits) or SHA-1 (40), this has {}",
                n * 2
            ))
        }
    };
    let size = match fields[1] {
        "*" => None,
        s => Some(
            s.parse::<u64>()
                .map_err(|_| format!("size {s:?} is not a number of bytes or *"))?,
        ),
    };
    let name = super::check_name(fields[2])?;
    let level = match fields.get(3) {
        Some(level) => Some(
            level
                .parse::<u32>()
                .map_err(|_| format!("functionality level {level:?} is not a number"))?,
        ),
        None => None,
    };
    // ClamAV refuses the file otherwise; so do we, so one file means the same to both.
    if size.is_none() && level.is_none_or(|l| l < 73) {
        return Err("a * size needs a minimum functionality level of 73 or more as a 4th field (HASH:*:NAME:73)".into());
    }
    Ok(HashSignature {
        kind,
        digest,
        size,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let s = parse_line("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test:73", false).unwrap();
        assert_eq!(
            (s.kind, s.size, s.name.as_str()),
            (HashKind::Md5, Some(68), "Eicar-Test")
        );
        let s = parse_line(&format!("{}:*:Any.Size:73", "ab".repeat(32)), true).unwrap();
        assert!(parse_line(&format!("{}:*:Any.Size", "ab".repeat(32)), true)
            .unwrap_err()
            .contains("73"));
        assert_eq!((s.kind, s.size), (HashKind::Sha256, None));
        assert!(parse_line("xyz:1:N", false).unwrap_err().contains("hex"));
        assert!(parse_line(&format!("{}:1:N", "ab".repeat(32)), false)
            .unwrap_err()
            .contains("MD5"));
        assert!(parse_line("44d88612fea8a8f36de82e1278abb02f:big:N", false)
            .unwrap_err()
            .contains("size"));
        assert!(parse_line("44d88612fea8a8f36de82e1278abb02f:1", false).is_err());
    }
}
