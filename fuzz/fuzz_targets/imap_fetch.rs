//! What IMAP FETCH computes from a message's bytes: ENVELOPE, BODYSTRUCTURE and body
//! sections of any path, for arbitrary input.
#![no_main]
use lazaret_proto::imap::structure;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&path, raw)) = data.split_first() else {
        return;
    };
    let Some(message) = structure::parse(raw) else {
        return;
    };
    let mut out = Vec::new();
    structure::envelope(&mut out, &message);
    structure::body_structure(&mut out, &message, path & 1 != 0);
    let path: Vec<u32> = [path & 3, path >> 2 & 3, path >> 4 & 3]
        .into_iter()
        .map(u32::from)
        .filter(|&p| p > 0)
        .collect();
    for what in [
        structure::SectionText::All,
        structure::SectionText::Header,
        structure::SectionText::HeaderFields {
            names: vec!["Subject".into(), "From".into()],
            not: true,
        },
        structure::SectionText::Text,
        structure::SectionText::Mime,
    ] {
        let _ = structure::section(&message, &path, &what);
    }
});
