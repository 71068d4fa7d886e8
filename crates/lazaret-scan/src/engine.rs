//! The scanner: a loaded signature set and the walk that shows it every object of a file
//! or message — the bytes as they are, each MIME part decoded, each file inside an
//! archive — matching all body patterns in one multi-pattern pass per object.

use crate::containers::{self, Limits, Stopped};
use crate::mime;
use crate::signatures::{self, FileKind, HashKind, Rule, RuleKind, SignatureFile};
use aho_corasick::AhoCorasick;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Reported for an archive bomb, or archives or messages nested past the limits.
pub const LIMITS_EXCEEDED: &str = "Heuristics.Limits.Exceeded";
/// Reported for an archive that cannot be read to its end.
pub const BROKEN_ARCHIVE: &str = "Heuristics.Broken.Archive";
/// The EICAR anti-virus test file, always detected.
pub const EICAR_NAME: &str = "Eicar-Test-Signature";
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// Changes whenever the built-in signatures or the walk change meaning.
const BUILTIN_VERSION: &str = "lazaret-builtin-1";
/// Objects inside objects (message in archive in message …) before the walk stops.
const MAX_LEVEL: usize = 8;

/// How far the walk goes, and what happens at the limits.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub archive: Limits,
    /// Bytes expanded from all archives of one scanned file or message together.
    pub max_total: u64,
    /// Report [`LIMITS_EXCEEDED`] / [`BROKEN_ARCHIVE`] as detections (true), or only
    /// note them (false).
    pub flag: bool,
}

impl Default for ScanLimits {
    fn default() -> ScanLimits {
        ScanLimits {
            archive: Limits::default(),
            max_total: 400 << 20,
            flag: true,
        }
    }
}

/// What one file or message scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub detections: Vec<Detection>,
    /// Limits hit or archives broken while `flag` was off: not detections.
    pub notes: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub name: String,
    /// Where inside the scanned thing: "" for itself, else e.g. `invoice.zip/a.exe`.
    pub object: String,
}

impl Report {
    pub fn infected(&self) -> bool {
        !self.detections.is_empty()
    }

    /// The distinct signature names found, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.detections.iter().map(|d| d.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// A signature file as the set lists it.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub name: String,
    pub kind: FileKind,
    pub signatures: usize,
}

struct HashEntry {
    size: Option<u64>,
    name: u32,
}

pub struct Engine {
    md5: HashMap<[u8; 16], Vec<HashEntry>>,
    sha1: HashMap<[u8; 20], Vec<HashEntry>>,
    sha256: HashMap<[u8; 32], Vec<HashEntry>>,
    hash_names: Vec<String>,
    bodies: Vec<signatures::BodySignature>,
    prefilter: Option<AhoCorasick>,
    /// Per prefilter pattern: the body signatures with that anchor.
    by_anchor: Vec<Vec<u32>>,
    /// Body signatures with no usable anchor: checked on every object.
    always: Vec<u32>,
    rules: Vec<Rule>,
    limits: ScanLimits,
    files: Vec<FileInfo>,
    version: String,
    content_version: String,
}

