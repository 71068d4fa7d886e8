//! One POP3 session as a state machine: the server feeds bytes and answers its
//! requests (check this login, fetch this message, apply these deletions).

use crate::input::{Input, Line};
use crate::sasl;

/// Longest command line accepted (RFC 2449 allows 255 octets; be lenient).
pub const MAX_LINE: usize = 1024;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// STLS is offered when the server has a certificate and the session is plain.
    pub tls_available: bool,
    /// Passwords may be sent in the clear (loopback, or once TLS is up).
    pub plaintext_allowed: bool,
    pub max_errors: u32,
}

/// One message of the maildrop as the server listed it at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropEntry {
    pub id: String,
    pub size: u64,
    pub uidl: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Flush output, read more bytes, `feed` them.
    NeedInput,
    /// Check the login and call `auth_result` with the maildrop or the refusal.
    Authenticate { user: String, password: String },
    /// Load this message and call `retrieved`.
    Retrieve { id: String, top: Option<usize> },
    /// QUIT in the transaction state: delete these, then call `update_result`.
    Update { delete: Vec<String> },
    /// Flush output, run the TLS handshake, call `tls_established`.
    StartTls,
    /// Flush output and close.
    Close,
}

enum Stage {
    Authorization {
        user: Option<String>,
    },
    SaslResponse,
    AwaitAuth,
    Transaction,
    AwaitRetrieve,
    AwaitUpdate,
    AwaitTls,
    /// Throwing away an over-long line; then back to Transaction or Authorization.
    SkipLine {
        authenticated: bool,
    },
    Closed,
}

pub struct Session {
    config: SessionConfig,
    stage: Stage,
    input: Input,
    output: Vec<u8>,
    tls: bool,
    maildrop: Vec<MaildropEntry>,
    deleted: Vec<bool>,
    pending: Option<Event>,
    errors: u32,
}

