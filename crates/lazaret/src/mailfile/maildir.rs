//! Maildir (and Dovecot's Maildir++ subfolders `.Sent`, `.Lists.rust`): one file per
//! message in `cur/` and `new/`, flags in the name after `:2,`, the file's time as the
//! date it arrived.

use std::path::{Path, PathBuf};

/// A message file and what its name and metadata say.
pub struct MaildirFile {
    pub path: PathBuf,
    pub flags: Vec<String>,
    pub date: Option<i64>,
    pub size: u64,
}

/// A folder of a Maildir: its name relative to the import's target ("" for the top).
pub struct MaildirFolder {
    pub name: String,
    pub files: Vec<MaildirFile>,
}

pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// IMAP flags of a Maildir name's info part (`1234.host:2,FRS`).
fn flags_of(name: &str) -> Vec<String> {
    let Some((_, info)) = name.rsplit_once(":2,") else {
        return Vec::new();
    };
    info.chars()
        .filter_map(|c| match c {
            'S' => Some("\\Seen"),
            'R' => Some("\\Answered"),
            'F' => Some("\\Flagged"),
            'T' => Some("\\Deleted"),
            'D' => Some("\\Draft"),
            _ => None,
        })
        .map(str::to_string)
        .collect()
}

fn files_of(dir: &Path) -> std::io::Result<Vec<MaildirFile>> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let date = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            out.push(MaildirFile {
                path: entry.path(),
                flags: flags_of(&name),
                date,
                size: meta.len(),
            });
        }
    }
    // Delivery order: Maildir names start with the arrival time.
    out.sort_by(|a, b| (a.date, &a.path).cmp(&(b.date, &b.path)));
    Ok(out)
}

/// The top folder and every Maildir++ subfolder (`.A.B` becomes `A/B`).
pub fn folders(dir: &Path) -> std::io::Result<Vec<MaildirFolder>> {
    let mut out = vec![MaildirFolder {
        name: String::new(),
        files: files_of(dir)?,
    }];
    let mut subs: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(sub) = name.strip_prefix('.') {
            if !sub.is_empty() && entry.path().is_dir() && is_maildir(&entry.path()) {
                subs.push((sub.replace('.', "/"), entry.path()));
            }
        }
    }
    subs.sort();
    for (name, path) in subs {
        out.push(MaildirFolder {
            name,
            files: files_of(&path)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_from_names() {
        assert_eq!(super::flags_of("1.host:2,FS"), ["\\Flagged", "\\Seen"]);
        assert!(super::flags_of("1.host").is_empty());
    }
}
