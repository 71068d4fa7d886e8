//! One SMTP server session as a state machine. The server feeds it bytes and answers
//! its requests (is this recipient acceptable? store this message; start TLS); the
//! session decides every reply.

use super::reply::Reply;
use crate::input::{Input, Line};
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ParseError, Request};

/// Longest command line accepted, CRLF included. RFC 5321 asks for at least 512;
/// extensions make real lines longer, so allow a generous margin.
pub const MAX_COMMAND_LINE: usize = 4096;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_errors: u32,
    /// STARTTLS is offered when the server has a certificate and the session is plain.
    pub tls_available: bool,
    /// Submission port: AUTH is offered and required before MAIL, the sender must be
    /// the authenticated user, and authenticated sessions may relay.
    pub submission: bool,
    /// Passwords may be sent in the clear (loopback, or once TLS is up).
    pub plaintext_auth_allowed: bool,
}

/// What the client asked for in one mail transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    pub esmtp: bool,
    pub tls: bool,
    /// Empty for the null sender `<>`.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The user this session authenticated as (submission only).
    pub authenticated: Option<String>,
}

/// What the session needs from the server next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Flush pending output, then read more bytes and `feed` them.
    NeedInput,
    /// Decide on this recipient and call `rcpt_verdict`; `authenticated()` tells
    /// whether the session may relay.
    CheckRecipient(String),
    /// Check this login and call `auth_result`.
    Authenticate { user: String, password: String },
    /// Make this message durable (or refuse it) and call `message_result`.
    Message { envelope: Envelope, data: Vec<u8> },
    /// Flush pending output, run the TLS handshake, then call `tls_established`.
    StartTls,
    /// Flush pending output and close the connection.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    Accept,
    /// Accepted under another address: the bare `postmaster` (RFC 5321 4.5.1) under
    /// the postmaster mailbox of a local domain.
    AcceptAs(String),
    Reject(Reply),
}

enum Stage {
    Command,
    /// Throwing away the rest of an over-long command line.
    SkipLine,
    AwaitRcptVerdict(String),
    /// AUTH PLAIN without an initial response: waiting for the client's line.
    AuthPlain,
    /// AUTH LOGIN: waiting for the user name, then for the password.
    AuthLoginUser,
    AuthLoginPassword(String),
    AwaitAuth,
    Data(DataReceiver, Vec<u8>),
    DataDiscard(DummyDataReceiver, Reply),
    AwaitMessageResult,
    AwaitTls,
    Closed,
}

