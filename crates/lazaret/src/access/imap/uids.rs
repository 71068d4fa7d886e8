//! UID sets as IMAP writes them, and the UIDs missing from a folder (VANISHED).

use lazaret_proto::imap::types::sequence::{SeqOrUid, Sequence, SequenceSet};
use lazaret_store::FolderEntry;

/// UIDs as a compact IMAP set: `1:3,7`.
pub fn uid_set(uids: &[i64]) -> String {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &u in uids {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == u => *hi = u,
            _ => ranges.push((u, u)),
        }
    }
    ranges_text(&ranges)
}

/// Inclusive ranges as an IMAP set.
pub fn ranges_text(ranges: &[(i64, i64)]) -> String {
    ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}:{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A client's UID set as sorted, merged, inclusive ranges within `1..=max` (`*` is
/// `max`).
pub fn uid_ranges(set: &SequenceSet, max: i64) -> Vec<(i64, i64)> {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => i64::from(v.get()),
        SeqOrUid::Asterisk => max,
    };
    let mut ranges: Vec<(i64, i64)> = set
        .0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(a) => (value(a), value(a)),
            Sequence::Range(a, b) => (value(a).min(value(b)), value(a).max(value(b))),
        })
        .map(|(lo, hi)| (lo.max(1), hi.min(max)))
        .filter(|(lo, hi)| lo <= hi)
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some((_, last)) if lo <= *last + 1 => *last = (*last).max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

pub fn in_ranges(uid: i64, ranges: &[(i64, i64)]) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < uid);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= uid)
}

/// The UIDs within `ranges` that no entry has, as ranges: what VANISHED (EARLIER)
/// reports. Lazaret keeps no list of expunged UIDs; RFC 7162 3.2.5.1 lets a server
/// report UIDs it cannot tell were expunged since the client's mod-sequence, and a
/// gone UID the client never had is ignored by it. In ranges this stays short even
/// for a folder a worm cleanup emptied.
pub fn missing(entries: &[FolderEntry], ranges: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut gaps = Vec::new();
    for &(lo, hi) in ranges {
        let mut next = lo;
        let start = entries.partition_point(|e| e.uid < lo);
        for e in entries[start..].iter().take_while(|e| e.uid <= hi) {
            if e.uid > next {
                gaps.push((next, e.uid - 1));
            }
            next = e.uid + 1;
        }
        if next <= hi {
            gaps.push((next, hi));
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: i64) -> FolderEntry {
        FolderEntry {
            entry: uid,
            uid,
            message: String::new(),
            flags: Vec::new(),
            internal_date: 0,
            size: 0,
            modseq: 1,
        }
    }

    #[test]
    fn sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }

    #[test]
    fn missing_uids_are_the_gaps_within_the_ranges() {
        let entries: Vec<FolderEntry> = [2, 3, 7, 10].into_iter().map(entry).collect();
        assert_eq!(
            missing(&entries, &[(1, 12)]),
            vec![(1, 1), (4, 6), (8, 9), (11, 12)]
        );
        assert_eq!(missing(&entries, &[(3, 7)]), vec![(4, 6)]);
        assert_eq!(missing(&entries, &[(2, 3), (10, 10)]), vec![]);
        assert!(in_ranges(5, &[(1, 2), (4, 6)]) && !in_ranges(3, &[(1, 2), (4, 6)]));
    }
}