impl Engine {
    /// Builds the matcher for these files (plus the built-in signatures).
    pub fn new(files: Vec<SignatureFile>, limits: ScanLimits) -> Engine {
        let mut version = Sha256::new();
        let mut content = Sha256::new();
        for h in [&mut version, &mut content] {
            h.update(BUILTIN_VERSION);
            h.update(format!("{:?}", limits));
        }
        let mut engine = Engine {
            md5: HashMap::new(),
            sha1: HashMap::new(),
            sha256: HashMap::new(),
            hash_names: Vec::new(),
            bodies: Vec::new(),
            prefilter: None,
            by_anchor: Vec::new(),
            always: Vec::new(),
            rules: Vec::new(),
            limits,
            files: Vec::new(),
            version: String::new(),
            content_version: String::new(),
        };
        let eicar = format!("{EICAR_NAME}:0:0:{}", hex::encode(EICAR));
        engine.bodies.push(
            signatures::body::parse_line(&eicar).expect("the built-in EICAR signature parses"),
        );
        for file in files {
            version.update(file.name.as_bytes());
            version.update(file.digest);
            if !file.kind.is_hash() {
                content.update(file.name.as_bytes());
                content.update(file.digest);
            }
            engine.files.push(FileInfo {
                name: file.name.clone(),
                kind: file.kind,
                signatures: file.count(),
            });
            for h in file.hashes {
                let entry = HashEntry {
                    size: h.size,
                    name: engine.hash_names.len() as u32,
                };
                engine.hash_names.push(h.name);
                match h.kind {
                    HashKind::Md5 => {
                        if let Ok(k) = h.digest.as_slice().try_into() {
                            engine.md5.entry(k).or_default().push(entry);
                        }
                    }
                    HashKind::Sha1 => {
                        if let Ok(k) = h.digest.as_slice().try_into() {
                            engine.sha1.entry(k).or_default().push(entry);
                        }
                    }
                    HashKind::Sha256 => {
                        if let Ok(k) = h.digest.as_slice().try_into() {
                            engine.sha256.entry(k).or_default().push(entry);
                        }
                    }
                }
            }
            engine.bodies.extend(file.bodies);
            engine.rules.extend(file.rules);
        }
        let mut anchors: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for (i, b) in engine.bodies.iter().enumerate() {
            if b.anchor.is_empty() {
                engine.always.push(i as u32);
                continue;
            }
            let p = *anchors.entry(b.anchor.clone()).or_insert_with(|| {
                patterns.push(b.anchor.clone());
                engine.by_anchor.push(Vec::new());
                patterns.len() - 1
            });
            engine.by_anchor[p].push(i as u32);
        }
        engine.prefilter = AhoCorasick::new(&patterns).ok();
        engine.version = hex::encode(&version.finalize()[..8]);
        engine.content_version = hex::encode(&content.finalize()[..8]);
        engine
    }

    /// Changes with any signature file (content hash of the set).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Changes with the body signatures and rules only: mail scanned under the same
    /// content version needs no second read when only hash signatures were added.
    pub fn content_version(&self) -> &str {
        &self.content_version
    }

    pub fn files(&self) -> &[FileInfo] {
        &self.files
    }

    /// Signatures loaded, built-in ones included.
    pub fn signature_count(&self) -> usize {
        self.hash_names.len() + self.bodies.len() + self.rules.len()
    }

    /// The hash signatures (kind, digest, size, name), for answering them from an
    /// index of part hashes instead of reading contents.
    pub fn hash_signatures(&self) -> Vec<(HashKind, Vec<u8>, Option<u64>, &str)> {
        let mut out = Vec::new();
        let mut add = |kind, digest: &[u8], entries: &Vec<HashEntry>| {
            for e in entries {
                out.push((
                    kind,
                    digest.to_vec(),
                    e.size,
                    self.hash_names[e.name as usize].as_str(),
                ));
            }
        };
        for (d, e) in &self.md5 {
            add(HashKind::Md5, d, e);
        }
        for (d, e) in &self.sha1 {
            add(HashKind::Sha1, d, e);
        }
        for (d, e) in &self.sha256 {
            add(HashKind::Sha256, d, e);
        }
        out
    }

    /// Scans a file's contents: the bytes, then what they hold (archive members, or the
    /// parts of a mail message).
    pub fn scan_file(&self, name: &str, data: &[u8]) -> Report {
        let mut walk = Walk::new(self);
        walk.object("", name, data, 0, false);
        walk.report
    }

    /// Scans a mail message: its bytes, its headers and text against the rules, and
    /// every part decoded.
    pub fn scan_message(&self, raw: &[u8]) -> Report {
        let mut walk = Walk::new(self);
        walk.object("", "", raw, 0, true);
        walk.report
    }
}