pub struct Session {
    config: SessionConfig,
    stage: Stage,
    input: Input,
    output: Vec<u8>,
    envelope: Envelope,
    in_transaction: bool,
    /// MAIL commands accepted so far: tells the driver a new transaction began.
    transactions: u64,
    errors: u32,
    pending: Option<Event>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let greeting =
            Reply::without_status(220, format!("{} ESMTP Lazaret ready", config.hostname));
        let mut s = Session {
            config,
            stage: Stage::Command,
            input: Input::default(),
            output: Vec::new(),
            envelope: Envelope::default(),
            in_transaction: false,
            transactions: 0,
            errors: 0,
            pending: None,
        };
        greeting.write_to(&mut s.output);
        s
    }

    /// The reply for a connection turned away because the server is at its limit.
    pub fn busy_reply(hostname: &str) -> Reply {
        Reply::new(
            421,
            [4, 3, 2],
            format!("{hostname} too many connections, try again later"),
        )
    }

    pub fn idle_timeout_reply(hostname: &str) -> Reply {
        Reply::new(
            421,
            [4, 4, 2],
            format!("{hostname} idle for too long, closing connection"),
        )
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// Bytes to send to the client now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.stage, Stage::Closed)
    }

    /// Sends a reply outside the normal flow (e.g. a shutdown notice) and closes.
    pub fn close_with(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
        self.stage = Stage::Closed;
    }

    /// How many transactions (accepted MAIL commands) this connection has begun: a
    /// recipient check under a new number is the transaction's first.
    pub fn transactions(&self) -> u64 {
        self.transactions
    }

    pub fn authenticated(&self) -> Option<&str> {
        self.envelope.authenticated.as_deref()
    }

    /// `Ok(normalized user)` or the refusal (535 wrong credentials, 454 temporary).
    pub fn auth_result(&mut self, result: Result<String, Reply>) {
        if !matches!(self.stage, Stage::AwaitAuth) {
            return;
        }
        self.stage = Stage::Command;
        match result {
            Ok(user) => {
                self.envelope.authenticated = Some(user);
                self.reply(Reply::new(235, [2, 7, 0], "Authentication successful"));
            }
            Err(reply) => self.error(reply),
        }
    }

    fn auth_response(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']).trim();
        let stage = std::mem::replace(&mut self.stage, Stage::Command);
        if text == "*" {
            return self.error(Reply::new(501, [5, 7, 0], "Authentication cancelled"));
        }
        match stage {
            Stage::AuthPlain => self.plain(text),
            Stage::AuthLoginUser => match decode_b64(text) {
                Some(user) => {
                    self.reply(Reply::without_status(334, "UGFzc3dvcmQ6"));
                    self.stage = Stage::AuthLoginPassword(user);
                }
                None => self.error(Reply::new(501, [5, 5, 2], "Malformed base64")),
            },
            Stage::AuthLoginPassword(user) => match decode_b64(text) {
                Some(password) => self.authenticate(user, password),
                None => self.error(Reply::new(501, [5, 5, 2], "Malformed base64")),
            },
            _ => {}
        }
    }

    fn plain(&mut self, b64: &str) {
        match crate::sasl::decode_plain(b64) {
            Some((user, password)) => self.authenticate(user, password),
            None => self.error(Reply::new(501, [5, 5, 2], "Malformed PLAIN response")),
        }
    }

    fn authenticate(&mut self, user: String, password: String) {
        self.stage = Stage::AwaitAuth;
        self.pending = Some(Event::Authenticate { user, password });
    }

    fn auth_command(&mut self, mechanism: u64, initial: &str) {
        if !self.config.submission {
            return self.error(Reply::new(
                502,
                [5, 5, 1],
                "AUTH is not offered on this port; use the submission port",
            ));
        }
        if self.envelope.helo.is_empty() || !self.envelope.esmtp {
            return self.error(Reply::bad_sequence("Send EHLO first"));
        }
        if self.envelope.authenticated.is_some() {
            return self.error(Reply::bad_sequence("Already authenticated"));
        }
        if self.in_transaction {
            return self.error(Reply::bad_sequence(
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if !self.config.plaintext_auth_allowed {
            return self.error(Reply::new(
                538,
                [5, 7, 11],
                "Encryption required for this authentication mechanism: use STARTTLS first",
            ));
        }
        let initial = initial.trim();
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.reply(Reply::without_status(334, ""));
                self.stage = Stage::AuthPlain;
            }
            smtp_proto::AUTH_PLAIN => self.plain(initial),
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                self.reply(Reply::without_status(334, "VXNlcm5hbWU6"));
                self.stage = Stage::AuthLoginUser;
            }
            smtp_proto::AUTH_LOGIN => match decode_b64(initial) {
                Some(user) => {
                    self.reply(Reply::without_status(334, "UGFzc3dvcmQ6"));
                    self.stage = Stage::AuthLoginPassword(user);
                }
                None => self.error(Reply::new(501, [5, 5, 2], "Malformed base64")),
            },
            _ => self.error(Reply::new(
                504,
                [5, 5, 4],
                "Unrecognized authentication mechanism; use PLAIN or LOGIN",
            )),
        }
    }

    pub fn rcpt_verdict(&mut self, verdict: RcptVerdict) {
        let Stage::AwaitRcptVerdict(address) = std::mem::replace(&mut self.stage, Stage::Command)
        else {
            return;
        };
        let address = match verdict {
            RcptVerdict::Accept => address,
            RcptVerdict::AcceptAs(full) => full,
            RcptVerdict::Reject(reply) => return self.error(reply),
        };
        if !self
            .envelope
            .rcpt_to
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&address))
        {
            self.envelope.rcpt_to.push(address);
        }
        self.reply(Reply::new(250, [2, 1, 5], "OK"));
    }

    /// `Ok(queue id)` once the message is durable, or the refusal to send.
    pub fn message_result(&mut self, result: Result<String, Reply>) {
        if !matches!(self.stage, Stage::AwaitMessageResult) {
            return;
        }
        self.stage = Stage::Command;
        self.reset_transaction();
        match result {
            Ok(id) => self.reply(Reply::new(250, [2, 0, 0], format!("OK queued as {id}"))),
            Err(reply) => self.error(reply),
        }
    }

    /// A connection that was TLS from its first byte (submissions, RFC 8314): no
    /// STARTTLS to offer, passwords may be sent, `Received:` says so.
    pub fn tls_from_the_start(&mut self) {
        self.envelope.tls = true;
        self.config.plaintext_auth_allowed = true;
    }

    /// After the handshake the session starts over (RFC 3207 section 4.2).
    pub fn tls_established(&mut self) {
        if matches!(self.stage, Stage::AwaitTls) {
            self.stage = Stage::Command;
            self.envelope = Envelope {
                tls: true,
                ..Envelope::default()
            };
            self.in_transaction = false;
            self.config.plaintext_auth_allowed = true;
        }
    }

    /// Runs the state machine on buffered input until the server must act.
    pub fn poll(&mut self) -> Event {
        loop {
            match &mut self.stage {
                Stage::Closed => return Event::Close,
                Stage::AwaitRcptVerdict(address) => return Event::CheckRecipient(address.clone()),
                Stage::AwaitMessageResult | Stage::AwaitAuth => return Event::NeedInput,
                Stage::AuthPlain | Stage::AuthLoginUser | Stage::AuthLoginPassword(_) => {
                    match self.input.next_line(MAX_COMMAND_LINE) {
                        Line::Complete(line) => self.auth_response(&line),
                        Line::Incomplete => return Event::NeedInput,
                        Line::TooLong => {
                            self.stage = Stage::SkipLine;
                            self.error(Reply::new(500, [5, 5, 6], "Authentication line too long"));
                        }
                    }
                    if let Some(event) = self.pending.take() {
                        return event;
                    }
                }
                Stage::AwaitTls => return Event::StartTls,
                Stage::SkipLine => {
                    if !self.input.skip_line() {
                        return Event::NeedInput;
                    }
                    self.stage = Stage::Command;
                }
                Stage::Data(rx, buf) => {
                    let rest = self.input.rest();
                    let mut iter = rest.iter();
                    let done = rx.ingest(&mut iter, buf);
                    let used = rest.len() - iter.as_slice().len();
                    self.input.consume(used);
                    if buf.len() as u64 > self.config.max_message_size {
                        let reply = too_big(self.config.max_message_size);
                        if done {
                            self.stage = Stage::Command;
                            self.reset_transaction();
                            self.error(reply);
                        } else {
                            let discard = DummyDataReceiver::new_data(rx);
                            self.stage = Stage::DataDiscard(discard, reply);
                        }
                        continue;
                    }
                    if !done {
                        return Event::NeedInput;
                    }
                    let data = std::mem::take(buf);
                    self.stage = Stage::AwaitMessageResult;
                    return Event::Message {
                        envelope: self.envelope.clone(),
                        data,
                    };
                }
                Stage::DataDiscard(rx, reply) => {
                    let rest = self.input.rest();
                    let mut iter = rest.iter();
                    let done = rx.ingest(&mut iter);
                    let used = rest.len() - iter.as_slice().len();
                    self.input.consume(used);
                    if !done {
                        return Event::NeedInput;
                    }
                    let reply = reply.clone();
                    self.stage = Stage::Command;
                    self.reset_transaction();
                    self.error(reply);
                }
                Stage::Command => match self.input.next_line(MAX_COMMAND_LINE) {
                    Line::Complete(line) => {
                        self.command(&line);
                        if let Some(event) = self.pending.take() {
                            return event;
                        }
                    }
                    Line::Incomplete => return Event::NeedInput,
                    Line::TooLong => {
                        self.stage = Stage::SkipLine;
                        self.error(Reply::new(500, [5, 5, 2], "Line too long"));
                    }
                },
            }
        }
    }

    fn command(&mut self, line: &[u8]) {
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(e) => return self.error(parse_error_reply(e)),
        };
        match request {
            Request::Ehlo { host } => self.helo(&host, true),
            Request::Helo { host } => self.helo(&host, false),
            Request::Lhlo { .. } => self.error(Reply::new(
                500,
                [5, 5, 1],
                "LHLO is for LMTP; this is SMTP, use EHLO",
            )),
            Request::Mail { from } => {
                if self.envelope.helo.is_empty() {
                    return self.error(Reply::bad_sequence("Send EHLO or HELO first"));
                }
                if self.in_transaction {
                    return self.error(Reply::bad_sequence("Nested MAIL command"));
                }
                if self.config.submission {
                    let Some(user) = &self.envelope.authenticated else {
                        return self.error(Reply::new(530, [5, 7, 0], "Authentication required"));
                    };
                    if !from.address.eq_ignore_ascii_case(user) {
                        let text = format!(
                            "Sender <{}> is not yours: you are authenticated as {user}",
                            from.address
                        );
                        return self.error(Reply::new(553, [5, 7, 1], text));
                    }
                }
                if from.size as u64 > self.config.max_message_size {
                    let reply = self.too_big();
                    return self.error(reply);
                }
                self.envelope.mail_from = from.address.to_string();
                self.in_transaction = true;
                self.transactions += 1;
                self.reply(Reply::new(250, [2, 1, 0], "OK"));
            }
            Request::Rcpt { to } => {
                if !self.in_transaction {
                    return self.error(Reply::bad_sequence("Send MAIL first"));
                }
                if self.envelope.rcpt_to.len() >= self.config.max_recipients {
                    return self.error(Reply::new(452, [4, 5, 3], "Too many recipients"));
                }
                let address = to.address.to_string();
                match address.split_once('@') {
                    Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                        self.stage = Stage::AwaitRcptVerdict(address);
                    }
                    // RFC 5321 4.5.1: every server takes mail for "postmaster" alone.
                    // smtp-proto hands it over as the empty path, like <>; the line
                    // tells the two apart.
                    None if address.is_empty() && names_bare_postmaster(line) => {
                        self.stage = Stage::AwaitRcptVerdict("postmaster".into());
                    }
                    _ => self.error(Reply::new(
                        501,
                        [5, 1, 3],
                        "Recipient must be a full address user@domain",
                    )),
                }
            }
            Request::Data => {
                if !self.in_transaction {
                    return self.error(Reply::bad_sequence("Send MAIL first"));
                }
                if self.envelope.rcpt_to.is_empty() {
                    return self.error(Reply::new(554, [5, 5, 1], "No valid recipients"));
                }
                self.reply(Reply::new(
                    354,
                    [2, 0, 0],
                    "Start mail input; end with <CRLF>.<CRLF>",
                ));
                self.stage = Stage::Data(DataReceiver::new(), Vec::new());
            }
            Request::Rset => {
                self.reset_transaction();
                self.reply(Reply::new(250, [2, 0, 0], "OK"));
            }
            Request::Noop { .. } => self.reply(Reply::new(250, [2, 0, 0], "OK")),
            Request::Quit => {
                self.reply(Reply::new(
                    221,
                    [2, 0, 0],
                    format!("{} closing connection", self.config.hostname),
                ));
                self.stage = Stage::Closed;
            }
            Request::Vrfy { .. } => self.reply(Reply::new(
                252,
                [2, 5, 0],
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Help { .. } => self.reply(Reply::new(
                214,
                [2, 0, 0],
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS",
            )),
            Request::StartTls => {
                if self.envelope.tls {
                    return self.error(Reply::bad_sequence("TLS already active"));
                }
                if !self.config.tls_available {
                    return self.error(Reply::new(502, [5, 5, 1], "STARTTLS not available"));
                }
                self.reply(Reply::new(220, [2, 0, 0], "Ready to start TLS"));
                // Anything pipelined after STARTTLS came in the clear and must not be
                // acted upon once TLS is up (the STARTTLS command-injection attack).
                self.input.discard();
                self.stage = Stage::AwaitTls;
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth_command(mechanism, &initial_response),
            Request::Bdat { .. } => {
                // Not advertised, so the chunk that follows cannot be framed: refuse and close.
                self.reply(Reply::new(
                    502,
                    [5, 5, 1],
                    "BDAT (CHUNKING) is not offered; use DATA",
                ));
                self.stage = Stage::Closed;
            }
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error(Reply::new(502, [5, 5, 1], "Command not implemented"))
            }
        }
    }

    fn helo(&mut self, host: &str, esmtp: bool) {
        if host.is_empty() {
            return self.error(Reply::new(501, [5, 5, 4], "Give your host name"));
        }
        let tls = self.envelope.tls;
        let authenticated = self.envelope.authenticated.take();
        self.envelope = Envelope {
            helo: host.to_string(),
            esmtp,
            tls,
            authenticated,
            ..Envelope::default()
        };
        self.in_transaction = false;
        let host = &self.config.hostname;
        if !esmtp {
            return self.reply(Reply::without_status(250, host.clone()));
        }
        let mut text = format!(
            "{host}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES",
            self.config.max_message_size
        );
        if self.config.tls_available && !tls {
            text.push_str("\nSTARTTLS");
        }
        if self.config.submission && self.config.plaintext_auth_allowed {
            text.push_str("\nAUTH PLAIN LOGIN");
        }
        self.reply(Reply::without_status(250, text));
    }

    fn too_big(&self) -> Reply {
        too_big(self.config.max_message_size)
    }

    fn reset_transaction(&mut self) {
        self.envelope.mail_from.clear();
        self.envelope.rcpt_to.clear();
        self.in_transaction = false;
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
    }

    /// Sends a failure reply and closes sessions that keep failing.
    fn error(&mut self, reply: Reply) {
        self.reply(reply);
        self.errors += 1;
        if self.errors > self.config.max_errors {
            self.close_with(Reply::new(
                421,
                [4, 7, 0],
                "Too many errors, closing connection",
            ));
        }
    }
}

