use super::*;

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        max_message_size: 100,
        max_recipients: 2,
        max_errors: 8,
        tls_available: true,
        submission: false,
        plaintext_auth_allowed: true,
    }
}

/// Feeds `input`, answers every recipient with `verdict` and every message with a
/// queue id, and returns all output as text.
fn run(s: &mut Session, input: &str) -> (String, Vec<Event>) {
    s.feed(input.as_bytes());
    let mut events = Vec::new();
    loop {
        match s.poll() {
            Event::NeedInput => break,
            Event::CheckRecipient(a) => {
                let v = if a.ends_with("@mx.test") {
                    RcptVerdict::Accept
                } else {
                    RcptVerdict::Reject(Reply::new(550, [5, 7, 1], "Relay denied"))
                };
                events.push(Event::CheckRecipient(a));
                s.rcpt_verdict(v);
            }
            ev @ Event::Message { .. } => {
                events.push(ev);
                s.message_result(Ok("Q1".into()));
            }
            Event::StartTls => {
                events.push(Event::StartTls);
                break;
            }
            Event::Authenticate { user, password } => {
                s.auth_result(if password == "pw" {
                    Ok(user.to_ascii_lowercase())
                } else {
                    Err(Reply::new(
                        535,
                        [5, 7, 8],
                        "Authentication credentials invalid",
                    ))
                });
            }
            Event::Close => {
                events.push(Event::Close);
                break;
            }
        }
    }
    (String::from_utf8(s.take_output()).unwrap(), events)
}

fn codes(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect()
}

#[test]
fn pipelined_transaction() {
    let mut s = Session::new(config());
    let (out, events) = run(
        &mut s,
        "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        codes(&out),
        ["220", "250", "250", "250", "550", "354", "250", "221"]
    );
    assert!(
        out.contains("\r\n250-PIPELINING\r\n") && out.contains("\r\n250 STARTTLS\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\n250-SIZE 100\r\n"), "{out}");
    let Event::Message { envelope, data } = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!(envelope.rcpt_to, ["b@mx.test"]);
    assert_eq!(data, b"Subject: hi\r\n\r\n.dot\r\n");
    assert_eq!(events.last(), Some(&Event::Close));
}

#[test]
fn sequence_and_syntax_errors() {
    let mut s = Session::new(config());
    let (out, _) = run(&mut s, "MAIL FROM:<a@x>\r\nEHLO c\r\nRCPT TO:<b@mx.test>\r\nDATA\r\nFOO\r\nMAIL FROM:bad\r\nMAIL FROM:<a@x.test>\r\nDATA\r\nRCPT TO:<nodomain>\r\n");
    assert_eq!(
        codes(&out),
        ["220", "503", "250", "503", "503", "500", "501", "250", "554", "501"]
    );
}

#[test]
fn size_and_recipient_limits() {
    let mut s = Session::new(config());
    let (out, _) = run(&mut s, "EHLO c\r\nMAIL FROM:<a@x.test> SIZE=1000\r\n");
    assert_eq!(codes(&out), ["220", "250", "552"]);
    let big = "x".repeat(300);
    let (out, events) = run(
        &mut s,
        &format!("MAIL FROM:<a@x.test>\r\nRCPT TO:<a@mx.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n{big}\r\n.\r\nNOOP\r\n"),
    );
    assert_eq!(
        codes(&out),
        ["250", "250", "250", "452", "354", "552", "250"]
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Message { .. })));
}

#[test]
fn long_lines_and_error_limit() {
    let mut s = Session::new(config());
    let long = "A".repeat(MAX_COMMAND_LINE + 10);
    let (out, _) = run(&mut s, &format!("NOOP {long}\r\nNOOP\r\n"));
    assert_eq!(codes(&out), ["220", "500", "250"]);
    let (out, events) = run(&mut s, &"BOGUS\r\n".repeat(10));
    assert!(
        out.ends_with("421 4.7.0 Too many errors, closing connection\r\n"),
        "{out}"
    );
    assert_eq!(events, [Event::Close]);
}

#[test]
fn long_line_split_across_reads() {
    let mut s = Session::new(config());
    let (out, _) = run(&mut s, &"B".repeat(3000));
    assert_eq!(codes(&out), ["220"]);
    let (out, _) = run(&mut s, &format!("{}\r\nNOOP\r\n", "B".repeat(3000)));
    assert_eq!(codes(&out), ["500", "250"]);
}

