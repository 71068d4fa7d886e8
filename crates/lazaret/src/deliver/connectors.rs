//! The connectors as the running server sees them: the configured routes with their
//! schedules, where a schedule set by `lazaret connector schedule` (kept in the store)
//! overrides the config file's until it is set again.

use lazaret_core::config::ConnectorConfig;
use lazaret_core::{Config, Schedule};
use lazaret_store::Store;
use std::collections::HashMap;
use std::sync::RwLock;

pub struct Connectors {
    list: Vec<ConnectorConfig>,
    /// Name → (schedule as written, parsed).
    schedules: RwLock<HashMap<String, (String, Schedule)>>,
}

pub fn setting_key(name: &str) -> String {
    format!("connector.{name}.schedule")
}

impl Connectors {
    pub fn load(config: &Config, store: &dyn Store) -> anyhow::Result<Connectors> {
        let list = config.connectors();
        let mut schedules = HashMap::new();
        for c in &list {
            let text = store
                .setting(&setting_key(&c.name))?
                .unwrap_or_else(|| c.schedule.clone());
            let parsed = text.parse::<Schedule>().or_else(|e| {
                tracing::warn!(
                    "stored schedule {text:?} of connector {} is invalid ({e}); using the config file's",
                    c.name
                );
                c.schedule.parse::<Schedule>()
            });
            let schedule = parsed.map_err(|e| anyhow::anyhow!("connector {}: {e}", c.name))?;
            schedules.insert(c.name.clone(), (text, schedule));
        }
        Ok(Connectors {
            list,
            schedules: RwLock::new(schedules),
        })
    }

    pub fn list(&self) -> &[ConnectorConfig] {
        &self.list
    }

    pub fn get(&self, name: &str) -> Option<&ConnectorConfig> {
        self.list.iter().find(|c| c.name == name)
    }

    /// The schedule as written (e.g. `mon-fri 18:00-06:00`) and whether it is open now.
    pub fn schedule(&self, name: &str) -> (String, bool) {
        let schedules = self.schedules.read().unwrap_or_else(|e| e.into_inner());
        match schedules.get(name) {
            Some((text, s)) => (text.clone(), s.is_open_now()),
            None => ("never".into(), false),
        }
    }

    pub fn is_open(&self, name: &str) -> bool {
        self.schedule(name).1
    }

    /// Validates and applies a new schedule; the caller persists it.
    pub fn set_schedule(&self, name: &str, text: &str) -> Result<(), String> {
        if self.get(name).is_none() {
            let names: Vec<&str> = self.list.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "no connector {name:?} (connectors: {})",
                names.join(", ")
            ));
        }
        let schedule: Schedule = text.parse()?;
        self.schedules
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (text.trim().to_string(), schedule));
        Ok(())
    }
}