struct Walk<'e> {
    engine: &'e Engine,
    report: Report,
    expanded: u64,
}

impl<'e> Walk<'e> {
    fn new(engine: &'e Engine) -> Walk<'e> {
        Walk {
            engine,
            report: Report::default(),
            expanded: 0,
        }
    }

    fn found(&mut self, name: &str, object: &str) {
        if !self
            .report
            .detections
            .iter()
            .any(|d| d.name == name && d.object == object)
        {
            self.report.detections.push(Detection {
                name: name.to_string(),
                object: object.to_string(),
            });
        }
    }

    fn limit(&mut self, stopped: Stopped, object: &str) {
        let name = match stopped {
            Stopped::LimitExceeded(_) => LIMITS_EXCEEDED,
            Stopped::Broken(_) => BROKEN_ARCHIVE,
        };
        if self.engine.limits.flag {
            self.found(name, object);
        } else {
            self.report.notes.push(stopped.to_string());
        }
    }

    /// One object: match it, then open what it holds. `path` is where it sits inside
    /// the scanned thing, `name` its own file name (may be empty).
    fn object(&mut self, path: &str, name: &str, data: &[u8], level: usize, is_mail: bool) {
        self.match_bytes(path, name, data);
        if level >= MAX_LEVEL {
            if containers::holds_files(data) || is_mail {
                self.limit(
                    Stopped::LimitExceeded(format!("{path}: nested more than {MAX_LEVEL} deep")),
                    path,
                );
            }
            return;
        }
        // Text that looks like mail is walked as mail; its parts are then searched
        // for encoded files, not the raw message a second time.
        if containers::is_archive(data) {
            self.archive(path, name, data, level);
        } else if is_mail || mime::looks_like_mail(data) {
            self.message(path, data, level);
        } else if containers::holds_files(data) {
            self.archive(path, name, data, level);
        }
    }

    /// Hashes, body patterns and file-name rules for one object's bytes.
    fn match_bytes(&mut self, path: &str, name: &str, data: &[u8]) {
        let e = self.engine;
        self.report.objects += 1;
        self.report.bytes += data.len() as u64;
        let size = data.len() as u64;
        let mut hits: Vec<u32> = Vec::new();
        let mut check = |entries: Option<&Vec<HashEntry>>| {
            for h in entries.into_iter().flatten() {
                if h.size.is_none_or(|s| s == size) {
                    hits.push(h.name);
                }
            }
        };
        if !e.md5.is_empty() {
            check(e.md5.get(&<[u8; 16]>::from(Md5::digest(data))));
        }
        if !e.sha1.is_empty() {
            check(e.sha1.get(&<[u8; 20]>::from(Sha1::digest(data))));
        }
        if !e.sha256.is_empty() {
            check(e.sha256.get(&<[u8; 32]>::from(Sha256::digest(data))));
        }
        for h in hits {
            self.found(&e.hash_names[h as usize], path);
        }

        let mut checked = vec![false; e.bodies.len()];
        let mut matched = Vec::new();
        let mut verify = |i: u32| {
            let i = i as usize;
            if !checked[i] {
                checked[i] = true;
                if e.bodies[i].matches(data) {
                    matched.push(i);
                }
            }
        };
        for &i in &e.always {
            verify(i);
        }
        if let Some(ac) = &e.prefilter {
            for m in ac.find_overlapping_iter(data) {
                for &i in &e.by_anchor[m.pattern().as_usize()] {
                    verify(i);
                }
            }
        }
        for i in matched {
            self.found(&e.bodies[i].name, path);
        }

        if !name.is_empty() {
            let last = name.rsplit('/').next().unwrap_or(name);
            for r in &e.rules {
                if matches!(r.kind, RuleKind::FileName)
                    && r.regex.is_match(if r.whole_path { name } else { last })
                {
                    self.found(&r.name, path);
                }
            }
        }
    }

    fn archive(&mut self, path: &str, name: &str, data: &[u8], level: usize) {
        let mut limits = self.engine.limits.archive;
        let left = self.engine.limits.max_total.saturating_sub(self.expanded);
        limits.max_bytes = limits.max_bytes.min(left);
        let label = if name.is_empty() { "archive" } else { name };
        let mut members = Vec::new();
        // Members are matched after the walk: the closure cannot borrow `self` twice.
        let result = containers::expand(label, data, &limits, &mut |m| members.push(m));
        for m in members {
            self.expanded += m.data.len() as u64;
            let inner = &m.path[label.len() + 1..];
            let member_path = if path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}/{inner}")
            };
            // expand() has already opened nested archives; mail inside is walked here.
            self.match_bytes(&member_path, inner, &m.data);
            if !containers::is_archive(&m.data) && mime::looks_like_mail(&m.data) {
                self.message(&member_path, &m.data, level + 1);
            }
        }
        if let Err(stopped) = result {
            self.limit(stopped, path);
        }
    }

    fn message(&mut self, path: &str, raw: &[u8], level: usize) {
        let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
            return;
        };
        self.rules_on_message(path, &message);
        let mut parts = Vec::new();
        let complete = mime::walk(&message, &mut |p| parts.push(p));
        if !complete {
            self.limit(
                Stopped::LimitExceeded(format!("{path}: messages nested too deep")),
                path,
            );
        }
        for (n, part) in parts.iter().enumerate() {
            let own = part
                .filename
                .map(str::to_string)
                .unwrap_or_else(|| format!("part{}", n + 1));
            let part_path = if path.is_empty() {
                own
            } else {
                format!("{path}/{own}")
            };
            // Nested messages' parts come in the same walk; the message/rfc822 part
            // itself is matched as bytes but not walked again.
            let name = part.filename.unwrap_or("");
            self.match_bytes(&part_path, name, &part.data);
            if level + 1 >= MAX_LEVEL {
                continue;
            }
            if containers::is_archive(&part.data)
                || (!part.is_message && containers::holds_files(&part.data))
            {
                self.archive(&part_path, name, &part.data, level + 1);
            } else if !part.is_message && mime::looks_like_mail(&part.data) {
                // A forwarded message sent as a plain attachment.
                self.message(&part_path, &part.data, level + 1);
            }
        }
    }

    fn rules_on_message(&mut self, path: &str, message: &mail_parser::Message<'_>) {
        let e = self.engine;
        if !e
            .rules
            .iter()
            .any(|r| !matches!(r.kind, RuleKind::FileName))
        {
            return;
        }
        let mut text: Option<String> = None;
        for r in &e.rules {
            let hit = match &r.kind {
                RuleKind::FileName => false,
                RuleKind::Body => r
                    .regex
                    .is_match(text.get_or_insert_with(|| crate::text::searchable_text(message))),
                RuleKind::Header(field) => message
                    .headers()
                    .iter()
                    .filter(|h| h.name.as_str().eq_ignore_ascii_case(field))
                    .any(|h| r.regex.is_match(&header_text(message, h))),
            };
            if hit {
                self.found(&r.name, path);
            }
        }
    }
}

/// A header's value as a reader sees it: decoded words decoded, addresses listed.
fn header_text(message: &mail_parser::Message<'_>, h: &mail_parser::Header<'_>) -> String {
    use mail_parser::HeaderValue;
    match &h.value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(", "),
        HeaderValue::Address(a) => a
            .iter()
            .map(|addr| match (addr.name(), addr.address()) {
                (Some(n), Some(a)) => format!("{n} <{a}>"),
                (None, Some(a)) => a.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => message
            .raw_message()
            .get(h.offset_start as usize..h.offset_end as usize)
            .map(|raw| {
                String::from_utf8_lossy(raw)
                    .split(['\r', '\n'])
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
