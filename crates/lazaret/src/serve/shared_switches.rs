//! On a store several nodes share, the runbook's switches that act on a node's own
//! listeners and sessions — `smtp stop|start`, `access disable|enable`, connector
//! schedules — are followed from the shared settings: every `FOLLOW_EVERY` each node
//! reads them and puts itself in the state they say, so a switch thrown on any node
//! holds on every node within seconds. (On one node the command applies them itself;
//! there is nothing to follow.)
//!
//! The command that throws a switch holds `Server::switching` while it stores and
//! applies it, and so does each look here: a look between the two never undoes it.

use crate::access::gate::{AccessState, DEFAULT_MESSAGE, SETTING as ACCESS_SETTING};
use crate::deliver::connectors::setting_key;
use crate::server::Server;
use std::sync::Arc;
use std::time::Duration;

/// How often a node looks at the shared switches.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Starts following, if other nodes may share the store.
pub fn follow(server: &Arc<Server>) {
    if !server.config.store.is_shared() {
        return;
    }
    let server = server.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = follow_once(&server).await {
                tracing::warn!("cannot follow the switches other nodes set: {e:#}");
            }
        }
    });
}

async fn follow_once(server: &Arc<Server>) -> anyhow::Result<()> {
    let _switching = server.switching.lock().await;
    let names: Vec<String> = server
        .connectors
        .list()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let (smtp, access, schedules) = server
        .store_call(move |s| {
            let schedules = names
                .into_iter()
                .map(|n| Ok((s.setting(&setting_key(&n))?, n)))
                .collect::<lazaret_store::Result<Vec<_>>>()?;
            Ok((
                s.setting("smtp.inbound")?,
                s.setting(ACCESS_SETTING)?,
                schedules,
            ))
        })
        .await?;
    match smtp.as_deref() {
        Some("stopped") if server.smtp.is_up() => {
            server.smtp.stop();
            tracing::info!("SMTP inbound stopped by another node: stopped here too");
        }
        Some("running") if !server.smtp.is_up() => {
            server.smtp.start_accepting(server.clone()).await?;
            tracing::info!("SMTP inbound started by another node: started here too");
        }
        _ => {}
    }
    let wanted = AccessState::from_setting(access);
    if wanted != server.access.current() {
        tracing::info!(
            "user access {} by another node",
            if wanted.enabled {
                "enabled".to_string()
            } else {
                format!(
                    "disabled ({})",
                    wanted.message.as_deref().unwrap_or(DEFAULT_MESSAGE)
                )
            }
        );
        server.access.set(wanted);
    }
    for (text, name) in schedules {
        let Some(text) = text else { continue };
        if server.connectors.schedule(&name).0 != text.trim() {
            match server.connectors.set_schedule(&name, &text) {
                Ok(()) => {
                    tracing::info!("connector {name}: schedule {text:?} set by another node");
                    server.outbound_wake.notify_one();
                }
                Err(e) => tracing::warn!("connector {name}: stored schedule {text:?}: {e}"),
            }
        }
    }
    Ok(())
}