#[test]
fn starttls_discards_pipelined_input_and_resets() {
    let mut s = Session::new(config());
    let (out, events) = run(&mut s, "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
    assert_eq!(codes(&out), ["220", "250", "220"]);
    assert_eq!(events, [Event::StartTls]);
    s.tls_established();
    let (out, _) = run(&mut s, "MAIL FROM:<a@x.test>\r\nEHLO c\r\nSTARTTLS\r\n");
    assert_eq!(codes(&out), ["503", "250", "503"]);
    assert!(
        !out.contains("STARTTLS\r\n"),
        "no STARTTLS offered inside TLS: {out}"
    );
}

#[test]
fn null_sender_and_vrfy() {
    let mut s = Session::new(config());
    let (out, _) = run(&mut s, "HELO c\r\nVRFY bob\r\nMAIL FROM:<>\r\nRCPT TO:<b@mx.test>\r\nRSET\r\nRCPT TO:<b@mx.test>\r\n");
    assert_eq!(
        codes(&out),
        ["220", "250", "252", "250", "250", "250", "503"]
    );
}

#[test]
fn garbage_never_panics() {
    let mut s = Session::new(config());
    let mut seed: u32 = 7;
    for _ in 0..2000 {
        let mut chunk = Vec::new();
        for _ in 0..64 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            chunk.push(b"MAILRCPT FROM:<>@ \r\n.DATA\x00\xff"[(seed >> 16) as usize % 27]);
        }
        s.feed(&chunk);
        loop {
            match s.poll() {
                Event::CheckRecipient(_) => s.rcpt_verdict(RcptVerdict::Accept),
                Event::Message { .. } => s.message_result(Ok("x".into())),
                Event::StartTls => s.tls_established(),
                Event::Authenticate { .. } => s.auth_result(Ok("u@x".into())),
                Event::NeedInput | Event::Close => break,
            }
        }
        s.take_output();
        if s.is_closed() {
            s = Session::new(config());
        }
    }
}

fn submission(plaintext: bool) -> SessionConfig {
    SessionConfig {
        submission: true,
        plaintext_auth_allowed: plaintext,
        ..config()
    }
}

#[test]
fn submission_requires_auth_and_own_sender() {
    let mut s = Session::new(submission(true));
    // "\0bob@mx.test\0pw" and "\0bob@mx.test\0no"
    let (out, _) = run(
        &mut s,
        "EHLO c\r\nMAIL FROM:<bob@mx.test>\r\nAUTH PLAIN AGJvYkBteC50ZXN0AG5v\r\nAUTH PLAIN AGJvYkBteC50ZXN0AHB3\r\nAUTH PLAIN AGJvYkBteC50ZXN0AHB3\r\nMAIL FROM:<eve@mx.test>\r\nMAIL FROM:<Bob@MX.test>\r\n",
    );
    assert!(
        out.contains("250 AUTH PLAIN LOGIN\r\n") || out.contains("250-AUTH PLAIN LOGIN\r\n"),
        "{out}"
    );
    assert_eq!(
        codes(&out),
        ["220", "250", "530", "535", "235", "503", "553", "250"]
    );
}

#[test]
fn auth_login_and_plain_continuations() {
    let mut s = Session::new(submission(true));
    // AUTH LOGIN: "bob@mx.test", "pw"; then a cancelled PLAIN.
    let (out, _) = run(&mut s, "EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nYm9iQG14LnRlc3Q=\r\ncHc=\r\nMAIL FROM:<bob@mx.test>\r\n");
    assert!(
        out.contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0"),
        "{out}"
    );
    assert!(
        out.contains("334 \r\n501 5.7.0 Authentication cancelled"),
        "{out}"
    );
    assert!(out.ends_with("250 2.1.0 OK\r\n"), "{out}");
    assert_eq!(s.authenticated(), Some("bob@mx.test"));
}

#[test]
fn no_plaintext_auth_before_tls_unless_allowed() {
    let mut s = Session::new(submission(false));
    let (out, events) = run(
        &mut s,
        "EHLO c\r\nAUTH PLAIN AGJvYkBteC50ZXN0AHB3\r\nSTARTTLS\r\n",
    );
    assert!(!out.contains("AUTH PLAIN LOGIN"), "{out}");
    assert!(out.contains("538 5.7.11"), "{out}");
    assert_eq!(events, [Event::StartTls]);
    s.tls_established();
    let (out, _) = run(&mut s, "EHLO c\r\nAUTH PLAIN AGJvYkBteC50ZXN0AHB3\r\n");
    assert!(
        out.contains("AUTH PLAIN LOGIN") && out.contains("235 2.7.0"),
        "{out}"
    );
}
