//! `[limits.connections]`: how many connections one client address may hold open, and
//! open per window, over every listener together — so that one host (a worm-infected
//! PC, a password guesser) cannot take every session slot or hammer the login code.
//! Loopback and the networks listed in `exempt` are never limited.

use crate::accept::rate::{Counted, RateLimiter};
use lazaret_core::config::ConnectionLimits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct ConnectionGate {
    max_open: usize,
    rate: RateLimiter,
    exempt: Vec<ipnet::IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
}

/// Why a connection was refused, for the protocol's reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    TooMany(usize),
    TooFast(lazaret_core::config::RateLimit),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooMany(n) => write!(
                f,
                "too many connections from your address (limit {n}), try later"
            ),
            Refused::TooFast(limit) => {
                write!(
                    f,
                    "too many new connections from your address (limit {limit}), try later"
                )
            }
        }
    }
}

/// A connection counted as open until it is dropped.
pub struct Admitted {
    gate: Arc<ConnectionGate>,
    ip: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self.gate.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

impl ConnectionGate {
    /// From a validated config (the exempt list parses).
    pub fn new(limits: &ConnectionLimits) -> ConnectionGate {
        ConnectionGate {
            max_open: limits.max_open,
            rate: RateLimiter::new(limits.rate.clone(), Vec::new()),
            exempt: limits.exempt_networks().unwrap_or_default(),
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Lets a new connection from `ip` in, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        // An IPv4 client on an IPv6 socket is its IPv4 address.
        let ip = ip.to_canonical();
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Ok(Admitted {
                gate: self.clone(),
                ip: None,
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now_open = open.get(&ip).copied().unwrap_or(0);
        if self.max_open > 0 && now_open >= self.max_open {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::TooMany(self.max_open));
        }
        if let Err(over) = self.rate.take(&ip.to_string(), Counted::Connections, 1) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            if over.new_episode {
                tracing::warn!(
                    "connections from {ip}: over {} new connections, refused",
                    over.limit
                );
            }
            return Err(Refused::TooFast(over.limit));
        }
        *open.entry(ip).or_insert(0) += 1;
        Ok(Admitted {
            gate: self.clone(),
            ip: Some(ip),
        })
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Addresses refused new connections at their last attempt.
    pub fn limited_now(&self) -> Vec<String> {
        self.rate.limited_now()
    }

    /// The addresses holding the most connections now, most first (at most `n`).
    pub fn busiest(&self, n: usize) -> Vec<(IpAddr, usize)> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(IpAddr, usize)> = open.iter().map(|(ip, n)| (*ip, *n)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazaret_core::config::RateLimit;

    fn gate(max_open: usize, rate: u64, exempt: &[&str]) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate::new(&ConnectionLimits {
            max_open,
            rate: vec![RateLimit::new(rate, 60)],
            exempt: exempt.iter().map(|s| s.to_string()).collect(),
        }))
    }

    #[test]
    fn open_connections_are_counted_per_address_until_dropped() {
        let g = gate(2, 1000, &[]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = g.admit(a).unwrap();
        let _second = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Refused::TooMany(2)));
        g.admit("192.0.2.2".parse().unwrap()).unwrap();
        drop(first);
        let _third = g.admit(a).unwrap();
        // The same address seen on an IPv6 socket.
        assert!(g.admit("::ffff:192.0.2.1".parse().unwrap()).is_err());
        assert_eq!(g.refused(), 2);
        assert_eq!(g.busiest(1), [(a, 2)]);
    }

    #[test]
    fn new_connections_per_window_and_exempt_networks() {
        let g = gate(0, 3, &["10.0.0.0/8", "2001:db8::1"]);
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..3 {
            drop(g.admit(a).unwrap());
        }
        assert!(matches!(g.admit(a), Err(Refused::TooFast(_))));
        assert_eq!(g.limited_now(), ["192.0.2.9"]);
        for _ in 0..10 {
            drop(g.admit("10.1.2.3".parse().unwrap()).unwrap());
            drop(g.admit("2001:db8::1".parse().unwrap()).unwrap());
        }
    }
}
