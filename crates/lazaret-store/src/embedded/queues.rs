//! Queues: their list and state, routing out of `inbound` to next-hop queues, and
//! delivery of `local` into INBOX folders.

use super::events;
use super::*;

/// Recipients grouped by the queue of their next hop.
pub(super) type Groups = BTreeMap<String, Vec<String>>;

/// An inbound item about to be moved on.
pub(super) struct Move {
    pub item: i64,
    pub message: i64,
    pub created: i64,
}

pub(super) fn queue_frozen(c: &Connection, queue: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM queues WHERE name=?1 AND state='frozen'")?
            .exists([queue])?,
    )
}

/// Routing out of `inbound` inside one write transaction.
pub(super) struct Router {
    /// Queue `local` is not frozen: its copies go straight into INBOX folders.
    local_open: bool,
    retry_delay_secs: i64,
    now: i64,
    /// `[outbreak] hold_growth`: copies of a held cluster stay in `inbound`, frozen.
    hold: Option<HoldRule>,
}

impl Router {
    /// None while `inbound` is frozen (an admin froze it since the items were read).
    pub(super) fn start(
        c: &Connection,
        retry_delay_secs: i64,
        hold: Option<HoldRule>,
    ) -> Result<Option<Router>> {
        if queue_frozen(c, QUEUE_INBOUND)? {
            return Ok(None);
        }
        Ok(Some(Router {
            local_open: !queue_frozen(c, QUEUE_LOCAL)?,
            retry_delay_secs,
            now: now(),
            hold,
        }))
    }
}

/// Moves an inbound item into the queues of its next hops. The copy for local users
/// goes straight into their INBOX folders when queue `local` is not frozen: routing
/// and local delivery then cost one commit, not two (each commit is an fsync that the
/// next `250` may queue behind).
pub(super) fn route_item(
    c: &Connection,
    router: &Router,
    moving: Move,
    groups: Groups,
    report: &mut RouteReport,
) -> Result<()> {
    let t = router.now;
    if let Some(rule) = &router.hold {
        if let Some(cluster) =
            super::clusters::holds(c, moving.item, moving.message, rule, t, &mut report.holds)?
        {
            // Never delivered, never bounced: frozen where it is until the admin thaws,
            // quarantines or allows the cluster.
            let why = super::clusters::held_error(cluster);
            c.prepare_cached("UPDATE queue_items SET state='frozen', last_error=?2 WHERE id=?1")?
                .execute(params![moving.item, why])?;
            events::record(c, moving.message, events::HELD, "", &why)?;
            report.held += 1;
            return Ok(());
        }
    }
    for (queue, rcpts) in groups {
        let (state, next_attempt, attempts, error, rcpts) =
            if queue == QUEUE_LOCAL && router.local_open {
                let missing = into_inboxes(c, moving.message, &rcpts, t, &mut report.local.users)?;
                if missing.is_empty() {
                    report.local.delivered += 1;
                    continue;
                }
                report.local.deferred += 1;
                let error = no_such_user(&missing);
                events::record(
                    c,
                    moving.message,
                    events::DEFERRED,
                    &missing.join(", "),
                    &error,
                )?;
                (
                    "retry",
                    t + router.retry_delay_secs,
                    1,
                    Some(error),
                    missing,
                )
            } else {
                if queue != QUEUE_LOCAL {
                    report.to_remote += 1;
                }
                events::record(c, moving.message, events::QUEUED, &rcpts.join(", "), &queue)?;
                ("ready", t, 0, None, rcpts)
            };
        c.prepare_cached(&format!(
            "INSERT INTO queue_items(id, message, queue, state, next_attempt, created,
                   attempts, last_error) VALUES({}, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            schema::NEXT_ITEM_ID
        ))?
        .execute(params![
            moving.message,
            queue,
            state,
            next_attempt,
            moving.created,
            attempts,
            error
        ])?;
        let new_item = c.last_insert_rowid();
        let mut stmt = c.prepare_cached("INSERT INTO queue_rcpts(item, address) VALUES(?1, ?2)")?;
        for r in rcpts {
            stmt.execute(params![new_item, r])?;
        }
    }
    c.prepare_cached("DELETE FROM queue_items WHERE id=?1")?
        .execute([moving.item])?;
    report.routed += 1;
    Ok(())
}

