use super::*;
use crate::pop3::format_for_retr;

fn config(plaintext: bool) -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        tls_available: true,
        plaintext_allowed: plaintext,
        max_errors: 10,
    }
}

fn maildrop() -> Vec<MaildropEntry> {
    vec![
        MaildropEntry {
            id: "m1".into(),
            size: 100,
            uidl: "7.1".into(),
        },
        MaildropEntry {
            id: "m2".into(),
            size: 50,
            uidl: "7.2".into(),
        },
    ]
}

/// Feeds input and answers requests: password "pw" is right; messages are "Subject: <id>".
fn run(s: &mut Session, input: &str, deleted: &mut Vec<String>) -> String {
    s.feed(input.as_bytes());
    loop {
        match s.poll() {
            Event::NeedInput | Event::Close | Event::StartTls => break,
            Event::Authenticate { user, password } => {
                s.auth_result(if user == "alice" && password == "pw" {
                    Ok(maildrop())
                } else {
                    Err("[AUTH] invalid login".into())
                })
            }
            Event::Retrieve { id, top } => s.retrieved(Ok(format_for_retr(
                format!("Subject: {id}\r\n\r\nb1\r\nb2\r\n").as_bytes(),
                top,
            ))),
            Event::Update { delete } => {
                *deleted = delete;
                s.update_result(Ok(()));
            }
        }
    }
    String::from_utf8(s.take_output()).unwrap()
}

#[test]
fn login_list_retrieve_delete() {
    let mut s = Session::new(config(true));
    let mut deleted = Vec::new();
    let out = run(&mut s, "USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL 2\r\nTOP 1 1\r\nRETR 2\r\nDELE 1\r\nDELE 1\r\nSTAT\r\nRSET\r\nDELE 2\r\nRETR 2\r\nQUIT\r\n", &mut deleted);
    let expected = "+OK mx.test Lazaret POP3 ready\r\n+OK send PASS\r\n-ERR [AUTH] invalid login\r\n+OK send PASS\r\n\
+OK maildrop has 2 messages (150 octets)\r\n+OK 2 150\r\n+OK listing follows\r\n1 100\r\n2 50\r\n.\r\n+OK 2 7.2\r\n\
+OK message follows\r\nSubject: m1\r\n\r\nb1\r\n.\r\n+OK message follows\r\nSubject: m2\r\n\r\nb1\r\nb2\r\n.\r\n\
+OK message 1 deleted\r\n-ERR message already deleted\r\n+OK 1 50\r\n+OK maildrop has 2 messages\r\n+OK message 2 deleted\r\n\
-ERR message already deleted\r\n+OK mx.test signing off\r\n";
    assert_eq!(out, expected);
    assert_eq!(deleted, ["m2"]);
}

#[test]
fn quit_before_login_deletes_nothing_and_plaintext_needs_tls() {
    let mut s = Session::new(config(false));
    let mut deleted = vec!["sentinel".to_string()];
    let out = run(&mut s, "USER alice\r\nCAPA\r\nQUIT\r\n", &mut deleted);
    assert!(
        out.contains("-ERR [AUTH] plaintext authentication is not allowed"),
        "{out}"
    );
    assert!(out.contains("STLS\r\n"));
    assert!(out.ends_with("+OK mx.test signing off\r\n"));
    assert_eq!(deleted, ["sentinel"]);
}

#[test]
fn stls_drops_pipelined_input_then_allows_login() {
    let mut s = Session::new(config(false));
    let mut d = Vec::new();
    let out = run(&mut s, "STLS\r\nUSER evil\r\n", &mut d);
    assert!(out.ends_with("+OK begin TLS negotiation\r\n"));
    assert_eq!(s.poll(), Event::StartTls);
    s.tls_established();
    let out = run(
        &mut s,
        "CAPA\r\nPASS pw\r\nAUTH PLAIN AGFsaWNlAHB3\r\nSTAT\r\n",
        &mut d,
    );
    assert!(!out.contains("STLS"), "{out}");
    assert!(
        out.contains("-ERR send USER first"),
        "the injected USER was dropped: {out}"
    );
    assert!(out.contains("+OK maildrop has 2"), "{out}");
}

#[test]
fn sasl_plain_with_continuation_and_errors() {
    let mut s = Session::new(config(true));
    let mut d = Vec::new();
    let out = run(&mut s, "AUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nAGFsaWNlAHB3\r\nLIST 9\r\nLIST x\r\nRETR 0\r\n", &mut d);
    assert!(out.contains("+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"));
    assert!(out.contains("-ERR unsupported SASL mechanism"));
    assert!(out.contains("+ \r\n-ERR [AUTH] authentication cancelled"));
    assert!(out.contains("+OK maildrop has 2"));
    assert_eq!(out.matches("-ERR no such message").count(), 2, "{out}");
    assert!(out.contains("-ERR give a message number"));
}

#[test]
fn long_lines_and_garbage() {
    let mut s = Session::new(config(true));
    let mut d = Vec::new();
    let out = run(
        &mut s,
        &format!("USER {}\r\nNOOP\r\n", "a".repeat(5000)),
        &mut d,
    );
    assert!(out.contains("-ERR line too long"), "{out}");
    let mut seed: u32 = 99;
    for _ in 0..500 {
        let mut chunk = String::new();
        for _ in 0..40 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            chunk.push(b"USERPASDLTOIQ 12\r\n\xff"[(seed >> 16) as usize % 19] as char);
        }
        run(&mut s, &chunk, &mut d);
        if matches!(s.poll(), Event::Close) {
            s = Session::new(config(true));
        }
    }
}
