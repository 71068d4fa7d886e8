//! The POP3 session state machine fed an arbitrary byte stream in arbitrary pieces,
//! with a small maildrop: it must never panic or loop without asking for input.
#![no_main]
use lazaret_proto::pop3::{Event, MaildropEntry, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let mut session = Session::new(SessionConfig {
        hostname: "mx.fuzz.test".into(),
        tls_available: knobs & 1 != 0,
        plaintext_allowed: knobs & 2 != 0,
        max_errors: 10,
    });
    let piece = usize::from(knobs >> 2) + 1;
    let mut chunks = stream.chunks(piece);
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(steps < 100_000 + stream.len() * 8, "the session loops");
        match session.poll() {
            Event::NeedInput => match chunks.next() {
                Some(c) => session.feed(c),
                None => break,
            },
            Event::Authenticate { password, .. } => session.auth_result(if password == "pw" {
                Ok((0..3)
                    .map(|i| MaildropEntry {
                        id: format!("m{i}"),
                        size: 40 + i,
                        uidl: format!("u{i}"),
                    })
                    .collect())
            } else {
                Err("bad credentials".into())
            }),
            Event::Retrieve { .. } => {
                session.retrieved(Ok(b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n".to_vec()))
            }
            Event::Update { .. } => session.update_result(Ok(())),
            Event::StartTls => session.tls_established(),
            Event::Close => break,
        }
        session.take_output();
    }
});