fn parse_number(arg: Option<&str>) -> Option<usize> {
    arg.and_then(|a| a.parse::<usize>().ok())
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let mut s = Session {
            stage: Stage::Authorization { user: None },
            input: Input::default(),
            output: Vec::new(),
            tls: false,
            maildrop: Vec::new(),
            deleted: Vec::new(),
            pending: None,
            errors: 0,
            config,
        };
        let greeting = format!("+OK {} Lazaret POP3 ready", s.config.hostname);
        s.ok_line(&greeting);
        s
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(
            self.stage,
            Stage::Transaction | Stage::AwaitRetrieve | Stage::AwaitUpdate
        )
    }

    /// Ends the session at once (e.g. user access was disabled); no deletions happen.
    pub fn close_with(&mut self, text: &str) {
        self.output
            .extend_from_slice(format!("-ERR {text}\r\n").as_bytes());
        self.stage = Stage::Closed;
    }

    pub fn auth_result(&mut self, result: Result<Vec<MaildropEntry>, String>) {
        if !matches!(self.stage, Stage::AwaitAuth) {
            return;
        }
        match result {
            Ok(maildrop) => {
                self.deleted = vec![false; maildrop.len()];
                let total: u64 = maildrop.iter().map(|m| m.size).sum();
                let text = format!(
                    "+OK maildrop has {} messages ({total} octets)",
                    maildrop.len()
                );
                self.maildrop = maildrop;
                self.stage = Stage::Transaction;
                self.ok_line(&text);
            }
            Err(text) => {
                self.stage = Stage::Authorization { user: None };
                self.err(&text);
            }
        }
    }

    pub fn retrieved(&mut self, result: Result<Vec<u8>, String>) {
        if !matches!(self.stage, Stage::AwaitRetrieve) {
            return;
        }
        self.stage = Stage::Transaction;
        match result {
            Ok(formatted) => {
                self.output.extend_from_slice(b"+OK message follows\r\n");
                self.output.extend_from_slice(&formatted);
            }
            Err(text) => self.err(&text),
        }
    }

    pub fn update_result(&mut self, result: Result<(), String>) {
        if !matches!(self.stage, Stage::AwaitUpdate) {
            return;
        }
        match result {
            Ok(()) => self.ok_line(&format!("+OK {} signing off", self.config.hostname)),
            Err(text) => self
                .output
                .extend_from_slice(format!("-ERR [SYS/TEMP] {text}\r\n").as_bytes()),
        }
        self.stage = Stage::Closed;
    }

    pub fn tls_established(&mut self) {
        if matches!(self.stage, Stage::AwaitTls) {
            self.tls = true;
            self.config.plaintext_allowed = true;
            self.stage = Stage::Authorization { user: None };
        }
    }

    pub fn poll(&mut self) -> Event {
        if let Some(event) = self.pending.take() {
            return event;
        }
        loop {
            match self.stage {
                Stage::Closed => return Event::Close,
                Stage::AwaitAuth | Stage::AwaitRetrieve | Stage::AwaitUpdate => {
                    return Event::NeedInput
                }
                Stage::AwaitTls => return Event::StartTls,
                _ => {}
            }
            if let Stage::SkipLine { authenticated } = self.stage {
                if !self.input.skip_line() {
                    return Event::NeedInput;
                }
                self.stage = if authenticated {
                    Stage::Transaction
                } else {
                    Stage::Authorization { user: None }
                };
                continue;
            }
            match self.input.next_line(MAX_LINE) {
                Line::Complete(raw) => {
                    let text = String::from_utf8_lossy(&raw);
                    let line = text.trim_end_matches(['\r', '\n']).to_string();
                    self.command(&line);
                    if let Some(event) = self.pending.take() {
                        return event;
                    }
                }
                Line::Incomplete => return Event::NeedInput,
                Line::TooLong => {
                    let authenticated = self.is_authenticated();
                    self.err("line too long");
                    if !matches!(self.stage, Stage::Closed) {
                        self.stage = Stage::SkipLine { authenticated };
                    }
                }
            }
        }
    }

    fn command(&mut self, line: &str) {
        if let Stage::SaslResponse = self.stage {
            self.stage = Stage::Authorization { user: None };
            if line == "*" {
                return self.err("[AUTH] authentication cancelled");
            }
            return self.sasl_plain(line);
        }
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        match verb.as_str() {
            "CAPA" => return self.capa(),
            "NOOP" if self.is_authenticated() => return self.ok_line("+OK"),
            "QUIT" => {
                if self.is_authenticated() {
                    let delete = self
                        .maildrop
                        .iter()
                        .zip(&self.deleted)
                        .filter(|(_, &d)| d)
                        .map(|(m, _)| m.id.clone())
                        .collect();
                    self.stage = Stage::AwaitUpdate;
                    self.pending = Some(Event::Update { delete });
                } else {
                    self.ok_line(&format!("+OK {} signing off", self.config.hostname));
                    self.stage = Stage::Closed;
                }
                return;
            }
            _ => {}
        }
        if self.is_authenticated() {
            self.transaction(&verb, &args)
        } else {
            self.authorization(&verb, &args)
        }
    }

    fn authorization(&mut self, verb: &str, args: &[&str]) {
        match verb {
            "USER" | "PASS" | "AUTH" if !self.config.plaintext_allowed => {
                self.err("[AUTH] plaintext authentication is not allowed here; use STLS first")
            }
            "USER" => match args {
                [name] => {
                    self.stage = Stage::Authorization {
                        user: Some(name.to_string()),
                    };
                    self.ok_line("+OK send PASS");
                }
                _ => self.err("usage: USER name"),
            },
            "PASS" => {
                let user = match &self.stage {
                    Stage::Authorization { user: Some(u) } => u.clone(),
                    _ => return self.err("send USER first"),
                };
                // The password may contain spaces: take the rest of the line verbatim.
                let password = args.join(" ");
                self.stage = Stage::AwaitAuth;
                self.pending = Some(Event::Authenticate { user, password });
            }
            "AUTH" => match args {
                [] => self
                    .output
                    .extend_from_slice(b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"),
                [mech, rest @ ..] if mech.eq_ignore_ascii_case("PLAIN") => match rest {
                    [] => {
                        self.output.extend_from_slice(b"+ \r\n");
                        self.stage = Stage::SaslResponse;
                    }
                    [ir] => {
                        let ir = ir.to_string();
                        self.sasl_plain(&ir)
                    }
                    _ => self.err("usage: AUTH PLAIN [initial-response]"),
                },
                _ => self.err("unsupported SASL mechanism; use PLAIN"),
            },
            "STLS" => {
                if self.tls {
                    self.err("TLS already active")
                } else if !self.config.tls_available {
                    self.err("STLS not available")
                } else {
                    self.ok_line("+OK begin TLS negotiation");
                    // Input pipelined behind STLS came in the clear: drop it.
                    self.input.discard();
                    self.stage = Stage::AwaitTls;
                }
            }
            "APOP" => self.err("APOP is not supported; use USER/PASS or AUTH PLAIN"),
            "" => self.err("empty command"),
            _ => self.err("unknown command or not allowed before login"),
        }
    }

    fn sasl_plain(&mut self, b64: &str) {
        match sasl::decode_plain(b64) {
            Some((user, password)) => {
                self.stage = Stage::AwaitAuth;
                self.pending = Some(Event::Authenticate { user, password });
            }
            None => self.err("[AUTH] malformed PLAIN response"),
        }
    }

    /// The 1-based message number in `arg`, if it names a message not deleted.
    fn message(&self, arg: Option<&str>) -> Result<usize, &'static str> {
        let n = parse_number(arg).ok_or("give a message number")?;
        if n == 0 || n > self.maildrop.len() {
            return Err("no such message");
        }
        if self.deleted[n - 1] {
            return Err("message already deleted");
        }
        Ok(n - 1)
    }

    fn transaction(&mut self, verb: &str, args: &[&str]) {
        let live = || {
            self.maildrop
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.deleted[*i])
        };
        match verb {
            "STAT" => {
                let (count, size) = live().fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
                self.ok_line(&format!("+OK {count} {size}"));
            }
            "LIST" | "UIDL" => {
                let field = |m: &MaildropEntry| {
                    if verb == "LIST" {
                        m.size.to_string()
                    } else {
                        m.uidl.clone()
                    }
                };
                if let Some(arg) = args.first() {
                    match self.message(Some(arg)) {
                        Ok(i) => {
                            let text = format!("+OK {} {}", i + 1, field(&self.maildrop[i]));
                            self.ok_line(&text)
                        }
                        Err(e) => self.err(e),
                    }
                } else {
                    let mut text = String::from("+OK listing follows\r\n");
                    for (i, m) in live() {
                        text.push_str(&format!("{} {}\r\n", i + 1, field(m)));
                    }
                    text.push_str(".\r\n");
                    self.output.extend_from_slice(text.as_bytes());
                }
            }
            "RETR" | "TOP" => {
                let top = if verb == "TOP" {
                    match parse_number(args.get(1).copied()) {
                        Some(n) => Some(n),
                        None => return self.err("usage: TOP msg lines"),
                    }
                } else {
                    None
                };
                match self.message(args.first().copied()) {
                    Ok(i) => {
                        self.stage = Stage::AwaitRetrieve;
                        self.pending = Some(Event::Retrieve {
                            id: self.maildrop[i].id.clone(),
                            top,
                        });
                    }
                    Err(e) => self.err(e),
                }
            }
            "DELE" => match self.message(args.first().copied()) {
                Ok(i) => {
                    self.deleted[i] = true;
                    self.ok_line(&format!("+OK message {} deleted", i + 1));
                }
                Err(e) => self.err(e),
            },
            "RSET" => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let text = format!("+OK maildrop has {} messages", self.maildrop.len());
                self.ok_line(&text);
            }
            _ => self.err("unknown command"),
        }
    }

    fn capa(&mut self) {
        let mut text = String::from("+OK capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN\r\n");
        if self.config.tls_available && !self.tls && !self.is_authenticated() {
            text.push_str("STLS\r\n");
        }
        text.push_str("IMPLEMENTATION Lazaret\r\n.\r\n");
        self.output.extend_from_slice(text.as_bytes());
    }

    fn ok_line(&mut self, text: &str) {
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn err(&mut self, text: &str) {
        self.output
            .extend_from_slice(format!("-ERR {text}\r\n").as_bytes());
        self.errors += 1;
        if self.errors > self.config.max_errors {
            self.output
                .extend_from_slice(b"-ERR too many errors, closing connection\r\n");
            self.stage = Stage::Closed;
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