fn decode_b64(text: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(raw).ok()
}

fn too_big(limit: u64) -> Reply {
    Reply::new(
        552,
        [5, 3, 4],
        format!("Message too big: the limit is {limit} bytes"),
    )
}

/// Whether a RCPT line's path is `<postmaster>` (any case), with no domain.
fn names_bare_postmaster(line: &[u8]) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.windows(12).any(|w| w == b"<postmaster>")
}

fn parse_error_reply(e: ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(500, [5, 5, 1], "Unrecognized command"),
        ParseError::InvalidSenderAddress => Reply::new(501, [5, 1, 7], "Bad sender address syntax"),
        ParseError::InvalidRecipientAddress => {
            Reply::new(501, [5, 1, 3], "Bad recipient address syntax")
        }
        ParseError::SyntaxError { syntax } => {
            Reply::new(501, [5, 5, 2], format!("Syntax error, expected: {syntax}"))
        }
        ParseError::InvalidParameter { param } => {
            Reply::new(501, [5, 5, 4], format!("Invalid parameter {param}"))
        }
        ParseError::UnsupportedParameter { param } => {
            Reply::new(504, [5, 5, 4], format!("Unsupported parameter {param}"))
        }
        ParseError::NeedsMoreData { .. } => Reply::new(501, [5, 5, 2], "Incomplete command"),
        ParseError::ResponseTooLong => Reply::new(500, [5, 5, 2], "Line too long"),
        ParseError::InvalidResponse { .. } => Reply::new(500, [5, 5, 1], "Unrecognized command"),
    }
}

#[cfg(test)]
#[path = "session/tests.rs"]
mod tests;
