//! Near-duplicate fingerprints of a message's readable text, for grouping the copies of
//! a worm that changes its subject, its sender and some of its words on every copy.
//!
//! The text is normalised first (lower case; URLs reduced to their host; addresses,
//! numbers and long hex strings replaced by placeholders; quoted replies, attribution
//! lines and signatures dropped), so that what a mailer or a template varies per copy
//! does not count. A text of at least `MIN_WORDS` words gets a MinHash signature over
//! its word shingles (`HASHES` values; two texts agree on each value with a probability
//! equal to the Jaccard similarity of their shingle sets) and `BANDS` band keys made
//! of `ROWS` consecutive values each, so that a store finds candidate near-duplicates
//! by point lookups, never by comparing pairs. A shorter text gets one exact key of its
//! normalised words instead, as rspamd's fuzzy_check does: too few shingles make the
//! MinHash estimate noisy.
//!
//! The hash functions are written here, not taken from `std`: keys are stored, so they
//! must come out the same in every build and version, which `std`'s hashers do not
//! promise.

/// MinHash values per signature.
pub const HASHES: usize = 32;
/// Values per band key; `HASHES / ROWS` band keys per text.
pub const ROWS: usize = 4;
pub const BANDS: usize = HASHES / ROWS;
/// Below this many words a text gets an exact key instead of a signature.
pub const MIN_WORDS: usize = 64;
/// Words per shingle.
const SHINGLE: usize = 2;
/// Text beyond this is not read: the start of a message is what its copies share.
const MAX_TEXT: usize = 64 << 10;
/// Words a signature is taken over: the first 500 (a page) say what a message is, and
/// the cost of reading and hashing grows with every word (measured: 47 µs for all
/// 1,900 words of a 10 KB text, plus 21 µs of MinHash per 1,000 shingles).
const MAX_WORDS: usize = 500;

/// What a message's text contributes to clustering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFingerprint {
    /// No words at all (an attachment-only message): nothing to compare.
    Empty,
    /// A short text: the hash of its normalised words.
    Exact(u64),
    /// A long text: its MinHash signature.
    MinHash([u32; HASHES]),
}

impl TextFingerprint {
    /// Fingerprints `text` (text/plain and tag-stripped HTML of the message).
    pub fn of(text: &str) -> TextFingerprint {
        // Words as hashes: no string is kept per word.
        let mut words: Vec<u64> = Vec::with_capacity(text.len() / 6);
        for_each_word(text, |w| {
            words.push(Fnv::hash(b"word", w.as_bytes()));
            words.len() < MAX_WORDS
        });
        if words.is_empty() {
            return TextFingerprint::Empty;
        }
        if words.len() < MIN_WORDS {
            let exact = words
                .iter()
                .fold(Fnv::hash(b"exact", b""), |h, w| combine(h, *w));
            return TextFingerprint::Exact(exact);
        }
        let mut mins = [u32::MAX; HASHES];
        for shingle in words.windows(SHINGLE) {
            let base = shingle
                .iter()
                .fold(0x0053_4849_4e47_4c45_u64, |h, w| combine(h, *w));
            for (i, min) in mins.iter_mut().enumerate() {
                // One universal hash per value: (a*x + b) over 64 bits, the high half.
                let (a, b) = PERMUTATIONS[i];
                let v = (a.wrapping_mul(base).wrapping_add(b) >> 32) as u32;
                if v < *min {
                    *min = v;
                }
            }
        }
        TextFingerprint::MinHash(mins)
    }

    /// The keys a store looks candidates up by: the band keys of a signature, or the
    /// exact key of a short text.
    pub fn keys(&self) -> Vec<u64> {
        match self {
            TextFingerprint::Empty => Vec::new(),
            TextFingerprint::Exact(k) => vec![*k],
            TextFingerprint::MinHash(mins) => mins
                .chunks(ROWS)
                .enumerate()
                .map(|(band, values)| {
                    let mut h = Fnv::new(b"band");
                    h.write(&(band as u32).to_le_bytes());
                    for v in values {
                        h.write(&v.to_le_bytes());
                    }
                    h.finish()
                })
                .collect(),
        }
    }

