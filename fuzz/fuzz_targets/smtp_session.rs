//! The SMTP session state machine fed an arbitrary byte stream in arbitrary pieces,
//! the server's side answered the same way every time: it must never panic, never loop
//! without asking for input, and its output must stay bounded by what came in.
#![no_main]
use lazaret_proto::smtp::{Event, RcptVerdict, Reply, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let mut session = Session::new(SessionConfig {
        hostname: "mx.fuzz.test".into(),
        max_message_size: 4096,
        max_recipients: 5,
        max_errors: 10,
        tls_available: knobs & 1 != 0,
        submission: knobs & 2 != 0,
        plaintext_auth_allowed: knobs & 4 != 0,
    });
    let piece = usize::from(knobs >> 3) + 1;
    let mut chunks = stream.chunks(piece);
    let mut output = session.take_output().len();
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(steps < 100_000 + stream.len() * 8, "the session loops");
        match session.poll() {
            Event::NeedInput => match chunks.next() {
                Some(c) => session.feed(c),
                None => break,
            },
            Event::CheckRecipient(r) => session.rcpt_verdict(if r.contains("deny") {
                RcptVerdict::Reject(Reply::new(550, [5, 1, 1], "no such user"))
            } else {
                RcptVerdict::Accept
            }),
            Event::Authenticate { user, password } => session.auth_result(if password == "pw" {
                Ok(user)
            } else {
                Err(Reply::new(535, [5, 7, 8], "bad credentials"))
            }),
            Event::Message { data, .. } => {
                assert!(
                    data.len() <= 4096 + 2,
                    "a message over the size limit was accepted"
                );
                session.message_result(Ok("00fuzz".into()))
            }
            Event::StartTls => session.tls_established(),
            Event::Close => break,
        }
        output += session.take_output().len();
        assert!(output <= 4096 + 512 * steps, "output out of proportion");
    }
});
