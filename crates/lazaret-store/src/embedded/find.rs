//! `find`: one SQL query per place (queues, mailboxes, quarantine) built from the
//! filters, each filter answered from an index where one exists (trigram text index for
//! subject and body, part hashes, sender), combined with UNION ALL.

use crate::model::*;
use crate::{Result, StoreError};
use rusqlite::types::Value;
use rusqlite::Connection;

/// A query under construction: SQL conditions and their parameters.
struct Sql {
    conds: Vec<String>,
    args: Vec<Value>,
}

impl Sql {
    /// Adds a condition whose `?` placeholders take `args` in order.
    fn cond(&mut self, sql: &str, args: impl IntoIterator<Item = Value>) {
        let mut out = String::new();
        let mut args = args.into_iter();
        for ch in sql.chars() {
            if ch == '?' {
                self.args
                    .push(args.next().expect("one argument per placeholder"));
                out.push_str(&format!("?{}", self.args.len()));
            } else {
                out.push(ch);
            }
        }
        self.conds.push(out);
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// An FTS5 phrase for `column`: with the trigram tokenizer a phrase matches exactly
/// the messages containing the text as a substring (any case).
fn phrase(column: &str, needle: &str) -> String {
    format!("{column} : \"{}\"", needle.replace('"', "\"\""))
}

/// A LIKE pattern matching `needle` anywhere (`\` escapes).
pub(crate) fn like_anywhere(needle: &str) -> String {
    let mut p = String::from("%");
    for ch in needle.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// Text filters shorter than this cannot use the trigram index.
pub(crate) const MIN_INDEXED: usize = 3;

/// The message ids `(after, through]` one query of an arrival-order find looks at.
#[derive(Debug, Clone, Copy)]
struct Window {
    after: i64,
    through: i64,
}

/// `sql` limited to `window` on `column` (a message id), with the bounds appended to
/// `args`; unchanged without a window.
fn within(sql: &str, column: &str, window: Option<Window>, args: &mut Vec<Value>) -> String {
    match window {
        Some(w) => {
            args.extend([Value::Integer(w.after), Value::Integer(w.through)]);
            format!("{sql} AND {column} > ? AND {column} <= ?")
        }
        None => sql.to_string(),
    }
}

/// The text index's condition on `column` for `needle`, in `window` if there is one.
fn text_condition(sql: &mut Sql, column: &str, needle: &str, window: Option<Window>) {
    let mut args = vec![text(&phrase(column, needle))];
    if let Some(w) = window {
        for _ in 0..2 {
            args.extend([Value::Integer(w.after), Value::Integer(w.through)]);
        }
    }
    args.push(text(needle));
    sql.cond(
        &super::text_index::condition(column, window.is_some()),
        args,
    );
}

/// Conditions on the message row `m`, the same in every place. With a `window`, the
/// indexed sub-queries read only that range of message ids.
fn message_conditions(f: &Filters, sql: &mut Sql, window: Option<Window>) -> Result<()> {
    if let Some(w) = window {
        sql.cond(
            "m.id > ? AND m.id <= ?",
            [Value::Integer(w.after), Value::Integer(w.through)],
        );
    }
    if let Some(s) = f.subject.as_deref() {
        if s.chars().count() >= MIN_INDEXED {
            text_condition(sql, "subject", s, window);
        } else {
            sql.cond("m.subject LIKE ? ESCAPE '\\'", [text(&like_anywhere(s))]);
        }
    }
    if let Some(re) = f.subject_re.as_deref() {
        checked_regex(re)?;
        sql.cond("regexp(?, m.subject)", [text(re)]);
    }
    if let Some(b) = f.body.as_deref() {
        text_condition(sql, "body", checked_body(b)?, window);
    }
    if let Some(from) = f.from.as_deref() {
        let from = from.trim().to_lowercase();
        // Both senders of every message, lower-cased, are in `lookup_senders`: a
        // pattern with a fixed start is a range of it, any other a scan of it (narrower
        // than the messages).
        let (test, value) = if from.contains(['*', '?', '[']) {
            ("address GLOB ?", from)
        } else if from.starts_with('@') {
            ("address GLOB ?", format!("*{from}"))
        } else {
            ("address=?", from)
        };
        let mut args = vec![text(&value)];
        let test = within(test, "message", window, &mut args);
        sql.cond(
            &format!("m.id IN (SELECT message FROM lk.lookup_senders WHERE {test})"),
            args,
        );
    }
    if let Some(glob) = f.attachment.as_deref() {
        let mut args = vec![text(&glob.to_lowercase())];
        let test = within(
            "filename IS NOT NULL AND lower(filename) GLOB ?",
            "message",
            window,
            &mut args,
        );
        sql.cond(
            &format!("m.id IN (SELECT message FROM parts WHERE {test})"),
            args,
        );
    }
    if let Some(hash) = f.sha256.as_deref() {
        let hash = checked_sha256(hash)?;
        // The message's own digest and its parts' are all in `lookup_hashes`.
        let mut args = vec![text(&hash)];
        let test = within("hash=?", "message", window, &mut args);
        sql.cond(
            &format!("m.id IN (SELECT message FROM lk.lookup_hashes WHERE {test})"),
            args,
        );
    }
    if let Some(sig) = f.signature.as_deref() {
        sql.cond("m.verdict=?", [text(sig)]);
    }
    if let Some(auth) = f.auth.as_deref() {
        for term in auth_terms(auth)? {
            sql.cond(
                "(' ' || m.auth || ' ') LIKE ?",
                [text(&format!("% {term} %"))],
            );
        }
    }
    if let Some(t) = f.received_before {
        sql.cond("m.received<=?", [Value::Integer(t)]);
    }
    if let Some(t) = f.received_after {
        sql.cond("m.received>=?", [Value::Integer(t)]);
    }
    if let Some(n) = f.larger_than {
        sql.cond("m.size>?", [Value::Integer(n as i64)]);
    }
    if let Some(cluster) = f.cluster {
        sql.cond(&super::clusters::member_of("?"), [Value::Integer(cluster)]);
    }
    Ok(())
}

/// `--subject-re`, checked before any store runs it.
pub(crate) fn checked_regex(re: &str) -> Result<()> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| StoreError::Invalid(format!("--subject-re {re:?}: {e}")))
}

/// `--body`: long enough for the trigram index.
pub(crate) fn checked_body(needle: &str) -> Result<&str> {
    match needle.chars().count() >= MIN_INDEXED {
        true => Ok(needle),
        false => Err(StoreError::Invalid(format!(
            "--body {needle:?}: give at least {MIN_INDEXED} characters"
        ))),
    }
}

/// `--sha256`: 64 hex digits, lower-cased.
pub(crate) fn checked_sha256(hash: &str) -> Result<String> {
    let hash = hash.trim().to_ascii_lowercase();
    match hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => Ok(hash),
        false => Err(StoreError::Invalid(format!(
            "--sha256 {hash:?}: give the 64 hex digits of a SHA-256"
        ))),
    }
}