    /// The signature as bytes, for storing (none for the other kinds).
    pub fn signature_bytes(&self) -> Option<Vec<u8>> {
        match self {
            TextFingerprint::MinHash(mins) => {
                Some(mins.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
            _ => None,
        }
    }
}

/// How many of two stored signatures' values agree (`HASHES` for identical shingle
/// sets); None if either is not a signature.
pub fn agreement(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != HASHES * 4 || b.len() != HASHES * 4 {
        return None;
    }
    Some(
        a.chunks_exact(4)
            .zip(b.chunks_exact(4))
            .filter(|(x, y)| x == y)
            .count(),
    )
}

/// A stable key for an exact thing (an attachment's SHA-256, say), in the same key
/// space as the text keys but never equal to one by construction of the salt.
pub fn exact_key(kind: &[u8], bytes: &[u8]) -> u64 {
    let mut h = Fnv::new(kind);
    h.write(bytes);
    h.finish()
}

/// The words of `text` after normalisation (see the module comment).
pub fn normalised_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for_each_word(text, |w| {
        words.push(w.to_string());
        true
    });
    words
}

/// Calls `f` with each normalised word of `text`, in order, until it returns false.
fn for_each_word(text: &str, mut f: impl FnMut(&str) -> bool) {
    let mut text = text;
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    let mut lower = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed == "--" || line == "-- " {
            break; // the signature block: the same sender's, not the message's
        }
        if trimmed.starts_with('>') || is_attribution(trimmed) {
            continue;
        }
        for token in trimmed.split_whitespace() {
            lower.clear();
            if token.is_ascii() {
                lower.push_str(token);
                lower.make_ascii_lowercase();
            } else {
                lower.extend(token.chars().flat_map(char::to_lowercase));
            }
            if !normalise_token(&lower, &mut f) {
                return;
            }
        }
    }
}

/// "On Monday, Ann <ann@x> wrote:" and its translations end with "wrote:"-like words;
/// the quoted text below is dropped line by line anyway.
fn is_attribution(line: &str) -> bool {
    if !line.ends_with(':') {
        return false;
    }
    let lower = line.to_lowercase();
    lower.ends_with("wrote:") || lower.ends_with("schrieb:") || lower.ends_with("a écrit :")
}

/// One whitespace-separated token (lower case already) as words; false once `f` wants
/// no more.
fn normalise_token(token: &str, f: &mut impl FnMut(&str) -> bool) -> bool {
    let bare = token.trim_matches(|c: char| !c.is_alphanumeric());
    if let Some(host) = url_host(bare) {
        return f(host);
    }
    if bare.contains('@') && bare.contains('.') {
        return f("<addr>");
    }
    for word in bare.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let more = if word.len() >= 8 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
            f("<hex>")
        } else if word.bytes().any(|b| b.is_ascii_digit()) {
            f("<num>")
        } else {
            f(word)
        };
        if !more {
            return false;
        }
    }
    true
}

