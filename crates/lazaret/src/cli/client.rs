//! Finds the running server (data_dir/listeners.json, data_dir/admin.token) and calls
//! its admin API, turning failures into exit codes and advice.

use super::{EXIT_UNREACHABLE, EXIT_USAGE};
use anyhow::Result;
use lazaret_core::Config;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// An error with the exit code it must end the process with.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub struct Api {
    base: String,
    token: String,
    actor: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn discover(config: &Config) -> Result<Api> {
        let data_dir = &config.data_dir;
        let running = crate::serve::data_dir::read_listeners(data_dir);
        let admin = running.as_ref().map_or(config.admin.listen, |l| l.admin);
        let not_running = || {
            Failure::new(
                EXIT_UNREACHABLE,
                format!(
                    "the Lazaret server for {} is not running (no admin API at {admin}); start it with `lazaret serve`{}",
                    data_dir.display(),
                    if config.data_dir == Config::default().data_dir { "" } else { " -c <your config>" }
                ),
            )
        };
        if running.is_none() && admin.port() == 0 {
            return Err(not_running().into());
        }
        let token_path = crate::serve::data_dir::token_path(data_dir);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(t) => t.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_running().into()),
            Err(e) => {
                return Err(Failure::new(
                    EXIT_UNREACHABLE,
                    format!(
                        "cannot read the admin token {}: {e} (run as the server's user)",
                        token_path.display()
                    ),
                )
                .into())
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .new_agent();
        let actor = format!("cli:{}", os_user());
        Ok(Api {
            base: format!("http://{admin}"),
            token,
            actor,
            agent,
        })
    }

    fn finish(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>> {
        let mut response = response.map_err(|e| {
            Failure::new(
                EXIT_UNREACHABLE,
                format!(
                    "cannot reach the Lazaret server at {} ({e}); is it running? Start it with `lazaret serve`",
                    self.base
                ),
            )
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| Failure::new(EXIT_UNREACHABLE, format!("reading the reply: {e}")))?;
        if status < 300 {
            return Ok(body);
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let code = match status {
            401 | 403 => EXIT_UNREACHABLE,
            400..=499 => EXIT_USAGE,
            _ => EXIT_UNREACHABLE,
        };
        Err(Failure::new(code, message).into())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Adds the token and, for the audit log, who is acting.
    fn authed<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        request
            .header("authorization", format!("Bearer {}", self.token))
            .header("x-lazaret-actor", &self.actor)
    }

    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let r = self.authed(self.agent.get(self.url(path))).call();
        self.finish(r)
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(serde_json::from_slice(&self.get_bytes(path)?)?)
    }

    pub fn send(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let url = self.url(path);
        let r = match method {
            "DELETE" => self.authed(self.agent.delete(url)).call(),
            "PUT" => self.authed(self.agent.put(url)).send_json(&body),
            _ => self.authed(self.agent.post(url)).send_json(&body),
        };
        Ok(serde_json::from_slice(&self.finish(r)?)?)
    }
}

/// The login name of whoever runs the command, for the audit log.
fn os_user() -> String {
    if let Some(name) = ["LOGNAME", "USER"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
    {
        return name;
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name
    // out at once and this process does not call it concurrently.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
        format!("uid{}", libc::getuid())
    }
}

/// Percent-encodes one path segment (addresses contain '@', queue names ':').
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