/// The methods and results `messages.auth` records (see the inbound checks).
const AUTH_METHODS: [&str; 4] = ["spf", "dkim", "dmarc", "arc"];
const AUTH_RESULTS: [&str; 7] = [
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
];

/// `--auth dmarc=fail,spf=softfail` as checked `method=result` terms, lower-case.
pub(crate) fn auth_terms(text: &str) -> Result<Vec<String>> {
    let invalid = |why: String| StoreError::Invalid(format!("--auth {text:?}: {why}"));
    let mut terms = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let term = term.to_ascii_lowercase();
        let Some((method, result)) = term.split_once('=') else {
            return Err(invalid(format!(
                "{term:?} is not METHOD=RESULT (e.g. dmarc=fail)"
            )));
        };
        if !AUTH_METHODS.contains(&method) {
            return Err(invalid(format!(
                "no method {method:?}; one of {}",
                AUTH_METHODS.join(", ")
            )));
        }
        if !AUTH_RESULTS.contains(&result) {
            return Err(invalid(format!(
                "no result {result:?}; one of {}",
                AUTH_RESULTS.join(", ")
            )));
        }
        terms.push(term);
    }
    if terms.is_empty() {
        return Err(invalid("give METHOD=RESULT, e.g. dmarc=fail".into()));
    }
    Ok(terms)
}

/// Ids of one kind (`q`, `m`, `x`) among `ids`, as a JSON array for json_each.
fn ids_of_kind(ids: &[String], kind: char) -> String {
    let numbers: Vec<i64> = ids
        .iter()
        .filter_map(|id| id.strip_prefix(kind)?.parse().ok())
        .collect();
    serde_json::to_string(&numbers).unwrap_or_else(|_| "[]".into())
}