/// The host of `http(s)://host/...` or `www.host...`: what a link's copies share.
fn url_host(token: &str) -> Option<&str> {
    let rest = token
        .strip_prefix("https://")
        .or_else(|| token.strip_prefix("http://"))
        .or_else(|| token.starts_with("www.").then_some(token))?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Folds one more hash into a running one (order matters), with splitmix64's mix.
fn combine(h: u64, next: u64) -> u64 {
    mix(h.rotate_left(23) ^ next)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a (64 bits) with a final mix: small and stable across builds.
struct Fnv(u64);

impl Fnv {
    fn new(salt: &[u8]) -> Fnv {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(salt);
        h.write(&[0xff]);
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// splitmix64's finaliser: FNV's low bits alone mix poorly.
    fn finish(&self) -> u64 {
        mix(self.0)
    }

    fn hash(salt: &[u8], bytes: &[u8]) -> u64 {
        let mut h = Fnv::new(salt);
        h.write(bytes);
        h.finish()
    }
}

/// Fixed (a, b) pairs for the MinHash functions (a odd). Generated once with
/// splitmix64 from seed 0x01a2_a7e7; fixed here because stored signatures depend on them.
const PERMUTATIONS: [(u64, u64); HASHES] = permutations();

const fn permutations() -> [(u64, u64); HASHES] {
    let mut out = [(0u64, 0u64); HASHES];
    let mut state: u64 = 0x01a2_a7e7;
    let mut i = 0;
    while i < HASHES {
        let a = splitmix(&mut state) | 1;
        let b = splitmix(&mut state);
        out[i] = (a, b);
        i += 1;
    }
    out
}

const fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_drops_what_copies_vary() {
        let text =
            "Hello Ann,\nPay 1200 EUR at https://evil.example/pay?id=77 or mail bob@x.test\n\
                    ref DEADBEEF1234\n> quoted reply\nOn Monday Bob wrote:\n-- \nBob\nphone";
        assert_eq!(
            normalised_words(text),
            [
                "hello",
                "ann",
                "pay",
                "<num>",
                "eur",
                "at",
                "evil.example",
                "or",
                "mail",
                "<addr>",
                "ref",
                "<hex>"
            ]
        );
    }

    #[test]
    fn short_texts_get_an_exact_key_that_ignores_numbers_and_case() {
        let a = TextFingerprint::of("Your invoice 1234 is attached");
        let b = TextFingerprint::of("your INVOICE 98 is attached");
        assert!(matches!(a, TextFingerprint::Exact(_)));
        assert_eq!(a, b);
        assert_eq!(a.keys().len(), 1);
        assert_eq!(TextFingerprint::of(" \n "), TextFingerprint::Empty);
    }

    #[test]
    fn near_copies_agree_on_most_values_and_unrelated_texts_on_few() {
        // Distinct words: letters only, so they survive normalisation.
        let base: Vec<String> = (0..150).map(spell).collect();
        let mut copy = base.clone();
        for i in (0..150).step_by(10) {
            copy[i] = spell(1000 + i); // 10% of the words changed
        }
        let sig = |w: &[String]| TextFingerprint::of(&w.join(" ")).signature_bytes().unwrap();
        let near = agreement(&sig(&base), &sig(&copy)).unwrap();
        let other: Vec<String> = (0..150).map(|i| spell(5000 + i)).collect();
        let far = agreement(&sig(&base), &sig(&other)).unwrap();
        assert!(near >= 18, "near copies agree on {near} of {HASHES}");
        assert!(far <= 4, "unrelated texts agree on {far} of {HASHES}");
        // A band of a near copy is very likely shared.
        let (ka, kb) = (
            TextFingerprint::of(&base.join(" ")).keys(),
            TextFingerprint::of(&copy.join(" ")).keys(),
        );
        assert_eq!(ka.len(), BANDS);
        assert!(ka.iter().any(|k| kb.contains(k)));
    }

    /// A letters-only word for a number.
    fn spell(mut n: usize) -> String {
        let mut s = String::from("z");
        loop {
            s.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
            if n == 0 {
                return s;
            }
        }
    }

    #[test]
    fn keys_are_stable_across_builds() {
        // Stored keys: a change here would split every cluster in existing stores.
        let keys = TextFingerprint::of("hello world").keys();
        assert_eq!(keys, TextFingerprint::of("HELLO  world").keys());
        assert_eq!(keys, vec![0x5de8_2820_90da_25b7]);
        assert_eq!(exact_key(b"part", b"abc"), 0x62f1_e073_83e2_1a40);
        assert_eq!(exact_key(b"a", b"b"), exact_key(b"a", b"b"));
        assert_ne!(exact_key(b"a", b"b"), exact_key(b"b", b"b"));
    }
}