/// Files `message` in the INBOX of each recipient; returns the recipients who have no
/// INBOX (the account went away after RCPT was accepted). `users` gains those served.
fn into_inboxes(
    c: &Connection,
    message: i64,
    rcpts: &[String],
    t: i64,
    users: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for rcpt in rcpts {
        let inbox: Option<(i64, i64, i64)> = c
            .prepare_cached(
                "UPDATE mailboxes SET uidnext=uidnext+1, highestmodseq=highestmodseq+modseq_on
                 WHERE user=?1 AND name='INBOX'
                 RETURNING id, uidnext-1, highestmodseq",
            )?
            .query_row([rcpt], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        match inbox {
            Some((mailbox, uid, modseq)) => {
                c.prepare_cached(&format!(
                    "INSERT INTO mailbox_entries(id, mailbox, uid, message, internal_date, modseq)
                     VALUES({}, ?1, ?2, ?3, ?4, ?5)",
                    schema::NEXT_ENTRY_ID
                ))?
                .execute(params![mailbox, uid, message, t, modseq])?;
                events::record(c, message, events::DELIVERED, rcpt, "INBOX")?;
                if !users.contains(rcpt) {
                    users.push(rcpt.clone());
                }
            }
            None => missing.push(rcpt.clone()),
        }
    }
    Ok(missing)
}

pub(crate) fn no_such_user(missing: &[String]) -> String {
    format!("no such local user: {}", missing.join(", "))
}

/// (message, created, attempts) of a queue item read as due, unless an admin froze or
/// moved it since (the read and the write are separate transactions).
fn still_due(c: &Connection, item: i64, queue: &str) -> Result<Option<(i64, i64, i64)>> {
    Ok(c.prepare_cached(
        "SELECT message, created, attempts FROM queue_items
         WHERE id=?1 AND queue=?2 AND state!='frozen'",
    )?
    .query_row(params![item, queue], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .optional()?)
}

pub(super) const QUEUE_SUMMARIES: &str = "SELECT 'q' || q.id, 'queue:' || q.queue, m.env_from,
        (SELECT group_concat(address, ',') FROM queue_rcpts r WHERE r.item=q.id),
        m.subject, COALESCE(m.date, m.received), m.size, q.state, m.sha256, NULL, m.uid,
        q.attempts, q.next_attempt, q.last_error, NULL, NULL, m.verdict
    FROM queue_items q JOIN messages m ON m.id=q.message WHERE q.queue=?1 ORDER BY q.id";

impl EmbeddedStore {
    /// Items of `queue` that are due now, with their recipients.
    pub(super) fn due_items(&self, queue: &str, limit: usize) -> Result<Vec<(i64, Vec<String>)>> {
        self.due_items_where(queue, limit, false)
    }

    /// `scanned_only`: leave out messages the scanner has not stamped yet.
    pub(super) fn due_items_where(
        &self,
        queue: &str,
        limit: usize,
        scanned_only: bool,
    ) -> Result<Vec<(i64, Vec<String>)>> {
        let queue = queue.to_string();
        self.read(move |c| {
            let mut items = c.prepare_cached(
                "SELECT q.id FROM queue_items q JOIN messages m ON m.id=q.message
                 WHERE q.queue=?1 AND q.state IN ('ready','retry') AND q.next_attempt<=?2
                   AND (NOT ?4 OR m.scan_version IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM queues WHERE name=?1 AND state='frozen')
                 ORDER BY q.next_attempt LIMIT ?3",
            )?;
            let ids: Vec<i64> = items
                .query_map(params![queue, now(), limit as i64, scanned_only], |r| {
                    r.get(0)
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut rcpts = c.prepare_cached("SELECT address FROM queue_rcpts WHERE item=?1")?;
            ids.into_iter()
                .map(|id| {
                    let list = rcpts
                        .query_map([id], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()?;
                    Ok((id, list))
                })
                .collect()
        })
    }

    pub(super) fn queue_list_impl(&self) -> Result<Vec<QueueSummary>> {
        self.read(|c| {
            let mut queues: BTreeMap<String, QueueSummary> = BTreeMap::new();
            let empty = QueueSummary::empty;
            for name in SYSTEM_QUEUES {
                queues.insert(name.into(), empty(name));
            }
            let mut stmt = c.prepare(
                "SELECT queue, COUNT(*), SUM(state='ready'), SUM(state='retry'), SUM(state='frozen'),
                        MIN(created), MIN(CASE WHEN state!='frozen' THEN next_attempt END)
                 FROM queue_items GROUP BY queue",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                let q = queues.entry(name.clone()).or_insert_with(|| empty(&name));
                q.messages = r.get::<_, i64>(1)? as u64;
                q.ready = r.get::<_, i64>(2)? as u64;
                q.retry = r.get::<_, i64>(3)? as u64;
                q.frozen = r.get::<_, i64>(4)? as u64;
                q.oldest = r.get(5)?;
                q.next_attempt = r.get(6)?;
            }
            let mut stmt = c.prepare("SELECT name, state FROM queues")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                queues.entry(name.clone()).or_insert_with(|| empty(&name)).state = r.get(1)?;
            }
            if outbound::outbound_disabled(c)? {
                for q in queues.values_mut() {
                    if !SYSTEM_QUEUES.contains(&q.name.as_str()) {
                        q.held = Some("outbound disabled".into());
                    }
                }
            }
            Ok(queues.into_values().collect())
        })
    }

    pub(super) fn queue_set_state_impl(&self, name: &str, state: QueueState) -> Result<()> {
        let name = name.to_string();
        self.write(move |c| {
            let known = SYSTEM_QUEUES.contains(&name.as_str())
                || name.starts_with("remote:")
                || name.starts_with("smarthost:")
                || c.prepare_cached("SELECT 1 FROM queue_items WHERE queue=?1")?.exists([&name])?
                || c.prepare_cached("SELECT 1 FROM queues WHERE name=?1")?.exists([&name])?;
            if !known {
                return Err(StoreError::NotFound(format!(
                    "no queue {name} (see `lazaret queue list`; remote queues are named remote:DOMAIN or smarthost:CONNECTOR)"
                )));
            }
            match state {
                QueueState::Active => c.execute("DELETE FROM queues WHERE name=?1", [&name])?,
                QueueState::Frozen => c.execute(
                    "INSERT OR REPLACE INTO queues(name, state) VALUES(?1, 'frozen')",
                    [&name],
                )?,
            };
            Ok(())
        })
    }

    pub(super) fn route_inbound_impl(
        &self,
        limit: usize,
        require_scan: bool,
        next_hop: &dyn Fn(&str) -> String,
        retry_delay_secs: i64,
    ) -> Result<RouteReport> {
        let due = self.due_items_where(QUEUE_INBOUND, limit, require_scan)?;
        if due.is_empty() {
            return Ok(RouteReport::default());
        }
        let plans: Vec<(i64, Groups)> = due
            .into_iter()
            .map(|(item, rcpts)| {
                let mut groups = Groups::new();
                for r in rcpts {
                    groups.entry(next_hop(&r)).or_default().push(r);
                }
                (item, groups)
            })
            .collect();
        let hold = *self.hold.lock().unwrap_or_else(|e| e.into_inner());
        self.write(move |c| {
            let mut report = RouteReport::default();
            let Some(router) = Router::start(c, retry_delay_secs, hold)? else {
                return Ok(report);
            };
            for (item, groups) in plans {
                let Some((message, created, _)) = still_due(c, item, QUEUE_INBOUND)? else {
                    continue;
                };
                let moving = Move {
                    item,
                    message,
                    created,
                };
                route_item(c, &router, moving, groups, &mut report)?;
            }
            Ok(report)
        })
    }

    pub(super) fn deliver_local_impl(
        &self,
        limit: usize,
        retry_delay_secs: i64,
    ) -> Result<DeliveryReport> {
        let due = self.due_items(QUEUE_LOCAL, limit)?;
        if due.is_empty() {
            return Ok(DeliveryReport::default());
        }
        self.write(move |c| {
            let mut report = DeliveryReport::default();
            let t = now();
            for (item, rcpts) in due {
                let Some((message, _, attempts)) = still_due(c, item, QUEUE_LOCAL)? else {
                    continue;
                };
                let missing = into_inboxes(c, message, &rcpts, t, &mut report.users)?;
                let mut stmt =
                    c.prepare_cached("DELETE FROM queue_rcpts WHERE item=?1 AND address=?2")?;
                for rcpt in rcpts.iter().filter(|r| !missing.contains(r)) {
                    stmt.execute(params![item, rcpt])?;
                }
                if missing.is_empty() {
                    c.prepare_cached("DELETE FROM queue_items WHERE id=?1")?
                        .execute([item])?;
                    report.delivered += 1;
                } else {
                    // The user vanished after RCPT was accepted. Hold the message for the
                    // admin rather than lose it; retry in case the account comes back.
                    events::record(
                        c,
                        message,
                        events::DEFERRED,
                        &missing.join(", "),
                        &no_such_user(&missing),
                    )?;
                    c.prepare_cached(
                        "UPDATE queue_items SET state='retry', attempts=?2, next_attempt=?3,
                           last_error=?4 WHERE id=?1",
                    )?
                    .execute(params![
                        item,
                        attempts + 1,
                        t + retry_delay_secs,
                        no_such_user(&missing)
                    ])?;
                    report.deferred += 1;
                }
            }
            Ok(report)
        })
    }

    pub(super) fn next_due_impl(&self, queues: &[&str]) -> Result<Option<i64>> {
        let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        self.read(move |c| {
            let mut earliest: Option<i64> = None;
            let mut stmt = c.prepare_cached(
                "SELECT MIN(next_attempt) FROM queue_items WHERE queue=?1 AND state IN ('ready','retry')
                   AND NOT EXISTS (SELECT 1 FROM queues WHERE name=?1 AND state='frozen')",
            )?;
            for q in &queues {
                let t: Option<i64> = stmt.query_row([q], |r| r.get(0))?;
                earliest = match (earliest, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(earliest)
        })
    }

    pub(super) fn queue_messages_impl(&self, queue: &str) -> Result<Vec<MessageSummary>> {
        self.summaries(QUEUE_SUMMARIES, vec![queue.to_string()])
    }
}