/// The SELECT for one place, or None when the filters rule the place out.
fn place_query(
    place: Place,
    f: &Filters,
    ids_only: bool,
    window: Option<Window>,
) -> Result<Option<(String, Vec<Value>)>> {
    let mut sql = Sql {
        conds: Vec::new(),
        args: Vec::new(),
    };
    let state = f.state.as_deref().filter(|s| *s != "all");
    let (select, from, kind) = match place {
        Place::Queues => {
            if f.mailbox.is_some() || f.quarantined_before.is_some() {
                return Ok(None);
            }
            if let Some(q) = f.queue.as_deref() {
                sql.cond("q.queue=?", [text(q)]);
            }
            if let Some(s) = state {
                sql.cond("q.state=?", [text(s)]);
            }
            if let Some(to) = f.to.as_deref() {
                let to = to.trim().to_lowercase();
                sql.cond(
                    "(q.id IN (SELECT item FROM queue_rcpts WHERE address=?)
                      OR lower(m.hdr_to || ',' || m.hdr_cc) LIKE ? ESCAPE '\\')",
                    [text(&to), text(&like_anywhere(&to))],
                );
            }
            (
                "'q' || q.id, 'queue:' || q.queue, m.env_from,
                 (SELECT group_concat(address, ',') FROM queue_rcpts r WHERE r.item=q.id),
                 m.subject, COALESCE(m.date, m.received), m.size, q.state, m.sha256, NULL,
                 m.uid, q.attempts, q.next_attempt, q.last_error, NULL, NULL, m.verdict, m.id",
                "queue_items q JOIN messages m ON m.id=q.message",
                'q',
            )
        }
        Place::Mailboxes => {
            if f.queue.is_some() || state.is_some() || f.quarantined_before.is_some() {
                return Ok(None);
            }
            if let Some(mb) = f.mailbox.as_deref() {
                match mb.split_once('/') {
                    Some((user, folder)) => sql.cond(
                        "b.user=? AND b.name=?",
                        [text(&user.to_lowercase()), text(folder)],
                    ),
                    None => sql.cond("b.user=?", [text(&mb.to_lowercase())]),
                }
            }
            if let Some(to) = f.to.as_deref() {
                let to = to.trim().to_lowercase();
                sql.cond(
                    "(b.user=? OR lower(m.hdr_to || ',' || m.hdr_cc) LIKE ? ESCAPE '\\')",
                    [text(&to), text(&like_anywhere(&to))],
                );
            }
            (
                "'m' || e.id, 'mailbox:' || b.user || '/' || b.name, m.hdr_from, m.hdr_to,
                 m.subject, COALESCE(m.date, m.received), m.size, 'delivered', m.sha256, e.uid,
                 m.uid, NULL, NULL, NULL, NULL, NULL, m.verdict, m.id",
                "mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox JOIN messages m ON m.id=e.message",
                'm',
            )
        }
        Place::Quarantine => {
            if state.is_some() {
                return Ok(None);
            }
            if let Some(q) = f.queue.as_deref() {
                sql.cond("z.origin_location=?", [text(&format!("queue:{q}"))]);
            }
            if let Some(mb) = f.mailbox.as_deref() {
                let pattern = if mb.contains('/') {
                    format!("mailbox:{}", mb)
                } else {
                    format!("mailbox:{}/*", mb.to_lowercase())
                };
                sql.cond("z.origin_location GLOB ?", [text(&pattern)]);
            }
            if let Some(t) = f.quarantined_before {
                sql.cond("z.at<=?", [Value::Integer(t)]);
            }
            if let Some(to) = f.to.as_deref() {
                let to = like_anywhere(&to.trim().to_lowercase());
                sql.cond(
                    "(z.recipients LIKE ? ESCAPE '\\' OR lower(m.hdr_to || ',' || m.hdr_cc) LIKE ? ESCAPE '\\')",
                    [text(&to), text(&to)],
                );
            }
            (
                "'x' || z.id, 'quarantine', m.env_from, z.recipients,
                 m.subject, COALESCE(m.date, m.received), m.size, 'quarantined', m.sha256, NULL,
                 m.uid, NULL, NULL, NULL, z.origin_location, z.reason, m.verdict, m.id",
                "quarantine z JOIN messages m ON m.id=z.message",
                'x',
            )
        }
    };
    if let Some(ids) = &f.ids {
        let alias = match kind {
            'q' => "q",
            'm' => "e",
            _ => "z",
        };
        sql.cond(
            &format!("{alias}.id IN (SELECT value FROM json_each(?))"),
            [Value::Text(ids_of_kind(ids, kind))],
        );
    }
    message_conditions(f, &mut sql, window)?;
    let select = if ids_only {
        match kind {
            'q' => "'q' || q.id",
            'm' => "'m' || e.id",
            _ => "'x' || z.id",
        }
    } else {
        select
    };
    let mut query = format!("SELECT {select} FROM {from}");
    if !sql.conds.is_empty() {
        query.push_str(" WHERE ");
        query.push_str(&sql.conds.join(" AND "));
    }
    Ok(Some((query, sql.args)))
}

/// Renumbers `?N` placeholders of a sub-query by `offset`, so sub-queries with their own
/// parameters can be joined into one statement.
fn shift_placeholders(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch == '?' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            let n: usize = digits.parse().unwrap_or(0);
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

fn union(
    places: &[Place],
    f: &Filters,
    ids_only: bool,
    window: Option<Window>,
) -> Result<Option<(String, Vec<Value>)>> {
    let mut parts = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    for place in places {
        if let Some((sql, a)) = place_query(*place, f, ids_only, window)? {
            parts.push(shift_placeholders(&sql, args.len()));
            args.extend(a);
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some((parts.join(" UNION ALL "), args)))
}

pub(crate) fn find(
    c: &Connection,
    places: &[Place],
    f: &Filters,
    sort: Option<SortKey>,
    offset: usize,
    limit: Option<usize>,
) -> Result<FindResult> {
    let sort = sort.unwrap_or(SortKey::Date);
    if sort == SortKey::Arrival {
        return find_newest_first(c, places, f, offset, limit, FIRST_WINDOW);
    }
    let Some((sql, args)) = union(places, f, false, None)? else {
        return Ok(FindResult {
            messages: Vec::new(),
            more: false,
        });
    };
    // Columns: 3 from, 5 subject, 6 date, 7 size, 18 message id (1-based).
    let order = match sort {
        SortKey::Arrival | SortKey::Date => "6, 1",
        SortKey::Subject => "5 COLLATE NOCASE, 6",
        SortKey::Size => "7 DESC, 6",
        SortKey::From => "3 COLLATE NOCASE, 6",
    };
    // The union is sorted whole either way, so an offset costs what a key to start
    // after would, and it works for every sort order and place.
    let mut query = format!("{sql} ORDER BY {order}");
    // SQLite takes 64-bit signed counts.
    let offset = offset.min(i64::MAX as usize);
    match limit {
        Some(n) => query.push_str(&format!(
            " LIMIT {} OFFSET {offset}",
            n.saturating_add(1).min(i64::MAX as usize)
        )),
        None if offset > 0 => query.push_str(&format!(" LIMIT -1 OFFSET {offset}")),
        None => {}
    }
    let mut stmt = c.prepare(&query)?;
    let mut messages = stmt
        .query_map(rusqlite::params_from_iter(args), super::summary_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = limit.is_some_and(|n| messages.len() > n);
    if let Some(n) = limit {
        messages.truncate(n);
    }
    Ok(FindResult { messages, more })
}

/// Message ids the first window of an arrival-order find spans; each next one is four
/// times wider, so a rare match costs a handful of queries and a common one stops
/// after the first.
const FIRST_WINDOW: i64 = 16_384;

/// `find` newest first (by message id, the order the store took messages in), one
/// window of ids at a time from the newest down, until the page is full. Every indexed
/// filter then reads only its window's stretch of its index, so the first page costs
/// what its rows cost, not what all the matches do (sorting 50,000 body matches at 1M
/// messages to show 50 took 1.3 s).
pub(super) fn find_newest_first(
    c: &Connection,
    places: &[Place],
    f: &Filters,
    offset: usize,
    limit: Option<usize>,
    first_window: i64,
) -> Result<FindResult> {
    let newest: i64 = c
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages")?
        .query_row([], |r| r.get(0))?;
    // One row beyond the page tells whether there is more.
    let wanted = limit.map(|n| offset.saturating_add(n).saturating_add(1));
    let mut messages = Vec::new();
    let (mut through, mut width) = (newest, first_window.max(1));
    while through > 0 && wanted.is_none_or(|w| messages.len() < w) {
        let after = through.saturating_sub(width).max(0);
        let window = Window { after, through };
        let Some((sql, args)) = union(places, f, false, Some(window))? else {
            break;
        };
        let mut query = format!("{sql} ORDER BY 18 DESC, 1");
        if let Some(w) = wanted {
            query.push_str(&format!(
                " LIMIT {}",
                (w - messages.len()).min(i64::MAX as usize)
            ));
        }
        let mut stmt = c.prepare(&query)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), super::summary_row)?;
        for row in rows {
            messages.push(row?);
        }
        through = after;
        width = width.saturating_mul(4);
    }
    let more = wanted.is_some_and(|w| messages.len() >= w);
    let mut messages: Vec<_> = messages.into_iter().skip(offset).collect();
    if let Some(n) = limit {
        messages.truncate(n);
    }
    Ok(FindResult { messages, more })
}

pub(crate) fn find_ids(c: &Connection, places: &[Place], f: &Filters) -> Result<Vec<String>> {
    let Some((sql, args)) = union(places, f, true, None)? else {
        return Ok(Vec::new());
    };
    let mut stmt = c.prepare(&sql)?;
    let ids = stmt
        .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

/// Registers `regexp(pattern, text)` on a connection (SQLite has none built in); each
/// statement compiles its pattern once.
pub(crate) fn register_functions(c: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    c.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let re = ctx.get_or_create_aux(0, |v| {
                regex::RegexBuilder::new(v.as_str()?)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
            })?;
            let text = ctx.get_raw(1).as_str().unwrap_or("");
            Ok(re.is_match(text))
        },
    )
}
