//! The PostgreSQL store against a real PostgreSQL server: `LAZARET_TEST_POSTGRES` is
//! its URL (scripts/test starts a throw-away cluster with scripts/postgres-throwaway).
//! Each test works in a database of its own.
#![cfg(all(feature = "postgres", feature = "s3"))]

use lazaret_core::QueueState;
use lazaret_store::objects::{ObjectSettings, Objects};
use lazaret_store::postgres::{PostgresSettings, PostgresStore, SCHEMA_VERSION};
use lazaret_store::{
    AttemptOutcome, AuditEntry, DeliveryReport, Incoming, RecipientStatus, StoreError, Via,
};

/// The server's URL, or None (and the test passes as skipped) when none is given,
/// unless `LAZARET_TESTS_REQUIRE` names `postgres`.
fn server() -> Option<String> {
    match std::env::var("LAZARET_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("LAZARET_TESTS_REQUIRE").unwrap_or_default();
            assert!(
                !required.split(',').any(|r| r == "postgres"),
                "LAZARET_TEST_POSTGRES is not set and LAZARET_TESTS_REQUIRE names postgres"
            );
            eprintln!("skipped: no PostgreSQL (set LAZARET_TEST_POSTGRES)");
            None
        }
    }
}

/// Runs `work` with a connection to `url`, on a runtime of its own.
fn with_connection<T>(url: &str, work: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        work(&client).await
    })
}

/// Runs SQL statements.
fn admin_sql(url: &str, sql: &str) {
    with_connection(url, async |c| c.batch_execute(sql).await.unwrap());
}

/// A new empty database; returns its URL.
fn fresh_database(url: &str, name: &str) -> String {
    let db = format!("lz_{name}_{}", std::process::id());
    // One statement each: several in one query run as one transaction, where
    // PostgreSQL allows neither.
    admin_sql(url, &format!("DROP DATABASE IF EXISTS {db}"));
    admin_sql(url, &format!("CREATE DATABASE {db}"));
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("LAZARET_TEST_POSTGRES must end with /DATABASE: {url}"),
    }
}

fn settings(url: &str, node: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_string(),
        node: node.to_string(),
        connections: 4,
        ca_file: None,
    }
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server, "migrations");
    // Three nodes starting at once: the advisory lock makes them take turns, and each
    // migration is applied by exactly one.
    let opened: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&settings(&url, &format!("n{i}")), None))
        })
        .collect();
    for handle in opened {
        handle.join().unwrap().expect("every node opens the store");
    }
    let store = PostgresStore::open(&settings(&url, "n0"), None).unwrap();
    assert_eq!(store.nodes().unwrap().len(), 3);
    drop(store);

    admin_sql(
        &url,
        &format!(
            "DO $$ BEGIN IF (SELECT COUNT(*) FROM schema_migrations) <> {SCHEMA_VERSION} THEN
             RAISE EXCEPTION 'a migration applied more than once'; END IF; END $$;
         INSERT INTO schema_migrations(version, name, applied) VALUES(999, 'future', 0)"
        ),
    );
    let err = PostgresStore::open(&settings(&url, "n0"), None)
        .err()
        .expect("a database from a newer version is refused")
        .to_string();
    assert!(
        err.contains("version 999") && err.contains(&format!("({SCHEMA_VERSION})")),
        "{err}"
    );
}

#[test]
fn the_schema_has_real_tables_and_trigram_indexes() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server, "tables");
    drop(PostgresStore::open(&settings(&url, "n0"), None).unwrap());
    // Fails (and so panics) unless every table, lease column and trigram index (four
    // on message headers, attachment names, body text) is there.
    admin_sql(
        &url,
        "SELECT id, uid, subject, env_from FROM messages LIMIT 0;
         SELECT lease_owner, lease_until FROM queue_items LIMIT 0;
         SELECT mailbox, uid, flags, modseq FROM mailbox_entries LIMIT 0;
         SELECT origin->>'location' FROM quarantine LIMIT 0;
         SELECT name, heartbeat FROM nodes LIMIT 0;
         SELECT message, body FROM message_text LIMIT 0;
         DO $$ BEGIN IF (SELECT COUNT(*) FROM pg_indexes
                         WHERE indexname LIKE '%_trgm') <> 6 THEN
             RAISE EXCEPTION 'trigram indexes missing'; END IF; END $$;",
    );
}

#[test]
fn accounts_work_as_in_the_embedded_store() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server, "accounts");
    let store = PostgresStore::open(&settings(&url, "n0"), None).unwrap();

    store.domain_add("Example.ORG").unwrap();
    assert!(matches!(
        store.domain_add("example.org"),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.domain_add("not a domain"),
        Err(StoreError::Invalid(_))
    ));
    let err = store
        .user_add("a@elsewhere.net", "pw")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lazaret domain add elsewhere.net"), "{err}");

    store.user_add("Alice@Example.org", "secret one").unwrap();
    store.user_add("bob@example.org", "secret two").unwrap();
    assert!(matches!(
        store.user_add("alice@example.org", "x"),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.user_add("carol@example.org", ""),
        Err(StoreError::Invalid(_))
    ));

    assert_eq!(
        store.recipient_status("ALICE@example.org").unwrap(),
        RecipientStatus::LocalUser
    );
    assert_eq!(
        store.recipient_status("nobody@example.org").unwrap(),
        RecipientStatus::UnknownLocalUser
    );
    assert_eq!(
        store.recipient_status("someone@example.com").unwrap(),
        RecipientStatus::NotLocal
    );
    assert!(store.user_exists("alice@example.org").unwrap());
    assert!(store
        .user_verify_password("alice@example.org", "secret one")
        .unwrap());
    assert!(!store
        .user_verify_password("alice@example.org", "secret two")
        .unwrap());
    store
        .user_set_password("alice@example.org", "secret three")
        .unwrap();
    assert!(store
        .user_verify_password("alice@example.org", "secret three")
        .unwrap());
    assert!(!store
        .user_verify_password("nobody@example.org", "x")
        .unwrap());

    let users = store.user_list().unwrap();
    let names: Vec<_> = users.iter().map(|u| u.address.as_str()).collect();
    assert_eq!(names, ["alice@example.org", "bob@example.org"]);
    assert!(users.iter().all(|u| u.messages == 0 && u.bytes == 0));
    // A new store has `localhost`, as on one node.
    let domains: Vec<(String, u64)> = store
        .domain_list()
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.users))
        .collect();
    assert_eq!(
        domains,
        [("example.org".to_string(), 2), ("localhost".to_string(), 0)]
    );

    // Every new user gets the five default folders, each with its own UIDVALIDITY.
    let folders = sql_i64(&url, "SELECT COUNT(*) FROM mailboxes");
    let distinct = sql_i64(&url, "SELECT COUNT(DISTINCT uidvalidity) FROM mailboxes");
    assert_eq!((folders, distinct), (10, 10));

    let err = store.domain_remove("example.org").unwrap_err().to_string();
    assert!(err.contains("2 user(s)"), "{err}");
    assert_eq!(store.user_remove("alice@example.org", false).unwrap(), 0);
    assert_eq!(store.user_remove("bob@example.org", false).unwrap(), 0);
    assert!(matches!(
        store.user_remove("bob@example.org", false),
        Err(StoreError::NotFound(_))
    ));
    store.domain_remove("example.org").unwrap();
    assert_eq!(store.domain_list().unwrap().len(), 1);
}

#[test]
fn settings_and_audit_are_shared_by_every_node() {
    let Some(server) = server() else { return };
    let url = fresh_database(&server, "settings");
    let one = PostgresStore::open(&settings(&url, "one"), None).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), None).unwrap();

    assert_eq!(one.setting("smtp.inbound").unwrap(), None);
    one.set_setting("smtp.inbound", "stopped").unwrap();
    assert_eq!(
        two.setting("smtp.inbound").unwrap().as_deref(),
        Some("stopped")
    );
    two.set_setting("smtp.inbound", "running").unwrap();
    assert_eq!(
        one.setting("smtp.inbound").unwrap().as_deref(),
        Some("running")
    );

    one.audit(AuditEntry {
        actor: "admin".into(),
        action: "smtp stop".into(),
        query: None,
        count: None,
        detail: Some("on node one".into()),
    })
    .unwrap();
    two.audit(AuditEntry {
        actor: "admin".into(),
        action: "quarantine".into(),
        query: Some("--subject invoice".into()),
        count: Some(12),
        detail: None,
    })
    .unwrap();
    let log = one.audit_since(0).unwrap();
    let actions: Vec<_> = log.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, ["smtp stop", "quarantine"]);
    assert_eq!(log[1].entry.count, Some(12));
    assert!(log[0].id < log[1].id);

    let nodes = two.nodes().unwrap();
    let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert!(nodes.iter().all(|n| n.up && n.heartbeat >= n.started));
}

#[test]
fn an_unreachable_server_is_a_clear_error_soon() {
    // Nothing listens on port 1 of loopback.
    let started = std::time::Instant::now();
    let err = PostgresStore::open(&settings("postgres://lazaret@127.0.0.1:1/x", "n0"), None)
        .err()
        .expect("no server, no store");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("cannot reach PostgreSQL"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));

    let err = PostgresStore::open(&settings("mysql://x", "n0"), None)
        .err()
        .expect("not a PostgreSQL URL");
    assert!(
        err.to_string().contains("not a PostgreSQL address"),
        "{err}"
    );
}

/// An S3 peer (PyPI `moto[server]`) on loopback with one empty bucket; stopped when
/// dropped. None (the test passes as skipped) without `moto_server`, unless
/// `LAZARET_TESTS_REQUIRE` names `s3`.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    fn start(bucket: &str) -> Option<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(_) => {
                let required = std::env::var("LAZARET_TESTS_REQUIRE").unwrap_or_default();
                assert!(
                    !required.split(',').any(|r| r == "s3"),
                    "moto_server is missing and LAZARET_TESTS_REQUIRE names s3"
                );
                eprintln!("skipped: no moto_server");
                return None;
            }
        };
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let made = std::process::Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("{}/{bucket}", moto.endpoint)])
            .status()
            .unwrap();
        assert!(made.success(), "cannot create bucket {bucket}");
        Some(moto)
    }

    fn objects(&self, bucket: &str) -> Objects {
        Objects::open(&ObjectSettings {
            endpoint: Some(self.endpoint.clone()),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        })
        .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `status`'s totals, kept by triggers (migration 0006), against the rows counted now.
fn totals_match_the_rows(store: &PostgresStore, url: &str) {
    let kept = store.stats().unwrap();
    let live = "FROM messages WHERE id NOT IN (SELECT message FROM reclaim)";
    let counted = (
        sql_i64(url, &format!("SELECT COUNT(*) {live}")),
        sql_i64(
            url,
            &format!("SELECT COALESCE(SUM(size), 0)::bigint {live}"),
        ),
        sql_i64(url, "SELECT COUNT(*) FROM queue_items"),
        sql_i64(url, "SELECT COUNT(*) FROM mailbox_entries"),
    );
    let totals = (
        kept.messages as i64,
        kept.message_bytes as i64,
        kept.queued as i64,
        kept.in_mailboxes as i64,
    );
    assert_eq!(
        totals, counted,
        "status (messages, bytes, queued, in mailboxes)"
    );
}

/// One number from the database.
fn sql_i64(url: &str, sql: &str) -> i64 {
    with_connection(url, async |c| c.query_one(sql, &[]).await.unwrap().get(0))
}

fn message(n: usize) -> Incoming {
    let data = format!(
        "From: sender{n}@origin.example\r\nTo: user{n}@remote.example\r\n\
         Subject: report {n}\r\nMessage-ID: <m{n}@origin.example>\r\n\r\nbody {n}\r\n"
    );
    Incoming {
        id: format!("{:016x}", 0xabc000 + n),
        mail_from: format!("sender{n}@origin.example"),
        rcpt_to: vec![
            format!("user{n}@remote.example"),
            "all@remote.example".into(),
        ],
        helo: "origin.example".into(),
        peer: "192.0.2.7".into(),
        data: data.into_bytes(),
        scan: None,
        via: Via::Smtp,
        auth: None,
    }
}

#[test]
fn ingest_then_nodes_claim_disjoint_leases_and_record_attempts() {
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("mail") else {
        return;
    };
    let url = fresh_database(&server, "claims");
    let one = PostgresStore::open(&settings(&url, "one"), Some(moto.objects("mail"))).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), Some(moto.objects("mail"))).unwrap();

    let no_bucket = PostgresStore::open(&settings(&url, "three"), None).unwrap();
    let err = no_bucket.ingest(message(9)).unwrap_err().to_string();
    assert!(err.contains("blobs = \"s3\""), "{err}");

    for n in 0..4 {
        let node = if n % 2 == 0 { &one } else { &two };
        let accepted = node.ingest(message(n)).unwrap();
        assert_eq!(accepted.id, message(n).id);
    }
    // Rows and bodies: the body is in the bucket under the message's id.
    assert_eq!(sql_i64(&url, "SELECT COUNT(*) FROM messages"), 4);
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM queue_items WHERE queue='inbound'"
        ),
        4
    );
    assert_eq!(sql_i64(&url, "SELECT COUNT(*) FROM queue_rcpts"), 8);
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM message_events WHERE kind='accepted'"
        ),
        4
    );
    let bucket = moto.objects("mail");
    assert_eq!(bucket.get(&message(2).id, None).unwrap(), message(2).data);

    // Routing is not on this store yet: move the items to a remote queue by hand.
    admin_sql(
        &url,
        "UPDATE queue_items SET queue='remote:remote.example' WHERE queue='inbound'",
    );
    let queue = "remote:remote.example";
    let lease = std::time::Duration::from_secs(600);

    // Both nodes claim at once: every item is claimed, none twice.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| one.claim_due(queue, 3, lease).unwrap());
        let b = s.spawn(|| two.claim_due(queue, 3, lease).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut items: Vec<i64> = a.iter().chain(&b).map(|m| m.item).collect();
    items.sort();
    items.dedup();
    assert_eq!(items.len(), 4, "claimed: {a:?} {b:?}");
    assert_eq!(a.len() + b.len(), 4);
    assert!(a.iter().chain(&b).all(|m| m.rcpts.len() == 2));
    // Current leases keep every item from every node.
    assert!(one.claim_due(queue, 10, lease).unwrap().is_empty());
    assert!(two.claim_due(queue, 10, lease).unwrap().is_empty());

    // Node one "dies": its leases lapse, and node two takes its items.
    admin_sql(
        &url,
        "UPDATE queue_items SET lease_until=lease_until-100000 WHERE lease_owner='one'",
    );
    let taken = two.claim_due(queue, 10, lease).unwrap();
    let ones: Vec<i64> = a.iter().map(|m| m.item).collect();
    assert_eq!(
        taken.iter().map(|m| m.item).collect::<Vec<_>>(),
        ones,
        "node two takes exactly node one's lapsed items"
    );
    let held = a.len() as i64 + b.len() as i64;
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM queue_items WHERE lease_owner='two'"
        ),
        held
    );

    // Outcomes: delivered, deferred, failed with a DSN.
    let all: Vec<_> = b.iter().chain(&taken).cloned().collect();
    let (delivered, deferred, failed) = (&all[0], &all[1], &all[2]);
    let mut dsn = message(7);
    dsn.id = "00000000000d5a01".into();
    dsn.mail_from = String::new();
    dsn.rcpt_to = vec![failed.mail_from.clone()];
    let next = 4_000_000_000i64;
    two.record_attempts(vec![
        AttemptOutcome {
            item: delivered.item,
            delivered: delivered.rcpts.clone(),
            failed: vec![],
            deferred: vec![],
            next_attempt: 0,
            error: None,
            dsn: None,
            remote: Some("mx.remote.example".into()),
        },
        AttemptOutcome {
            item: deferred.item,
            delivered: vec![deferred.rcpts[0].clone()],
            failed: vec![],
            deferred: vec![deferred.rcpts[1].clone()],
            next_attempt: next,
            error: Some("451 try later".into()),
            dsn: None,
            remote: Some("mx.remote.example".into()),
        },
        AttemptOutcome {
            item: failed.item,
            delivered: vec![],
            failed: failed.rcpts.clone(),
            deferred: vec![],
            next_attempt: 0,
            error: Some("550 no such user".into()),
            dsn: Some(dsn.clone()),
            remote: Some("mx.remote.example".into()),
        },
    ])
    .unwrap();
    let q = |sql: &str, item: i64| sql_i64(&url, &sql.replace("ITEM", &item.to_string()));
    assert_eq!(
        q(
            "SELECT COUNT(*) FROM queue_items WHERE id=ITEM",
            delivered.item
        ),
        0
    );
    assert_eq!(
        q(
            "SELECT COUNT(*) FROM queue_items WHERE id=ITEM",
            failed.item
        ),
        0
    );
    assert_eq!(
        q(
            "SELECT COUNT(*) FROM queue_items WHERE id=ITEM AND state='retry' AND attempts=1
             AND lease_owner IS NULL AND next_attempt=4000000000",
            deferred.item
        ),
        1
    );
    assert_eq!(
        q(
            "SELECT COUNT(*) FROM queue_rcpts WHERE item=ITEM",
            deferred.item
        ),
        1
    );
    // The two finished messages wait for the reclaim; the DSN waits in `inbound`.
    assert_eq!(sql_i64(&url, "SELECT COUNT(*) FROM reclaim"), 2);
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM queue_items q JOIN messages m ON m.id=q.message
             WHERE q.queue='inbound' AND m.uid='00000000000d5a01'"
        ),
        1
    );
    assert_eq!(bucket.get(&dsn.id, None).unwrap(), dsn.data);
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM message_events
             WHERE kind IN ('delivered', 'deferred', 'bounced')"
        ),
        6
    );

    // Nothing is claimed while outbound is disabled or the queue is frozen.
    admin_sql(
        &url,
        "UPDATE queue_items SET next_attempt=0, lease_owner=NULL, lease_until=NULL",
    );
    one.set_setting(lazaret_store::OUTBOUND_DISABLED, "1")
        .unwrap();
    assert!(one.claim_due(queue, 10, lease).unwrap().is_empty());
    one.set_setting(lazaret_store::OUTBOUND_DISABLED, "0")
        .unwrap();
    admin_sql(
        &url,
        "INSERT INTO queues(name, state) VALUES('remote:remote.example', 'frozen')",
    );
    assert!(two.claim_due(queue, 10, lease).unwrap().is_empty());
    admin_sql(&url, "DELETE FROM queues");
    let again = one.claim_due(queue, 10, lease).unwrap();
    assert_eq!(again.len(), 2, "the deferred item and the last one");
    assert_eq!(one.release_leases(&[again[0].item]).unwrap(), 1);
    assert_eq!(two.claim_due(queue, 10, lease).unwrap().len(), 1);
}

#[test]
fn a_node_hears_when_another_gives_a_queue_work_and_orphans_are_swept() {
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("wake") else {
        return;
    };
    let url = fresh_database(&server, "wakeups");
    let one = PostgresStore::open(&settings(&url, "one"), Some(moto.objects("wake"))).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), Some(moto.objects("wake"))).unwrap();
    let mut heard = two.queue_wakeups();
    // The listener connects in the background: retry until it is listening.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 0;
    let queue = loop {
        one.ingest(message(n)).unwrap();
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
        match heard.try_recv() {
            Ok(queue) => break queue,
            Err(_) if std::time::Instant::now() < deadline => continue,
            Err(e) => panic!("node two heard nothing of node one's ingest: {e:?}"),
        }
    };
    assert_eq!(queue, "inbound");

    // An object no row names (a node died between its PUT and its commit) goes with
    // the sweep; the bodies of stored messages stay.
    let bucket = moto.objects("wake");
    bucket.put("00000000000dead1", b"orphan".to_vec()).unwrap();
    assert_eq!(
        two.remove_orphan_objects(lazaret_store::ORPHAN_MIN_AGE)
            .unwrap(),
        0,
        "nothing is old enough"
    );
    assert_eq!(
        two.remove_orphan_objects(std::time::Duration::ZERO)
            .unwrap(),
        1
    );
    assert!(bucket.fetch("00000000000dead1", None).is_err());
    for i in 0..n {
        assert_eq!(bucket.fetch(&message(i).id, None).unwrap(), message(i).data);
    }
}

/// Delivers local mail in small batches until none is due; the totals.
fn deliver_everything(store: &PostgresStore) -> DeliveryReport {
    let mut total = DeliveryReport::default();
    loop {
        let r = store.deliver_local(3, 60).unwrap();
        if r.delivered + r.deferred == 0 {
            return total;
        }
        total.delivered += r.delivered;
        total.deferred += r.deferred;
    }
}

#[test]
fn nodes_delivering_local_mail_at_once_give_dense_uids_and_tell_each_other() {
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("local") else {
        return;
    };
    let url = fresh_database(&server, "local");
    let one = PostgresStore::open(&settings(&url, "one"), Some(moto.objects("local"))).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), Some(moto.objects("local"))).unwrap();
    one.domain_add("example.org").unwrap();
    one.user_add("ann@example.org", "pw").unwrap();
    one.user_add("bob@example.org", "pw").unwrap();
    let mut heard = one.mailbox_wakeups();

    for n in 0..40 {
        let mut m = message(n);
        // Both users in both orders: nodes lock the same INBOXes from either side.
        m.rcpt_to = match n % 3 {
            0 => vec!["ann@example.org".into()],
            1 => vec!["ann@example.org".into(), "bob@example.org".into()],
            _ => vec!["bob@example.org".into(), "ann@example.org".into()],
        };
        if n == 39 {
            m.rcpt_to.push("gone@example.org".into());
        }
        (if n % 2 == 0 { &one } else { &two }).ingest(m).unwrap();
    }
    // Routing is not on this store yet: move the items to `local` by hand.
    admin_sql(&url, "UPDATE queue_items SET queue='local'");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| deliver_everything(&one));
        let b = s.spawn(|| deliver_everything(&two));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.delivered + b.delivered, 39);
    assert_eq!(
        a.deferred + b.deferred,
        1,
        "the message also for a user who is gone"
    );
    // Every message in ann's INBOX once, UIDs 1..=40 with no gap, uidnext after them;
    // bob's 26 likewise.
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(DISTINCT e.message) FROM mailbox_entries e
             JOIN mailboxes b ON b.id=e.mailbox WHERE b.\"user\"='ann@example.org' AND b.name='INBOX'"
        ),
        40
    );
    for (user, count) in [("ann", 40), ("bob", 26)] {
        assert_eq!(
            sql_i64(
                &url,
                &format!(
                    "SELECT MAX(e.uid) * 1000 + COUNT(DISTINCT e.uid) FROM mailbox_entries e
                     JOIN mailboxes b ON b.id=e.mailbox WHERE b.\"user\"='{user}@example.org'"
                )
            ),
            count * 1000 + count,
            "{user}'s UIDs"
        );
    }
    assert_eq!(
        sql_i64(
            &url,
            "SELECT uidnext FROM mailboxes WHERE \"user\"='ann@example.org' AND name='INBOX'"
        ),
        41
    );
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM queue_items WHERE state='retry'
             AND last_error='no such local user: gone@example.org'"
        ),
        1
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match heard.try_recv() {
            Ok(user) => {
                assert!(user.ends_with("@example.org"), "{user}");
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => panic!("node one heard of no new mail: {e:?}"),
        }
    }
}

#[test]
fn queue_switches_thrown_on_one_node_hold_on_every_node() {
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("switches") else {
        return;
    };
    let url = fresh_database(&server, "switches");
    let one = PostgresStore::open(&settings(&url, "one"), Some(moto.objects("switches"))).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), Some(moto.objects("switches"))).unwrap();
    for n in 0..3 {
        one.ingest(message(n)).unwrap();
    }
    admin_sql(
        &url,
        "UPDATE queue_items SET queue='remote:remote.example', state='retry',
             next_attempt=4000000000",
    );
    let queue = "remote:remote.example";
    let lease = std::time::Duration::from_secs(600);
    let ids: Vec<String> = (1..=3).map(|i| format!("q{i}")).collect();

    // Waiting for their next attempt: nothing to claim, until retry-now on node one.
    assert!(two.claim_due(queue, 10, lease).unwrap().is_empty());
    assert_eq!(
        two.outbound_queues().unwrap(),
        vec![(queue.to_string(), 4_000_000_000)]
    );
    // Freeze the queue on node one: node two claims nothing, even after retry-now.
    one.queue_set_state(queue, QueueState::Frozen).unwrap();
    let retried = one.queue_retry_now(&[queue.to_string()]).unwrap();
    assert_eq!((retried.due, retried.frozen), (3, 0));
    assert!(two.claim_due(queue, 10, lease).unwrap().is_empty());
    assert!(two.outbound_queues().unwrap().is_empty());
    let listed = two.queue_list().unwrap();
    let q = listed.iter().find(|q| q.name == queue).unwrap();
    assert_eq!((q.state.as_str(), q.messages, q.retry), ("frozen", 3, 3));
    assert!(listed.iter().any(|q| q.name == "inbound"));

    // Thaw on node two; freeze one item on node one; outbound off, then on.
    two.queue_set_state(queue, QueueState::Active).unwrap();
    assert_eq!(one.items_set_frozen(&ids[..1], true).unwrap(), 1);
    one.set_outbound_disabled(true).unwrap();
    assert!(two.outbound_disabled().unwrap());
    assert!(two.claim_due(queue, 10, lease).unwrap().is_empty());
    assert_eq!(
        two.queue_list()
            .unwrap()
            .iter()
            .find(|q| q.name == queue)
            .unwrap()
            .held
            .as_deref(),
        Some("outbound disabled")
    );
    two.set_outbound_disabled(false).unwrap();
    let claimed = two.claim_due(queue, 10, lease).unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.item).collect::<Vec<_>>(),
        [2, 3],
        "the frozen item stays"
    );
    let retried = one.items_retry_now(&ids).unwrap();
    assert_eq!((retried.due, retried.frozen), (2, 1));
    assert_eq!(one.items_set_frozen(&ids[..1], false).unwrap(), 1);
    assert_eq!(
        one.claim_due(queue, 10, lease)
            .unwrap()
            .iter()
            .map(|m| m.item)
            .collect::<Vec<_>>(),
        [1],
        "thawed and due at once; the others are still leased to node two"
    );
    assert!(one.next_due(&[queue]).unwrap().is_some());
    let err = one
        .queue_set_state("nonsense", QueueState::Frozen)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lazaret queue list"), "{err}");
}

/// Local domain example.org; anything else goes to `remote:DOMAIN`.
fn next_hop(rcpt: &str) -> String {
    match rcpt.rsplit_once('@') {
        Some((_, "example.org")) => "local".into(),
        Some((_, domain)) => format!("remote:{domain}"),
        None => "local".into(),
    }
}

/// Routes in batches of one until nothing is due; how many items were routed.
fn route_everything(store: &PostgresStore) -> usize {
    let mut routed = 0;
    loop {
        let r = store.route_inbound(1, false, &next_hop, 60).unwrap();
        if r.routed == 0 {
            return routed;
        }
        routed += r.routed;
    }
}

#[test]
fn nodes_route_inbound_mail_at_once_each_item_once() {
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("routing") else {
        return;
    };
    let url = fresh_database(&server, "routing");
    let one = PostgresStore::open(&settings(&url, "one"), Some(moto.objects("routing"))).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), Some(moto.objects("routing"))).unwrap();
    one.domain_add("example.org").unwrap();
    one.user_add("ann@example.org", "pw").unwrap();
    let mut work = two.queue_wakeups();
    for n in 0..30 {
        let mut m = message(n);
        m.rcpt_to = match n % 3 {
            0 => vec!["ann@example.org".into()],
            1 => vec!["ann@example.org".into(), format!("x{n}@remote.example")],
            _ => vec![format!("y{n}@other.example")],
        };
        if n == 29 {
            m.rcpt_to.push("gone@example.org".into());
        }
        one.ingest(m).unwrap();
    }
    // Unscanned mail stays in `inbound` while the scanner is on.
    assert_eq!(
        one.route_inbound(100, true, &next_hop, 60).unwrap().routed,
        0
    );

    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| route_everything(&one));
        let b = s.spawn(|| route_everything(&two));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a + b, 30, "every inbound item routed once");
    let count = |sql: &str| sql_i64(&url, sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM queue_items WHERE queue='inbound'"),
        0
    );
    // ann: 20 copies, straight into INBOX with UIDs 1..20.
    assert_eq!(
        count("SELECT MAX(uid) * 1000 + COUNT(DISTINCT uid) FROM mailbox_entries"),
        20 * 1000 + 20
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM queue_items WHERE queue='remote:remote.example'"),
        10
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM queue_items q JOIN queue_rcpts r ON r.item=q.id
             WHERE q.queue='remote:other.example' AND q.state='ready'"
        ),
        10
    );
    // The copy for a user who is gone waits in `local`, said why.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM queue_items WHERE queue='local' AND state='retry'
             AND last_error='no such local user: gone@example.org'"
        ),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM message_events WHERE kind='queued'"),
        20
    );
    // Outbound work was announced to the other nodes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut heard = Vec::new();
    while std::time::Instant::now() < deadline
        && !heard.iter().any(|q: &String| q.starts_with("remote:"))
    {
        match work.try_recv() {
            Ok(queue) => heard.push(queue),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    assert!(heard.iter().any(|q| q.starts_with("remote:")), "{heard:?}");

    // A frozen `inbound` routes nothing.
    one.ingest(message(40)).unwrap();
    two.queue_set_state("inbound", QueueState::Frozen).unwrap();
    assert_eq!(
        one.route_inbound(10, false, &next_hop, 60).unwrap().routed,
        0
    );
    two.queue_set_state("inbound", QueueState::Active).unwrap();
    assert_eq!(
        one.route_inbound(10, false, &next_hop, 60).unwrap().routed,
        1
    );
}

#[test]
fn nodes_scan_different_messages_and_take_over_claims_that_lapse() {
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("scanclaims") else {
        return;
    };
    let url = fresh_database(&server, "scanclaims");
    let one =
        PostgresStore::open(&settings(&url, "one"), Some(moto.objects("scanclaims"))).unwrap();
    let two =
        PostgresStore::open(&settings(&url, "two"), Some(moto.objects("scanclaims"))).unwrap();
    for n in 0..10 {
        one.ingest(message(n)).unwrap();
    }
    let ids =
        |p: Vec<lazaret_store::PendingScan>| p.into_iter().map(|p| p.message).collect::<Vec<_>>();
    let first = ids(one.scan_pending(4).unwrap());
    let rest = ids(two.scan_pending(10).unwrap());
    assert_eq!(first.len(), 4);
    assert_eq!(
        rest.len(),
        6,
        "the other node takes the messages not claimed"
    );
    assert!(
        first.iter().all(|m| !rest.contains(m)),
        "{first:?} {rest:?}"
    );
    assert!(first.iter().max() < rest.iter().min(), "oldest first");
    // A node takes its own claims again (a scan that had to wait is retried).
    assert_eq!(ids(one.scan_pending(10).unwrap()), first);
    let claimed_by = |node: &str| {
        sql_i64(
            &url,
            &format!(
                "SELECT COUNT(*) FROM queue_items WHERE queue='inbound' AND lease_owner='{node}'"
            ),
        )
    };
    let records = first
        .iter()
        .map(|&message| lazaret_store::ScanRecord {
            message,
            stamp: lazaret_store::ScanStamp {
                version: "v1".into(),
                content_version: "c1".into(),
                verdict: None,
            },
            action: lazaret_store::ScanAction::Keep,
        })
        .collect();
    one.record_scans(records).unwrap();
    assert_eq!(
        claimed_by("one"),
        0,
        "recording a scan gives its claims back"
    );
    assert_eq!(claimed_by("two"), 6);
    assert!(
        one.scan_pending(10).unwrap().is_empty(),
        "the rest is two's"
    );
    // Node two dies: its claims lapse, and node one scans what two had taken.
    sql_i64(
        &url,
        "WITH x AS (UPDATE queue_items SET lease_until=0 WHERE lease_owner='two' RETURNING 1)
         SELECT COUNT(*) FROM x",
    );
    assert_eq!(ids(one.scan_pending(10).unwrap()), rest);
    assert_eq!(claimed_by("one"), 6);
}

/// What a store answers, as text: `Ok(..)` with the value, or the error's kind and
/// text (entry ids and UIDVALIDITY values differ between stores and are left out by
/// the callers).
fn outcome<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(StoreError::NotFound(t)) => format!("NotFound({t})"),
        Err(StoreError::Exists(t)) => format!("Exists({t})"),
        Err(StoreError::Invalid(t)) => format!("Invalid({t})"),
        Err(e) => format!("Err({e})"),
    }
}

/// One user's IMAP session, the same calls on either store: appends, folders made,
/// renamed and deleted, flags, copy and move, `\Recent` claims, expunge, listings,
/// message bytes and the IMAP cache. Returns what each call answered.
macro_rules! imap_session {
    ($store:expr) => {{
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        let user = "ann@example.org";
        store.domain_add("example.org").unwrap();
        store.user_add(user, "pw").unwrap();
        for n in 0..4 {
            let data =
                format!("From: f{n}@origin.example\r\nSubject: note {n}\r\n\r\nbody {n}\r\n");
            let flags = if n == 0 {
                vec!["\\Seen".to_string()]
            } else {
                vec![]
            };
            let (_, uid) = store
                .append(
                    user,
                    "inbox",
                    format!("{:016x}", 0xfeed00 + n),
                    data.into_bytes(),
                    flags,
                    Some(1_700_000_000 + n as i64),
                )
                .unwrap();
            said.push(format!("append -> uid {uid}"));
        }
        said.push(outcome(
            store
                .append(
                    user,
                    "Nowhere",
                    "00000000000000ff".into(),
                    b"x\r\n\r\ny".to_vec(),
                    vec![],
                    None,
                )
                .map(|_| ()),
        ));
        said.push(outcome(store.folder_create(user, "Work/2026/", None)));
        said.push(outcome(store.folder_create(
            user,
            "Keep",
            Some("\\archive"),
        )));
        said.push(outcome(store.folder_create(user, "Work", None)));
        said.push(outcome(store.folder_create(user, "bad*name", None)));
        said.push(outcome(store.folder_create(user, "Odd", Some("\\Nothing"))));
        said.push(outcome(store.folder_subscribe(user, "Elsewhere", true)));
        said.push(outcome(store.folder_subscribe(user, "Trash", false)));
        let snap = store.folder_snapshot(user, "INBOX").unwrap();
        let entry = |uid: i64| snap.entries.iter().find(|e| e.uid == uid).unwrap().entry;
        let uid_of = |entry: i64| {
            snap.entries
                .iter()
                .find(|e| e.entry == entry)
                .map_or(0, |e| e.uid)
        };
        said.push(format!(
            "snapshot: uidnext {} keywords {:?} entries {:?}",
            snap.uidnext,
            snap.keywords,
            snap.entries
                .iter()
                .map(|e| (e.uid, e.flags.clone(), e.size, e.internal_date))
                .collect::<Vec<_>>()
        ));
        let m0 = store.folder_track_modseq(user, "INBOX").unwrap();
        said.push(format!(
            "track modseq: {}",
            store.folder_track_modseq(user, "INBOX").unwrap() - m0
        ));
        let flagged = store
            .set_flags(
                user,
                "INBOX",
                vec![entry(1), entry(2)],
                lazaret_store::FlagChange::Add,
                vec!["\\seen".into(), "$Label".into()],
                None,
            )
            .unwrap();
        said.push(format!(
            "add flags: {:?} modified {:?}",
            flagged
                .entries
                .iter()
                .map(|(e, f, m)| (uid_of(*e), f.clone(), m - m0))
                .collect::<Vec<_>>(),
            flagged.modified
        ));
        let guarded = store
            .set_flags(
                user,
                "INBOX",
                vec![entry(2), entry(3)],
                lazaret_store::FlagChange::Replace,
                vec!["\\Flagged".into()],
                Some(m0),
            )
            .unwrap();
        said.push(format!(
            "replace unchanged since: {:?} modified {:?}",
            guarded
                .entries
                .iter()
                .map(|(e, f, m)| (uid_of(*e), f.clone(), m - m0))
                .collect::<Vec<_>>(),
            guarded
                .modified
                .iter()
                .map(|e| uid_of(*e))
                .collect::<Vec<_>>()
        ));
        let removed = store
            .set_flags(
                user,
                "INBOX",
                vec![entry(1)],
                lazaret_store::FlagChange::Remove,
                vec!["\\SEEN".into()],
                None,
            )
            .unwrap();
        said.push(format!(
            "remove: {:?}",
            removed
                .entries
                .iter()
                .map(|(e, f, _)| (uid_of(*e), f.clone()))
                .collect::<Vec<_>>()
        ));
        said.push(format!(
            "copy: {:?}",
            store
                .copy_entries(user, "INBOX", "Work/2026", vec![entry(3), entry(2)], false)
                .map(|(_, p)| p)
        ));
        said.push(format!(
            "move: {:?}",
            store
                .copy_entries(user, "INBOX", "Keep", vec![entry(4)], true)
                .map(|(_, p)| p)
        ));
        said.push(outcome(
            store
                .copy_entries(user, "INBOX", "Nope", vec![entry(1)], false)
                .map(|(_, p)| p),
        ));
        said.push(format!(
            "recent: {:?}",
            (
                store.folder_claim_recent(user, "INBOX", 3),
                store.folder_claim_recent(user, "INBOX", 2),
                store.folder_claim_recent(user, "INBOX", 0)
            )
        ));
        said.push(outcome(store.folder_claim_recent(user, "Nope", 1)));
        said.push(outcome(store.folder_rename(user, "Work", "Jobs")));
        said.push(outcome(store.folder_rename(user, "INBOX", "Old")));
        said.push(outcome(store.folder_rename(user, "Jobs", "Keep")));
        said.push(outcome(store.mailbox_delete(
            user,
            "inbox",
            &[format!("m{}", entry(1)), "m999999".into(), "q1".into()],
        )));
        said.push(outcome(store.folder_delete(user, "INBOX")));
        said.push(outcome(store.folder_delete(user, "Jobs/2026")));
        said.push(outcome(store.folder_delete(user, "Jobs/2026")));
        said.push(format!(
            "folders: {:?}",
            store
                .folders(user)
                .unwrap()
                .iter()
                .map(|f| (
                    f.name.clone(),
                    f.special.clone(),
                    f.subscribed,
                    f.uidnext,
                    f.messages,
                    f.unseen,
                    f.recent
                ))
                .collect::<Vec<_>>()
        ));
        said.push(format!(
            "subscriptions: {:?}",
            store.subscriptions(user).unwrap()
        ));
        said.push(format!(
            "mailbox list: {:?}",
            store
                .mailbox_list(user)
                .unwrap()
                .iter()
                .map(|m| (m.name.clone(), m.uidnext, m.messages))
                .collect::<Vec<_>>()
        ));
        said.push(outcome(
            store.mailbox_list("nobody@example.org").map(|l| l.len()),
        ));
        let listed = store.mailbox_messages(user, "INBOX").unwrap();
        said.push(format!(
            "inbox messages: {:?}",
            listed
                .iter()
                .map(|m| (
                    m.location.clone(),
                    m.from.clone(),
                    m.subject.clone(),
                    m.size,
                    m.state.clone(),
                    m.uid
                ))
                .collect::<Vec<_>>()
        ));
        let first = &listed[0];
        said.push(format!(
            "raw by entry: {:?}",
            String::from_utf8(store.message_raw(&first.id).unwrap())
        ));
        said.push(format!(
            "raw by uid: {}",
            store.message_raw(&first.message).unwrap().len()
        ));
        said.push(format!(
            "head: {:?}",
            String::from_utf8(store.message_head(&first.message).unwrap())
        ));
        let mut buf = b"prefix ".to_vec();
        said.push(format!(
            "append to: {:?} {}",
            store.message_append_to(&first.message, &mut buf),
            buf.len()
        ));
        said.push(outcome(store.message_raw("m999999").map(|b| b.len())));
        said.push(outcome(store.message_raw("zz").map(|b| b.len())));
        let cached = lazaret_store::ImapCached {
            envelope: Some(b"env".to_vec()),
            bodystructure: None,
        };
        store
            .imap_cache_put(vec![
                (first.message.clone(), cached),
                (
                    "00000000000000aa".into(),
                    lazaret_store::ImapCached {
                        envelope: Some(b"gone".to_vec()),
                        bodystructure: None,
                    },
                ),
            ])
            .unwrap();
        store
            .imap_cache_put(vec![(
                first.message.clone(),
                lazaret_store::ImapCached {
                    envelope: None,
                    bodystructure: Some(b"bs".to_vec()),
                },
            )])
            .unwrap();
        said.push(format!(
            "cache: {:?}",
            store
                .imap_cache_get(&[first.message.clone(), "00000000000000aa".into()])
                .unwrap()
        ));
        said
    }};
}

/// A PostgreSQL store with a bucket of its own, and an embedded store in a directory
/// of its own, to answer the same calls; None (the test skipped) without the peers.
struct Pair {
    url: String,
    moto: Moto,
    postgres: PostgresStore,
    embedded: Option<lazaret_store::EmbeddedStore>,
    dir: std::path::PathBuf,
}

impl Pair {
    fn open(name: &str) -> Option<Pair> {
        let server = server()?;
        let moto = Moto::start(name)?;
        let url = fresh_database(&server, name);
        let postgres =
            PostgresStore::open(&settings(&url, "one"), Some(moto.objects(name))).unwrap();
        let dir = std::env::temp_dir().join(format!("lazaret-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let embedded = Some(lazaret_store::EmbeddedStore::open(&dir).unwrap());
        Some(Pair {
            url,
            moto,
            postgres,
            embedded,
            dir,
        })
    }

    fn embedded(&self) -> &lazaret_store::EmbeddedStore {
        self.embedded
            .as_ref()
            .expect("open until the pair is dropped")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        drop(self.embedded.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Both stores' answers, line by line (`LAZARET_TEST_SHOW=1` prints PostgreSQL's).
fn same_answers(on_postgres: &[String], on_embedded: &[String]) {
    if std::env::var_os("LAZARET_TEST_SHOW").is_some() {
        eprintln!("{on_postgres:#?}");
    }
    for (p, e) in on_postgres.iter().zip(on_embedded) {
        assert_eq!(
            p, e,
            "PostgreSQL (left) and embedded (right) answer differently"
        );
    }
    assert_eq!(on_postgres.len(), on_embedded.len());
}

#[test]
fn imap_work_on_folders_answers_as_the_embedded_store_and_other_nodes_see_it() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("folders") else {
        return;
    };
    let (one, objects) = (&pair.postgres, pair.moto.objects("folders"));
    let two = PostgresStore::open(&settings(&pair.url, "two"), Some(objects)).unwrap();
    let generation = two.write_generation();
    same_answers(&imap_session!(one), &imap_session!(pair.embedded()));

    // Node two heard of node one's changes: its folder cache key moved, and it reads
    // the same folder.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while two.write_generation() == generation {
        assert!(
            std::time::Instant::now() < deadline,
            "node two heard nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let seen_from_two = two.folder_snapshot("ann@example.org", "INBOX").unwrap();
    let seen_from_one = one.folder_snapshot("ann@example.org", "INBOX").unwrap();
    assert_eq!(seen_from_two.entries, seen_from_one.entries);
    assert_eq!(seen_from_two.highestmodseq, seen_from_one.highestmodseq);
    // Its own change moves a node's generation at once, before any notification.
    let before = one.write_generation();
    let before_two = two.write_generation();
    one.folder_create("ann@example.org", "Fresh", None).unwrap();
    assert!(one.write_generation() > before);
    // CONDSTORE turned on for a folder on node one gives it a new mod-sequence, which
    // node two hears of (once: sessions asking again change nothing).
    let heard = |since: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while two.write_generation() == since {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        true
    };
    assert!(heard(before_two), "node two did not hear of the new folder");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let generation = two.write_generation();
    let on = one.folder_track_modseq("ann@example.org", "Fresh").unwrap();
    assert!(
        heard(generation),
        "node two did not hear of CONDSTORE turned on"
    );
    assert_eq!(
        two.folder_snapshot("ann@example.org", "Fresh")
            .unwrap()
            .highestmodseq,
        on
    );
    let generation = two.write_generation();
    assert_eq!(
        one.folder_track_modseq("ann@example.org", "Fresh").unwrap(),
        on
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(two.write_generation(), generation);
}

/// An admin cleaning up, the same calls on either store: import, quarantine from a
/// folder and a queue, the detail view, restore into a folder deleted meanwhile,
/// removal with a DSN, and a forgery quarantined on arrival.
macro_rules! quarantine_work {
    ($store:expr) => {{
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        store.domain_add("example.org").unwrap();
        store.user_add("ann@example.org", "pw").unwrap();
        let import = |n: usize| lazaret_store::ImportMessage {
            data: format!("From: old{n}@origin.example\r\nSubject: kept {n}\r\n\r\nold {n}\r\n")
                .into_bytes(),
            flags: if n == 0 {
                vec!["\\Seen".into(), "$Work".into()]
            } else {
                vec![]
            },
            internal_date: Some(1_600_000_000 + n as i64),
        };
        said.push(outcome(store.import(
            "ANN@example.org",
            "Archive/Old",
            (0..3).map(import).collect(),
        )));
        said.push(outcome(store.import(
            "nobody@example.org",
            "INBOX",
            vec![import(9)],
        )));
        said.push(outcome(store.import(
            "ann@example.org",
            "bad*",
            vec![import(9)],
        )));
        let mut queued = message(1);
        queued.rcpt_to = vec!["ann@example.org".into(), "far@remote.example".into()];
        store.ingest(queued).unwrap();
        let item = store.queue_messages("inbound").unwrap()[0].id.clone();
        let archived = store
            .mailbox_messages("ann@example.org", "Archive/Old")
            .unwrap();
        said.push(format!(
            "archived: {:?}",
            archived
                .iter()
                .map(|m| (m.subject.clone(), m.uid, m.date))
                .collect::<Vec<_>>()
        ));
        let first = archived[0].id.clone();
        let second = archived[1].id.clone();
        let taken = store
            .quarantine(
                // An id given twice is taken once: the second finds it gone.
                &[
                    first.clone(),
                    item.clone(),
                    "m999999".into(),
                    "zz".into(),
                    first.clone(),
                ],
                "admin",
                "worm",
            )
            .unwrap();
        said.push(format!(
            "quarantine: {} done {} skipped {:?} users",
            taken.done, taken.skipped, taken.users
        ));
        said.push(format!(
            "queue after: {:?}",
            store.queue_messages("inbound").unwrap().len()
        ));
        for x in &taken.created {
            let d = store.quarantine_detail(x).unwrap();
            said.push(format!(
                "detail: {} {} {} {} {:?} {:?} {:?} {:?} {:?}",
                d.origin,
                d.actor,
                d.reason,
                d.message.subject,
                d.message.to,
                d.recipients,
                d.flags,
                d.headers,
                d.message.state
            ));
        }
        said.push(outcome(store.quarantine_detail("x999999").map(|d| d.id)));
        said.push(outcome(store.quarantine_detail("q1").map(|d| d.id)));
        store
            .folder_delete("ann@example.org", "Archive/Old")
            .unwrap();
        let back = store
            .quarantine_restore(&[
                taken.created[0].clone(),
                taken.created[1].clone(),
                "x999999".into(),
                first.clone(),
            ])
            .unwrap();
        said.push(format!(
            "restore: {} done {} skipped {:?} failed {:?} users, kinds {:?}",
            back.done,
            back.skipped,
            back.failed,
            back.users,
            back.created.iter().map(|c| &c[..1]).collect::<Vec<_>>()
        ));
        let snap = store
            .folder_snapshot("ann@example.org", "Archive/Old")
            .unwrap();
        said.push(format!(
            "restored folder: {:?}",
            snap.entries
                .iter()
                .map(|e| (e.uid, e.flags.clone(), e.internal_date))
                .collect::<Vec<_>>()
        ));
        let queue = store.queue_messages("inbound").unwrap();
        said.push(format!(
            "restored item: {:?}",
            queue
                .iter()
                .map(|m| (m.to.clone(), m.state.clone()))
                .collect::<Vec<_>>()
        ));
        let mut dsn = message(2);
        dsn.mail_from = String::new();
        dsn.rcpt_to = vec!["sender1@origin.example".into()];
        let gone = store
            .remove(
                &[
                    queue[0].id.clone(),
                    second.clone(),
                    "x999999".into(),
                    second.clone(),
                ],
                vec![dsn],
            )
            .unwrap();
        said.push(format!(
            "remove: {} done {} skipped {:?} users",
            gone.done, gone.skipped, gone.users
        ));
        said.push(format!(
            "queue after remove: {:?}",
            store
                .queue_messages("inbound")
                .unwrap()
                .iter()
                .map(|m| (m.from.clone(), m.to.clone()))
                .collect::<Vec<_>>()
        ));
        let mut forged = message(3);
        forged.rcpt_to = vec!["ann@example.org".into()];
        forged.auth = Some(lazaret_store::AuthVerdict {
            results: "spf=fail dmarc=fail".into(),
            quarantine: Some("dmarc=fail".into()),
        });
        store.ingest(forged).unwrap();
        said.push(format!(
            "queue after forgery: {}",
            store.queue_messages("inbound").unwrap().len()
        ));
        // Restoring to a user who has gone fails for that message only, and keeps it
        // in quarantine; a batch over two folders gives each its UIDs in order.
        store.user_add("bob@example.org", "pw").unwrap();
        store
            .import("bob@example.org", "INBOX", vec![import(5)])
            .unwrap();
        store
            .import("ann@example.org", "Two", (0..2).map(import).collect())
            .unwrap();
        let mut ids: Vec<String> = store
            .mailbox_messages("bob@example.org", "INBOX")
            .unwrap()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        ids.extend(
            store
                .mailbox_messages("ann@example.org", "Two")
                .unwrap()
                .iter()
                .map(|m| m.id.clone()),
        );
        let taken = store.quarantine(&ids, "admin", "worm").unwrap();
        store.user_remove("bob@example.org", true).unwrap();
        let mut again = taken.created.clone();
        again.reverse();
        let back = store.quarantine_restore(&again).unwrap();
        said.push(format!(
            "restore with a user gone: {} done {} skipped {:?} failed {:?} users",
            back.done,
            back.skipped,
            back.failed.len(),
            back.users
        ));
        said.push(format!(
            "folder Two: {:?}",
            store
                .folder_snapshot("ann@example.org", "Two")
                .unwrap()
                .entries
                .iter()
                .map(|e| (e.uid, e.internal_date))
                .collect::<Vec<_>>()
        ));
        said.push(format!(
            "still quarantined: {}",
            store.quarantine_detail(&taken.created[0]).is_ok()
        ));
        said
    }};
}

#[test]
fn quarantine_restore_remove_and_import_answer_as_the_embedded_store() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("quarantine") else {
        return;
    };
    same_answers(
        &quarantine_work!(&pair.postgres),
        &quarantine_work!(pair.embedded()),
    );
    // The forgery is in quarantine, with the checks as actor, and no queue holds it.
    assert_eq!(
        sql_i64(
            &pair.url,
            "SELECT COUNT(*) FROM quarantine WHERE actor='auth-checks' AND reason='dmarc=fail'"
        ),
        1
    );
}

/// A message with what `find` looks at: sender, subject, date, body text, and an
/// attachment (the bytes "hello") when `attached`.
fn findable(n: usize, from: &str, subject: &str, body: &str, attached: bool) -> Vec<u8> {
    let date = format!("Mon, {:02} Nov 2026 10:00:00 +0000", n + 1);
    let mut m = format!(
        "From: {from}\r\nTo: ann@example.org, Carol <carol@far.example>\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <f{n}@origin.example>\r\nMIME-Version: 1.0\r\n"
    );
    if attached {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{body}\r\n\
             --b\r\nContent-Type: application/zip; name=\"Invoice-2026.ZIP\"\r\n\
             Content-Disposition: attachment; filename=\"Invoice-2026.ZIP\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n"
        ));
    } else {
        m.push_str(&format!("Content-Type: text/plain\r\n\r\n{body}\r\n"));
    }
    m.into_bytes()
}

/// The same mail in the same places on either store, then every kind of filter,
/// sort and page; returns what each `find` gave.
macro_rules! find_work {
    ($store:expr, $settled:expr) => {{
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        store.domain_add("example.org").unwrap();
        store.user_add("ann@example.org", "pw").unwrap();
        store.user_add("bob@example.org", "pw").unwrap();
        let senders = [
            "boss@evil.example",
            "Friend@Good.example",
            "noreply@evil.example",
        ];
        let subjects = [
            "Invoice overdue",
            "Re: invoice",
            "lunch?",
            "Bill attached",
            "in time",
        ];
        for n in 0..10 {
            let data = findable(
                n,
                senders[n % 3],
                subjects[n % 5],
                &format!("please OPEN the attachment number {n}"),
                n % 2 == 0,
            );
            let mut m = message(n);
            m.data = data;
            m.mail_from = senders[(n + 1) % 3].to_lowercase();
            m.rcpt_to = vec![if n % 2 == 0 {
                "bob@example.org"
            } else {
                "far@remote.example"
            }
            .into()];
            if n == 3 {
                m.auth = Some(lazaret_store::AuthVerdict {
                    results: "spf=pass dkim=none dmarc=fail".into(),
                    quarantine: None,
                });
            }
            store.ingest(m).unwrap();
        }
        let imports = (10..16)
            .map(|n| lazaret_store::ImportMessage {
                data: findable(
                    n,
                    senders[n % 3],
                    subjects[n % 5],
                    &format!("kept {n}, open THE attachment"),
                    n % 3 == 0,
                ),
                flags: vec![],
                internal_date: Some(1_700_000_000 + n as i64),
            })
            .collect::<Vec<_>>();
        store
            .import("ann@example.org", "INBOX", imports[..4].to_vec())
            .unwrap();
        store
            .import("ann@example.org", "Archive", imports[4..].to_vec())
            .unwrap();
        let queued = store.queue_messages("inbound").unwrap();
        store
            .items_set_frozen(&[queued[1].id.clone(), queued[2].id.clone()], true)
            .unwrap();
        let inbox = store.mailbox_messages("ann@example.org", "INBOX").unwrap();
        store
            .quarantine(
                &[inbox[0].id.clone(), queued[4].id.clone()],
                "admin",
                "worm",
            )
            .unwrap();
        $settled(store);
        let all = [
            lazaret_store::Place::Queues,
            lazaret_store::Place::Mailboxes,
            lazaret_store::Place::Quarantine,
        ];
        let shown = |r: &lazaret_store::FindResult, sorted: bool| {
            let mut rows: Vec<String> = r
                .messages
                .iter()
                .map(|m| {
                    format!(
                        "{} {} {} {} {:?}",
                        m.location, m.subject, m.state, m.from, m.to
                    )
                })
                .collect();
            if !sorted {
                rows.sort();
            }
            format!("{rows:?} more={}", r.more)
        };
        let f = lazaret_store::Filters::default;
        let filters: Vec<(&str, lazaret_store::Filters)> = vec![
            (
                "subject",
                lazaret_store::Filters {
                    subject: Some("INVOICE".into()),
                    ..f()
                },
            ),
            (
                "short subject",
                lazaret_store::Filters {
                    subject: Some("in".into()),
                    ..f()
                },
            ),
            (
                "subject re",
                lazaret_store::Filters {
                    subject_re: Some("^re: (invoice|bill)".into()),
                    ..f()
                },
            ),
            (
                "bad re",
                lazaret_store::Filters {
                    subject_re: Some("(".into()),
                    ..f()
                },
            ),
            (
                "body",
                lazaret_store::Filters {
                    body: Some("open the ATTACHMENT number".into()),
                    ..f()
                },
            ),
            (
                "short body",
                lazaret_store::Filters {
                    body: Some("ab".into()),
                    ..f()
                },
            ),
            (
                "from",
                lazaret_store::Filters {
                    from: Some("Boss@Evil.example".into()),
                    ..f()
                },
            ),
            (
                "from domain",
                lazaret_store::Filters {
                    from: Some("@evil.example".into()),
                    ..f()
                },
            ),
            (
                "from glob",
                lazaret_store::Filters {
                    from: Some("friend@*".into()),
                    ..f()
                },
            ),
            (
                "to",
                lazaret_store::Filters {
                    to: Some("bob@example.org".into()),
                    ..f()
                },
            ),
            (
                "to header",
                lazaret_store::Filters {
                    to: Some("carol@far".into()),
                    ..f()
                },
            ),
            (
                "attachment",
                lazaret_store::Filters {
                    attachment: Some("*.zip".into()),
                    ..f()
                },
            ),
            (
                "attachment glob",
                lazaret_store::Filters {
                    attachment: Some("invoice-????.zip".into()),
                    ..f()
                },
            ),
            (
                "sha256",
                lazaret_store::Filters {
                    sha256: Some(
                        "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824".into(),
                    ),
                    ..f()
                },
            ),
            (
                "bad sha256",
                lazaret_store::Filters {
                    sha256: Some("xyz".into()),
                    ..f()
                },
            ),
            (
                "auth",
                lazaret_store::Filters {
                    auth: Some("DMARC=fail".into()),
                    ..f()
                },
            ),
            (
                "bad auth",
                lazaret_store::Filters {
                    auth: Some("dmarc".into()),
                    ..f()
                },
            ),
            (
                "frozen",
                lazaret_store::Filters {
                    queue: Some("inbound".into()),
                    state: Some("frozen".into()),
                    ..f()
                },
            ),
            (
                "mailbox",
                lazaret_store::Filters {
                    mailbox: Some("ANN@example.org".into()),
                    ..f()
                },
            ),
            (
                "folder",
                lazaret_store::Filters {
                    mailbox: Some("ann@example.org/Archive".into()),
                    ..f()
                },
            ),
            (
                "larger",
                lazaret_store::Filters {
                    larger_than: Some(400),
                    ..f()
                },
            ),
            (
                "later",
                lazaret_store::Filters {
                    received_after: Some(i64::MAX / 2),
                    ..f()
                },
            ),
            (
                "imported before",
                lazaret_store::Filters {
                    received_before: Some(1_700_000_013),
                    ..f()
                },
            ),
            (
                "quarantined before",
                lazaret_store::Filters {
                    quarantined_before: Some(i64::MAX / 2),
                    ..f()
                },
            ),
            (
                "ids",
                lazaret_store::Filters {
                    ids: Some(vec![
                        inbox[1].id.clone(),
                        queued[0].id.clone(),
                        "q999999".into(),
                    ]),
                    ..f()
                },
            ),
            ("everything", f()),
        ];
        for (name, filters) in &filters {
            let found = store.find(&all, filters, None, 0, None);
            said.push(format!(
                "{name}: {}",
                outcome(found.map(|r| shown(&r, false)))
            ));
            let ids = store.find_ids(&all, filters).map(|ids| ids.len());
            said.push(format!("{name} ids: {}", outcome(ids)));
        }
        for place in all {
            let found = store
                .find(
                    &[place],
                    &lazaret_store::Filters {
                        subject: Some("invoice".into()),
                        ..f()
                    },
                    None,
                    0,
                    None,
                )
                .unwrap();
            said.push(format!("{place:?}: {}", shown(&found, false)));
        }
        let sorts = [
            lazaret_store::SortKey::Date,
            lazaret_store::SortKey::Subject,
            lazaret_store::SortKey::Size,
            lazaret_store::SortKey::From,
            lazaret_store::SortKey::Arrival,
        ];
        for sort in sorts {
            let page = store
                .find(
                    &all,
                    &lazaret_store::Filters {
                        from: Some("@evil.example".into()),
                        ..f()
                    },
                    Some(sort),
                    1,
                    Some(3),
                )
                .unwrap();
            said.push(format!("sort {sort:?}: {}", shown(&page, true)));
        }
        let last = store
            .find(&all, &f(), Some(lazaret_store::SortKey::Date), 15, Some(5))
            .unwrap();
        said.push(format!("last page: {}", shown(&last, true)));
        said
    }};
}

#[test]
fn find_answers_as_the_embedded_store_on_trigram_indexes() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("find") else {
        return;
    };
    let on_postgres = find_work!(&pair.postgres, |_: &PostgresStore| ());
    // The embedded store's body index catches up in the background.
    let on_embedded = find_work!(pair.embedded(), |s: &lazaret_store::EmbeddedStore| {
        while s.stats().unwrap().text_index_behind > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    same_answers(&on_postgres, &on_embedded);
}

/// The scanner's calls on either store: what waits for a scan, recording a clean
/// scan, a detection (quarantined) and a rewrite, rescan candidates, hash signatures
/// answered from the digests, and bodies by store id.
macro_rules! scan_work {
    ($store:expr) => {{
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        store.domain_add("example.org").unwrap();
        store.user_add("ann@example.org", "pw").unwrap();
        for n in 0..3 {
            let mut m = message(n);
            m.data = findable(n, "boss@evil.example", "scan me", "a body", n == 1);
            m.rcpt_to = vec!["ann@example.org".into(), format!("far{n}@remote.example")];
            store.ingest(m).unwrap();
        }
        let kept = (0..2)
            .map(|n| lazaret_store::ImportMessage {
                data: findable(10 + n, "old@example.org", "kept", "old", n == 0),
                flags: vec![],
                internal_date: None,
            })
            .collect::<Vec<_>>();
        store.import("ann@example.org", "INBOX", kept).unwrap();
        let pending = store.scan_pending(10).unwrap();
        said.push(format!(
            "pending: {:?}",
            pending
                .iter()
                .map(|p| (p.uid.clone(), {
                    let mut r = p.recipients.clone();
                    r.sort();
                    r
                }))
                .collect::<Vec<_>>()
        ));
        said.push(format!(
            "unscanned: {:?}",
            store.unscanned_inbound().unwrap()
        ));
        let stamp = |verdict: Option<&str>| lazaret_store::ScanStamp {
            version: "v1".into(),
            content_version: "c1".into(),
            verdict: verdict.map(str::to_string),
        };
        let rewritten =
            b"From: boss@evil.example\r\nSubject: scan me\r\nX-Scanned: yes\r\n\r\nnotice\r\n"
                .to_vec();
        // Where the store put it (a pack's place, or None for an object).
        let location = store.blob_write("00000000000000cc", &rewritten).unwrap();
        let digests = lazaret_store::Digests::of(&rewritten);
        let records = vec![
            lazaret_store::ScanRecord {
                message: pending[0].message,
                stamp: stamp(None),
                action: lazaret_store::ScanAction::Keep,
            },
            lazaret_store::ScanRecord {
                message: pending[1].message,
                stamp: stamp(Some("Worm.A")),
                action: lazaret_store::ScanAction::Quarantine {
                    reason: "Worm.A".into(),
                    queues: true,
                    mailboxes: true,
                },
            },
            lazaret_store::ScanRecord {
                message: pending[2].message,
                stamp: stamp(None),
                action: lazaret_store::ScanAction::Replace {
                    uid: "00000000000000cc".into(),
                    size: rewritten.len() as u64,
                    digests,
                    location,
                },
            },
        ];
        let done = store.record_scans(records).unwrap();
        said.push(format!(
            "recorded: {} quarantined, users {:?}",
            done.done, done.users
        ));
        said.push(format!(
            "unscanned after: {:?}, pending after: {}",
            store.unscanned_inbound().unwrap(),
            store.scan_pending(10).unwrap().len()
        ));
        let queued = store.queue_messages("inbound").unwrap();
        said.push(format!(
            "queue: {:?}",
            queued
                .iter()
                .map(|m| (m.message.clone(), m.size, m.verdict.clone()))
                .collect::<Vec<_>>()
        ));
        said.push(format!(
            "rewritten body: {:?}",
            store.message_raw(&queued[1].id).map(|b| b.len())
        ));
        let all = lazaret_store::RescanScope {
            queues: true,
            mailboxes: true,
            cluster: None,
        };
        let queues_only = lazaret_store::RescanScope {
            queues: true,
            mailboxes: false,
            cluster: None,
        };
        let rescan = |after: i64, version: &str, scope| {
            store
                .rescan_candidates(after, 10, version, scope)
                .unwrap()
                .len()
        };
        said.push(format!(
            "rescan: {} {} {} {}",
            rescan(0, "c1", all),
            rescan(0, "c2", all),
            rescan(0, "c2", queues_only),
            rescan(i64::MAX / 2, "c2", all)
        ));
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_string();
        let hello_md5 = "5d41402abc4b2a76b9719d911017c592".to_string();
        let matches = |size: Option<u64>, scope| {
            store
                .hash_matches(
                    vec![(hello_md5.clone(), size)],
                    vec![(hello.clone(), size)],
                    scope,
                )
                .unwrap()
                .iter()
                .map(|(_, d)| d.clone())
                .collect::<Vec<_>>()
        };
        said.push(format!(
            "hash: {:?} {:?} {:?} {:?}",
            matches(None, all),
            matches(Some(5), all),
            matches(Some(6), all),
            matches(None, queues_only)
        ));
        said.push(format!(
            "sizes: {} {}",
            store.messages_of_size(vec![5], all).unwrap().len(),
            store.messages_of_size(vec![], all).unwrap().len()
        ));
        said.push(format!(
            "blob: {:?} {}",
            store.blob_read("00000000000000cc").map(|b| b.len()),
            outcome(store.blob_read("zz").map(|b| b.len()))
        ));
        said
    }};
}

#[test]
fn scanning_records_and_hash_signatures_answer_as_the_embedded_store() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("scanning") else {
        return;
    };
    same_answers(&scan_work!(&pair.postgres), &scan_work!(pair.embedded()));
    let url = &pair.url;
    // The detection is in quarantine with the scanner as actor (its one inbound item,
    // for both recipients).
    assert_eq!(
        sql_i64(
            url,
            "SELECT COUNT(*) FROM quarantine WHERE actor='scanner' AND reason='Worm.A'"
        ),
        1
    );
    // The rewritten message's first id stays findable in the event log.
    assert_eq!(
        sql_i64(
            url,
            "SELECT COUNT(*) FROM message_events WHERE kind='scanned' AND uid IS NOT NULL"
        ),
        1
    );
}

#[test]
fn the_reclaim_removes_rows_and_objects_of_messages_nothing_holds() {
    use lazaret_store::Store;
    let Some(server) = server() else { return };
    let Some(moto) = Moto::start("reclaim") else {
        return;
    };
    let url = fresh_database(&server, "reclaim");
    let one = PostgresStore::open(&settings(&url, "one"), Some(moto.objects("reclaim"))).unwrap();
    let two = PostgresStore::open(&settings(&url, "two"), Some(moto.objects("reclaim"))).unwrap();
    one.domain_add("example.org").unwrap();
    one.user_add("ann@example.org", "pw").unwrap();
    let dir = std::env::temp_dir().join(format!("lazaret-pg-reclaim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let embedded = lazaret_store::EmbeddedStore::open(&dir).unwrap();
    embedded.domain_add("example.org").unwrap();
    embedded.user_add("ann@example.org", "pw").unwrap();
    // Twelve queued messages, all removed, are reclaimed by two nodes at once (the
    // same on the embedded store, by one); a message in a folder stays.
    let mut uids = Vec::new();
    for n in 0..12 {
        uids.push(one.ingest(message(n)).unwrap().id);
        embedded.ingest(message(n)).unwrap();
    }
    let kept = one.append(
        "ann@example.org",
        "INBOX",
        "00000000000000dd".into(),
        b"Subject: kept\r\n\r\nx\r\n".to_vec(),
        vec![],
        None,
    );
    kept.unwrap();
    totals_match_the_rows(&one, &url);
    let queued: Vec<String> = one
        .queue_messages("inbound")
        .unwrap()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let removed = one.remove(&queued, vec![]).unwrap();
    let embedded_queued: Vec<String> = embedded
        .queue_messages("inbound")
        .unwrap()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let embedded_removed = embedded.remove(&embedded_queued, vec![]).unwrap();
    assert_eq!((removed.done, embedded_removed.done), (12, 12));
    totals_match_the_rows(&two, &url);
    assert_eq!(one.reclaim_backlog().unwrap(), 12);
    assert_eq!(embedded.reclaim_backlog().unwrap(), 12);
    // Removed messages are gone for readers before the reclaim runs.
    assert!(matches!(
        one.message_raw(&uids[0]),
        Err(StoreError::NotFound(_))
    ));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| (0..10).map(|_| one.reclaim(2).unwrap()).sum::<usize>());
        let b = s.spawn(|| (0..10).map(|_| two.reclaim(2).unwrap()).sum::<usize>());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a + b, 12, "each released message reclaimed once");
    let embedded_reclaimed: usize = (0..10).map(|_| embedded.reclaim(2).unwrap()).sum();
    assert_eq!(embedded_reclaimed, 12);
    assert_eq!(one.reclaim_backlog().unwrap(), 0);
    assert_eq!(
        one.message_count().unwrap(),
        1,
        "the appended message stays"
    );
    assert_eq!(embedded.message_count().unwrap(), 0);
    drop(embedded);
    let _ = std::fs::remove_dir_all(&dir);
    // Objects went after the rows (asked of the bucket itself: a node keeps the bodies
    // it wrote lately in memory); the log still knows each message by its id.
    let bucket = moto.objects("reclaim");
    for uid in &uids {
        assert!(
            bucket.fetch(uid, None).is_err(),
            "{uid} is still in the bucket"
        );
    }
    assert!(bucket.fetch("00000000000000dd", None).is_ok());
    assert_eq!(
        sql_i64(
            &url,
            "SELECT COUNT(*) FROM message_events WHERE kind='gone' AND uid IS NOT NULL"
        ),
        12
    );
    // Parts went with their messages: only the kept message's are left.
    assert_eq!(
        sql_i64(&url, "SELECT COUNT(DISTINCT message) FROM parts"),
        1
    );
    // The totals' rows (one per statement that added or removed rows) fold into one,
    // by one node at a time, and still say the same.
    totals_match_the_rows(&one, &url);
    assert!(sql_i64(&url, "SELECT COUNT(*) FROM totals") > 1);
    std::thread::scope(|s| {
        s.spawn(|| one.fold_totals().unwrap());
        s.spawn(|| two.fold_totals().unwrap());
    });
    one.fold_totals().unwrap();
    assert_eq!(sql_i64(&url, "SELECT COUNT(*) FROM totals"), 1);
    totals_match_the_rows(&two, &url);
    // A batch import (one statement per table), then its folder deleted with them.
    let imported: Vec<lazaret_store::ImportMessage> = (0..3)
        .map(|n| lazaret_store::ImportMessage {
            data: format!("Subject: old {n}\r\n\r\nkept a while\r\n").into_bytes(),
            flags: vec!["\\Seen".into()],
            internal_date: Some(1_000_000 + n),
        })
        .collect();
    one.folder_create("ann@example.org", "Archive", None)
        .unwrap();
    assert_eq!(
        one.import("ann@example.org", "Archive", imported).unwrap(),
        3
    );
    totals_match_the_rows(&one, &url);
    one.folder_delete("ann@example.org", "Archive").unwrap();
    totals_match_the_rows(&one, &url);
}

/// A worm copy: a text of its own and one attachment (`payload`, a lookup key).
fn worm(id: &str, from: &str, text: &str, payload: &[u8]) -> Incoming {
    let payload = String::from_utf8_lossy(payload);
    Incoming {
        id: format!("{:016x}", 0xc1a5_0000u64 + u64::from_str_radix(id, 36).unwrap()),
        mail_from: from.into(),
        rcpt_to: vec!["ann@example.org".into()],
        data: format!(
            "From: {from}\r\nTo: ann@example.org\r\nSubject: s {id}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             {text}\r\n--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"f{id}.bin\"\r\n\r\n\
             {payload}\r\n--b--\r\n"
        )
        .into_bytes(),
        ..message(0)
    }
}

/// Outbreak clusters on either store: copies keyed by attachment and by near-identical
/// text, a message that merges two clusters, members found and rescanned by cluster,
/// the hold rule freezing a fast-growing cluster until it is allowed, deletions
/// counted out, and lookup keys of deleted messages pruned.
macro_rules! clusters_work {
    ($store:expr) => {{
        use lazaret_store::{ClusterQuery, Filters, HoldRule, RescanScope};
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        store.domain_add("example.org").unwrap();
        store.user_add("ann@example.org", "pw").unwrap();
        let list = |by_growth: bool| -> String {
            let found = store.list_clusters(&ClusterQuery {
                min: 2,
                limit: 10,
                by_growth,
                ..ClusterQuery::default()
            });
            found
                .iter()
                .map(|c| {
                    format!(
                        "#{} n={} hour={} senders={} rcpts={} q={} mb={} qz={} held={}/{} \
                         allowed={} queues={:?} boxes={:?} subjects={:?} files={:?}",
                        c.id,
                        c.messages,
                        c.last_hour,
                        c.senders,
                        c.recipients,
                        c.in_queues,
                        c.in_mailboxes,
                        c.in_quarantine,
                        c.held_since.is_some(),
                        c.held_copies,
                        c.allowed,
                        c.queues,
                        c.mailboxes,
                        c.subjects,
                        c.attachments
                            .iter()
                            .map(|a| (a.name.clone(), a.messages))
                            .collect::<Vec<_>>()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (a, b) = ([b'A'; 100], [b'B'; 100]);
        for (id, text) in [("a1", "one"), ("a2", "two"), ("a3", "three")] {
            store
                .ingest(worm(id, &format!("x{id}@far.example"), text, &a))
                .unwrap();
        }
        for (id, text) in [("b1", "four"), ("b2", "five")] {
            store
                .ingest(worm(id, "mass@far.example", text, &b))
                .unwrap();
        }
        // Near-identical texts, one word changed per copy, distinct attachments.
        let base = "Dear customer your parcel could not be delivered because the address \
                    label was damaged in transit please open the attached form print it \
                    sign it and bring it to the nearest office within seven days or the \
                    parcel returns to the sender and a storage fee of twelve euros applies \
                    we apologise for the inconvenience and thank you for your patience \
                    your delivery service team customer care department central region";
        for (i, word) in ["parcel", "address", "form", "office"].iter().enumerate() {
            let text = base.replacen(word, &format!("{word}{i}"), 1);
            let payload = [b'0' + i as u8; 100];
            store
                .ingest(worm(&format!("d{i}"), "post@far.example", &text, &payload))
                .unwrap();
        }
        store
            .ingest(worm("c1", "alone@far.example", "six", &[b'C'; 100]))
            .unwrap();
        said.push(format!(
            "pending: {}",
            store.clusters_pending().unwrap().messages
        ));
        said.push(format!("filed: {}", store.file_clusters(100).unwrap()));
        said.push(format!(
            "pending: {}",
            store.clusters_pending().unwrap().messages
        ));
        said.push(list(false));
        let members = |cluster: i64| -> usize {
            store
                .ids(&Filters {
                    cluster: Some(cluster),
                    ..Default::default()
                })
                .len()
        };
        said.push(format!(
            "members: {} {} {} {}",
            members(1),
            members(2),
            members(3),
            members(99)
        ));
        // A copy with both payloads merges the first two clusters into the older.
        let mut both = worm("e1", "xe1@far.example", "seven", &a);
        let second = String::from_utf8(worm("e1", "xe1@far.example", "seven", &b).data).unwrap();
        let part = &second[second.find("--b\r\nContent-Type: application").unwrap()
            ..second.rfind("--b--").unwrap()];
        both.data = String::from_utf8(both.data)
            .unwrap()
            .replace("--b--", &format!("{part}--b--"))
            .into_bytes();
        store.ingest(both).unwrap();
        said.push(format!("filed: {}", store.file_clusters(100).unwrap()));
        said.push(list(false));
        said.push(format!("members of the absorbed: {}", members(2)));
        let scope = RescanScope {
            queues: true,
            mailboxes: true,
            cluster: Some(2),
        };
        said.push(format!(
            "rescan: {} sizes: {}",
            store
                .rescan_candidates(0, 100, "v9", scope.clone())
                .unwrap()
                .len(),
            store.messages_of_size(vec![100], scope).unwrap().len()
        ));
        // The hold: a worm from a new sender each copy, held once it grew by four.
        store.set_cluster_hold(Some(HoldRule {
            messages: 4,
            window_secs: 600,
            senders: 3,
        }));
        let r = store.route_inbound(100, false, &next_hop, 60).unwrap();
        said.push(format!(
            "routed {} held {} holds {}",
            r.routed,
            r.held,
            r.holds.len()
        ));
        let w = [b'W'; 100];
        for i in 0..3 {
            store
                .ingest(worm(
                    &format!("f{i}"),
                    &format!("w{i}@far.example"),
                    "open it",
                    &w,
                ))
                .unwrap();
        }
        let r = store.route_inbound(100, false, &next_hop, 60).unwrap();
        said.push(format!(
            "routed {} held {} holds {}",
            r.routed,
            r.held,
            r.holds.len()
        ));
        for i in 3..7 {
            store
                .ingest(worm(
                    &format!("f{i}"),
                    &format!("w{i}@far.example"),
                    "open it",
                    &w,
                ))
                .unwrap();
        }
        let r = store.route_inbound(100, false, &next_hop, 60).unwrap();
        said.push(format!(
            "routed {} held {} holds {:?}",
            r.routed,
            r.held,
            r.holds
                .iter()
                .map(|h| (h.cluster, h.growth, h.senders, h.subject.clone()))
                .collect::<Vec<_>>()
        ));
        let held = r.holds[0].cluster;
        said.push(list(false));
        let frozen = store.ids(&Filters {
            cluster: Some(held),
            state: Some("frozen".into()),
            ..Default::default()
        });
        said.push(format!("frozen: {}", frozen.len()));
        // Thawed by the admin: that copy is let go; allowed: the rest go on.
        store.items_set_frozen(&frozen[..1], false).unwrap();
        let r = store.route_inbound(100, false, &next_hop, 60).unwrap();
        said.push(format!("routed {} held {}", r.routed, r.held));
        said.push(format!(
            "allow: {:?}",
            store.cluster_allow(held, true).unwrap()
        ));
        said.push(format!(
            "allow none: {:?}",
            store.cluster_allow(9999, true).unwrap()
        ));
        let r = store.route_inbound(100, false, &next_hop, 60).unwrap();
        said.push(format!("routed {} held {}", r.routed, r.held));
        said.push(list(true));
        // Deleting members counts them out; their keys are pruned.
        let gone = store.ids(&Filters {
            cluster: Some(1),
            ..Default::default()
        });
        said.push(format!(
            "removed: {}",
            store.remove(&gone[..2], Vec::new()).unwrap().done
        ));
        while store.reclaim(100).unwrap() > 0 {}
        let one = store.cluster(1).unwrap().unwrap();
        said.push(format!(
            "after removal: n={} q={}",
            one.messages, one.in_queues
        ));
        said.push(format!(
            "show none: {:?}",
            store.cluster(9999).unwrap().map(|c| c.id)
        ));
        let pruned: usize = (0..lazaret_store::CLUSTER_KEY_SLICES)
            .map(|s| store.prune_cluster_keys(s).unwrap())
            .sum();
        // Where the keys of removed messages go differs (PostgreSQL drops them with the
        // rows, the embedded store in this pass). The first copies held the payload's
        // key: with them removed, a late copy starts a cluster of its own on both.
        let _ = pruned;
        store
            .ingest(worm("g1", "late@far.example", "eight", &a))
            .unwrap();
        said.push(format!("filed: {}", store.file_clusters(100).unwrap()));
        said.push(list(false));
        said
    }};
}

/// Ids oldest first (neither store promises an order).
fn by_age(mut ids: Vec<String>) -> Vec<String> {
    ids.sort_by_key(|id| (id.len(), id.clone()));
    ids
}

/// Listing clusters and finding ids, by one name on either store (the embedded
/// store's are `Store` methods, the PostgreSQL store's its own).
trait ClustersAndFind {
    fn list_clusters(
        &self,
        query: &lazaret_store::ClusterQuery,
    ) -> Vec<lazaret_store::ClusterSummary>;
    fn ids(&self, filters: &lazaret_store::Filters) -> Vec<String>;
}

impl ClustersAndFind for PostgresStore {
    fn list_clusters(
        &self,
        query: &lazaret_store::ClusterQuery,
    ) -> Vec<lazaret_store::ClusterSummary> {
        self.clusters(query).unwrap()
    }
    fn ids(&self, filters: &lazaret_store::Filters) -> Vec<String> {
        self.find_ids(
            &[
                lazaret_store::Place::Queues,
                lazaret_store::Place::Mailboxes,
                lazaret_store::Place::Quarantine,
            ],
            filters,
        )
        .map(by_age)
        .unwrap()
    }
}

impl ClustersAndFind for lazaret_store::EmbeddedStore {
    fn list_clusters(
        &self,
        query: &lazaret_store::ClusterQuery,
    ) -> Vec<lazaret_store::ClusterSummary> {
        lazaret_store::Store::clusters(self, query).unwrap()
    }
    fn ids(&self, filters: &lazaret_store::Filters) -> Vec<String> {
        lazaret_store::Store::find_ids(
            self,
            &[
                lazaret_store::Place::Queues,
                lazaret_store::Place::Mailboxes,
                lazaret_store::Place::Quarantine,
            ],
            filters,
        )
        .map(by_age)
        .unwrap()
    }
}

#[test]
fn outbreak_clusters_and_holds_answer_as_the_embedded_store() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("clusters") else {
        return;
    };
    let on_postgres = clusters_work!(&pair.postgres);
    assert!(
        on_postgres
            .iter()
            .any(|l| l.contains("n=4 hour=4 senders=1")),
        "the near-identical texts make a cluster: {on_postgres:#?}"
    );
    same_answers(&on_postgres, &clusters_work!(pair.embedded()));
}

#[test]
fn downloads_are_noted_off_the_reading_path_and_old_events_pruned() {
    let Some(pair) = Pair::open("events") else {
        return;
    };
    let store = &pair.postgres;
    store.domain_add("example.org").unwrap();
    store.user_add("ann@example.org", "pw").unwrap();
    store
        .append(
            "ann@example.org",
            "INBOX",
            "00000000000000ee".into(),
            b"Subject: read me\r\n\r\nx\r\n".to_vec(),
            vec![],
            None,
        )
        .unwrap();
    let entry = sql_i64(&pair.url, "SELECT id FROM mailbox_entries");
    // An entry expunged meanwhile (no such id) is passed over.
    store.record_downloads("ann@example.org", "BODY[]", vec![entry, entry + 1000]);
    let downloaded = || {
        sql_i64(
            &pair.url,
            "SELECT count(*) FROM message_events e JOIN mailbox_entries m ON m.message=e.message
             WHERE e.kind='downloaded' AND e.who='ann@example.org' AND e.detail='BODY[]'",
        )
    };
    let started = std::time::Instant::now();
    while downloaded() == 0 && started.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(downloaded(), 1, "one download noted, for the message read");
    let all = sql_i64(&pair.url, "SELECT count(*) FROM message_events");
    assert!(all >= 1);
    assert_eq!(store.prune_events(0, 100).unwrap(), 0, "none is that old");
    assert_eq!(
        store.prune_events(i64::MAX, 1).unwrap(),
        1,
        "at most the limit"
    );
    assert_eq!(store.prune_events(i64::MAX, 100).unwrap() as i64, all - 1);
    assert_eq!(sql_i64(&pair.url, "SELECT count(*) FROM message_events"), 0);
}

/// A message's path on either store: accepted for two users and a remote address,
/// routed and delivered, read by one user and downloaded by the other, the remote
/// copy quarantined from its queue; `trace` by store id and by Message-ID, `exposure`
/// of the mailbox copies; then every copy quarantined and removed, the message
/// reclaimed, and traced again from what the log kept; `status`'s totals at each
/// step. Times are left out of the
/// lines compared (the two stores run a moment apart); whether each is set is kept.
macro_rules! message_paths {
    ($store:expr) => {{
        use lazaret_store::ExposureScope;
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        store.domain_add("example.org").unwrap();
        store.user_add("ann@example.org", "pw").unwrap();
        store.user_add("bob@example.org", "pw").unwrap();
        let mut m = message(7);
        m.rcpt_to = vec![
            "bob@example.org".into(),
            "ann@example.org".into(),
            "far@remote.example".into(),
        ];
        let uid = m.id.clone();
        store.ingest(m).unwrap();
        while store
            .route_inbound(10, false, &next_hop, 60)
            .unwrap()
            .routed
            > 0
        {}
        loop {
            let r = store.deliver_local(10, 60).unwrap();
            if r.delivered + r.deferred == 0 {
                break;
            }
        }
        // `status`'s totals; the database's size and the text index are each
        // store's own.
        let totals = || {
            let t = store.stats().unwrap();
            format!(
                "stats: messages={} bytes={} queued={} boxes={} quarantined={}/{} \
                 reclaim={} clusters_behind={} held={}/{}",
                t.messages,
                t.message_bytes,
                t.queued,
                t.in_mailboxes,
                t.quarantined,
                t.quarantine_bytes,
                t.reclaim_behind,
                t.clusters_behind,
                t.clusters_held,
                t.held_copies
            )
        };
        said.push(totals());
        let entry_of = |user: &str| store.folder_snapshot(user, "INBOX").unwrap().entries[0].entry;
        store
            .set_flags(
                "ann@example.org",
                "INBOX",
                vec![entry_of("ann@example.org")],
                lazaret_store::FlagChange::Add,
                vec!["\\Seen".into()],
                None,
            )
            .unwrap();
        store.record_downloads(
            "bob@example.org",
            "BODY[2]",
            vec![entry_of("bob@example.org")],
        );
        let traced = |id: Option<&str>, mid: Option<&str>| -> Vec<String> {
            store
                .trace(id, mid)
                .unwrap()
                .iter()
                .map(|t| {
                    format!(
                        "{} exists={} mid={} subject={:?} from={} events={:?} now={:?}",
                        t.id,
                        t.exists,
                        t.message_id,
                        t.subject,
                        t.from,
                        t.events
                            .iter()
                            .map(|e| format!("{} {} {}", e.event, e.who, e.detail))
                            .collect::<Vec<_>>(),
                        t.now
                    )
                })
                .collect()
        };
        // The download is noted off the reading path: wait for it.
        let started = std::time::Instant::now();
        while !traced(Some(&uid), None)[0].contains("downloaded")
            && started.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let outbound = store.queue_messages("remote:remote.example").unwrap();
        said.push(format!("outbound: {}", outbound.len()));
        let taken = store
            .quarantine(&[outbound[0].id.clone()], "admin", "worm")
            .unwrap();
        said.push(format!("quarantined: {}", taken.done));
        said.push(totals());
        said.extend(traced(Some(&uid), None));
        said.extend(traced(None, Some("<m7@origin.example>")));
        said.extend(traced(Some("0000000000000bad"), None));
        let exposed = |scope: ExposureScope| -> Vec<String> {
            store
                .exposure(&scope)
                .unwrap()
                .iter()
                .map(|r| {
                    format!(
                        "{} {:?} {} local={} delivered={} read={} downloaded={} \
                         forwarded={} seen={} now={}",
                        r.message,
                        r.subject,
                        r.recipient,
                        r.local,
                        r.delivered.is_some(),
                        r.read.is_some(),
                        r.downloaded.is_some(),
                        r.forwarded.is_some(),
                        r.seen,
                        r.now
                    )
                })
                .collect()
        };
        let ann = format!("m{}", entry_of("ann@example.org"));
        said.extend(exposed(ExposureScope::Places(vec![
            ann.clone(),
            "m99999".into(),
        ])));
        // Every copy into quarantine, then removed: the message is gone.
        let bob = format!("m{}", entry_of("bob@example.org"));
        store.quarantine(&[ann, bob], "admin", "worm").unwrap();
        // Quarantine ids count from 1 on either store.
        let held: Vec<String> = vec!["x1".into(), "x2".into(), "x3".into()];
        said.extend(exposed(ExposureScope::Places(held.clone())));
        said.push(format!(
            "removed: {}",
            store.remove(&held, vec![]).unwrap().done
        ));
        said.push(totals());
        while store.reclaim(100).unwrap() > 0 {}
        said.push(totals());
        said.extend(traced(Some(&uid), None));
        said.extend(traced(None, Some("m7@origin.example")));
        said
    }};
}

#[test]
fn trace_exposure_and_totals_answer_as_the_embedded_store() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("paths") else {
        return;
    };
    let on_postgres = message_paths!(&pair.postgres);
    let joined = on_postgres.join("\n");
    for expected in [
        "read ann@example.org imap INBOX",
        "downloaded bob@example.org BODY[2]",
        "quarantine:x1 (from queue:remote:remote.example)",
        "ann@example.org local=true delivered=true read=true",
        "exists=false",
        "gone ",
        "stats: messages=1 bytes=",
        "reclaim=1 ",
        "stats: messages=0 bytes=0 queued=0 boxes=0 quarantined=0/0 reclaim=0",
    ] {
        assert!(
            joined.contains(expected),
            "{expected:?} in {on_postgres:#?}"
        );
    }
    same_answers(&on_postgres, &message_paths!(pair.embedded()));
}

/// A worker failing on a remote queue's items, on either store: the first failure is
/// counted and the item stays, the second moves it to `poison` with why.
macro_rules! worker_failures {
    ($store:expr, $claim:expr) => {{
        let store = $store;
        let mut said: Vec<String> = Vec::new();
        store.domain_add("example.org").unwrap();
        store.ingest(message(1)).unwrap();
        while store
            .route_inbound(10, false, &next_hop, 60)
            .unwrap()
            .routed
            > 0
        {}
        let queue = "remote:remote.example";
        let listing = |queue: &str| -> Vec<String> {
            store
                .queue_messages(queue)
                .unwrap()
                .iter()
                .map(|m| format!("{} {} {:?} {:?}", m.location, m.state, m.to, m.last_error))
                .collect()
        };
        let items: Vec<i64> = store
            .queue_messages(queue)
            .unwrap()
            .iter()
            .map(|m| m.id.trim_start_matches('q').parse().unwrap())
            .collect();
        for _ in 0..2 {
            let claimed: Vec<i64> = $claim(queue)
                .iter()
                .map(|q: &lazaret_store::QueuedMessage| q.item)
                .collect();
            said.push(format!("claimed: {claimed:?}"));
            let moved = store
                .record_worker_failure(claimed, "worker panicked".into())
                .unwrap();
            said.push(format!("poisoned: {moved}"));
            said.extend(listing(queue));
        }
        said.extend(listing("poison"));
        said.push(format!("items: {}", items.len()));
        said
    }};
}

#[test]
fn worker_failures_poison_an_item_as_on_the_embedded_store() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("poison") else {
        return;
    };
    let lease = std::time::Duration::from_secs(300);
    let on_postgres = worker_failures!(&pair.postgres, |q| pair
        .postgres
        .claim_due(q, 10, lease)
        .unwrap());
    let joined = on_postgres.join("\n");
    for expected in [
        // The lease given up with the first failure: claimed again at once.
        "claimed: [2]\npoisoned: 0",
        "claimed: [2]\npoisoned: 1",
        "from remote:remote.example after 2 worker failures: worker panicked",
    ] {
        assert!(
            joined.contains(expected),
            "{expected:?} in {on_postgres:#?}"
        );
    }
    same_answers(
        &on_postgres,
        &worker_failures!(pair.embedded(), |q| pair
            .embedded()
            .outbound_due(q, 10, &[])
            .unwrap()),
    );
}

/// Every searchable field of the store, as one text: headers and digests of each
/// message, its parts, its text and its fingerprint.
fn indexed_fields(url: &str) -> String {
    with_connection(url, async |c| {
        c.query_one(
            "SELECT concat_ws(' | ',
               (SELECT string_agg(concat_ws(',', id, subject, hdr_from, hdr_to, hdr_cc, date,
                                            message_id, sha256, md5), ';' ORDER BY id)
                  FROM messages),
               (SELECT string_agg(concat_ws(',', message, part, content_type, filename, size,
                                            sha256, inside, md5), ';' ORDER BY message, part)
                  FROM parts),
               (SELECT string_agg(concat_ws(',', message, body), ';' ORDER BY message)
                  FROM message_text),
               (SELECT string_agg(message::text, ';' ORDER BY message) FROM fingerprints))",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    })
}

#[test]
fn reindex_rebuilds_every_searchable_field_from_the_objects() {
    let Some(pair) = Pair::open("reindex") else {
        return;
    };
    let (store, url) = (&pair.postgres, &pair.url);
    store.domain_add("example.org").unwrap();
    store.user_add("ann@example.org", "pw").unwrap();
    let mut uids = Vec::new();
    for n in 0..3 {
        let mut m = message(n);
        m.data = findable(
            n,
            "boss@evil.example",
            &format!("report {n}"),
            "quarterly figures attached",
            n == 1,
        );
        uids.push(m.id.clone());
        store.ingest(m).unwrap();
    }
    let before = indexed_fields(url);
    assert!(
        before.contains("Invoice-2026.ZIP") && before.contains("quarterly figures"),
        "{before}"
    );
    // A store whose index went wrong (or predates a column): the fields wiped.
    admin_sql(
        url,
        "UPDATE messages SET subject='', hdr_from='', hdr_to='', message_id='', sha256='', md5=NULL;
         DELETE FROM parts; DELETE FROM message_text; DELETE FROM fingerprints;",
    );
    assert_ne!(indexed_fields(url), before);
    let subject = lazaret_store::Filters {
        subject: Some("report".into()),
        ..Default::default()
    };
    assert!(store
        .find_ids(&[lazaret_store::Place::Queues], &subject)
        .unwrap()
        .is_empty());
    // In batches of two, as `lazaret reindex` drives it.
    let first = store.reindex_batch(0, 2).unwrap();
    assert_eq!((first.indexed, first.missing.len()), (2, 0));
    let second = store.reindex_batch(first.last, 2).unwrap();
    assert_eq!((second.indexed, second.missing.len()), (1, 0));
    assert!(second.last > first.last);
    let done = store.reindex_batch(second.last, 2).unwrap();
    assert_eq!((done.indexed, done.last), (0, second.last));
    assert_eq!(indexed_fields(url), before, "reindexed as ingested");
    assert_eq!(
        store
            .find_ids(&[lazaret_store::Place::Queues], &subject)
            .unwrap()
            .len(),
        3
    );
    // An object gone from the bucket is reported and its row left alone.
    let failed = pair.moto.objects("reindex").delete(vec![uids[2].clone()]);
    assert_eq!(failed, 0, "the object deleted");
    // (Read from a second node: the first keeps the bodies it just stored in memory.)
    let two =
        PostgresStore::open(&settings(url, "two"), Some(pair.moto.objects("reindex"))).unwrap();
    let again = two.reindex_batch(0, 10).unwrap();
    assert_eq!(
        (again.indexed, again.missing.clone()),
        (2, vec![uids[2].clone()])
    );
    assert_eq!(indexed_fields(url), before);
    // Nothing is an orphan yet: objects younger than an hour are left alone.
    assert_eq!(store.remove_orphan_blobs().unwrap(), 0);
}

/// Seconds left on an item's lease (negative: none or lapsed).
fn lease_left(url: &str, item: i64) -> i64 {
    sql_i64(
        url,
        &format!(
            "SELECT COALESCE(lease_until, 0) - extract(epoch FROM now())::bigint
             FROM queue_items WHERE id={item}"
        ),
    )
}

#[test]
fn workers_claims_are_renewed_until_recorded_and_given_back_on_close() {
    let Some(pair) = Pair::open("book") else {
        return;
    };
    let (one, url) = (&pair.postgres, &pair.url);
    let two = PostgresStore::open(&settings(url, "two"), Some(pair.moto.objects("book"))).unwrap();
    one.domain_add("example.org").unwrap();
    for n in 1..=2 {
        one.ingest(message(n)).unwrap();
    }
    assert_eq!(route_everything(one), 2);
    let queue = "remote:remote.example";

    // Each node's worker takes one item; neither takes the other's, nor its own twice.
    let a = one.outbound_due(queue, 1, &[]).unwrap();
    let b = two.outbound_due(queue, 10, &[]).unwrap();
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
    let (a, b) = (a[0].item, b[0].item);
    assert_ne!(a, b);
    assert!(one.outbound_due(queue, 10, &[a]).unwrap().is_empty());
    let left = lease_left(url, a);
    assert!((50..=60).contains(&left), "a claim lasts a minute: {left}");

    // A slow next hop: the node renews the lease before it lapses.
    admin_sql(
        url,
        &format!(
            "UPDATE queue_items SET lease_until=extract(epoch FROM now())::bigint+3 WHERE id={a}"
        ),
    );
    std::thread::sleep(std::time::Duration::from_secs(11));
    let left = lease_left(url, a);
    assert!(left >= 45, "renewed: {left} s left");
    assert!(two.outbound_due(queue, 10, &[b]).unwrap().is_empty());

    // Recording the outcome clears the lease and takes the item out of the book.
    one.record_attempts(vec![AttemptOutcome {
        item: a,
        delivered: vec![],
        failed: vec![],
        deferred: vec!["user1@remote.example".into(), "all@remote.example".into()],
        next_attempt: lazaret_store_now() + 3600,
        error: Some("451 try later".into()),
        dsn: None,
        remote: Some("mx.remote.example".into()),
    }])
    .unwrap();
    assert!(lease_left(url, a) < 0);
    admin_sql(
        url,
        &format!(
            "UPDATE queue_items SET lease_owner='one',
                    lease_until=extract(epoch FROM now())::bigint+30 WHERE id={a}"
        ),
    );
    assert_eq!(
        one.release_all_claims().unwrap(),
        0,
        "not in the book any more"
    );
    admin_sql(
        url,
        &format!("UPDATE queue_items SET lease_owner=NULL, lease_until=NULL WHERE id={a}"),
    );

    // Node two stops: its claim is given back, and node one delivers the item at once.
    assert_eq!(two.release_all_claims().unwrap(), 1);
    drop(two);
    let taken = one.outbound_due(queue, 10, &[]).unwrap();
    assert_eq!(
        taken.iter().map(|m| m.item).collect::<Vec<_>>(),
        vec![b],
        "the deferred item waits for its time"
    );

    // Node one killed (no close) and started again: the claim in its name was its
    // previous run's, given back at once rather than a lease later.
    assert!(lease_left(url, b) > 0);
    let again =
        PostgresStore::open(&settings(url, "one"), Some(pair.moto.objects("book"))).unwrap();
    assert!(lease_left(url, b) < 0, "freed when the node started again");
    assert_eq!(again.outbound_due(queue, 10, &[]).unwrap().len(), 1);
}

fn lazaret_store_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fault_kinds(report: &lazaret_store::CheckReport) -> Vec<String> {
    let mut kinds: Vec<String> = report
        .faults
        .iter()
        .map(|f| format!("{} {}", f.kind, f.count))
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn check_finds_what_the_schema_cannot_say_and_repair_mends_it() {
    use lazaret_store::Store;
    let Some(pair) = Pair::open("check") else {
        return;
    };
    let url = &pair.url;
    // Through the trait, as the server calls it.
    let store: &dyn Store = &pair.postgres;
    store.domain_add("example.org").unwrap();
    store.user_add("user@example.org", "secret").unwrap();
    let mut uids = Vec::new();
    for n in 1..=3 {
        let mut m = message(n);
        m.rcpt_to = vec!["user@example.org".into()];
        uids.push(store.ingest(m).unwrap().id);
    }
    for n in 4..=5 {
        store.ingest(message(n)).unwrap();
    }
    while store
        .route_inbound(10, false, &next_hop, 60)
        .unwrap()
        .routed
        > 0
    {}
    while store.deliver_local(10, 60).unwrap().delivered > 0 {}
    let clean = store.check(true, &|_| {}).unwrap();
    assert!(clean.faults.is_empty(), "{:?}", clean.faults);
    assert_eq!(
        (
            clean.messages,
            clean.mailbox_entries,
            clean.queue_items,
            clean.blobs_checked
        ),
        (5, 3, 2, 5)
    );

    // Damage what no foreign key guards.
    admin_sql(
        url,
        "UPDATE mailboxes SET uidnext=1, highestmodseq=0 WHERE name='INBOX';
         DELETE FROM queue_rcpts WHERE item=(SELECT MIN(id) FROM queue_items);
         UPDATE queue_items SET state='odd' WHERE id=(SELECT MAX(id) FROM queue_items);
         DELETE FROM mailbox_entries WHERE uid=1;
         INSERT INTO fingerprints(message) VALUES(999999);",
    );
    let bucket = pair.moto.objects("check");
    // One object gone, one changed in place (same length).
    bucket.delete(vec![uids[1].clone()]);
    let original = bucket.get(&uids[2], None).unwrap();
    bucket.delete(vec![uids[2].clone()]);
    let mut altered = original.clone();
    let last = altered.len() - 3;
    altered[last] ^= 1;
    bucket.put(&uids[2], altered).unwrap();

    // Without --deep the bucket is not read.
    let shallow = store.check(false, &|_| {}).unwrap();
    assert_eq!(shallow.blobs_checked, 0);
    assert_eq!(
        fault_kinds(&shallow),
        [
            "modseq_above_highest 1",
            "orphan_fingerprints 1",
            "queue_item_state 1",
            "queue_item_without_recipients 1",
            "uid_not_below_uidnext 1",
            "unreferenced_message 1",
        ]
    );
    let counted = std::sync::atomic::AtomicU64::new(0);
    let deep = store
        .check(true, &|n| {
            counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    let missing = deep
        .faults
        .iter()
        .find(|f| f.kind == "missing_blob")
        .unwrap();
    assert_eq!(missing.count, 2, "{missing:?}");
    assert!(!missing.repairable);
    assert!(
        missing.examples[0].contains(&uids[1]) && missing.examples[0].contains("no object"),
        "{missing:?}"
    );
    assert!(
        missing.examples.iter().any(|e| e.contains("SHA-256")),
        "{missing:?}"
    );
    assert_eq!(counted.into_inner(), 5);

    let repaired = store.repair().unwrap();
    let mut kinds: Vec<String> = repaired
        .repaired
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "modseq_above_highest 1",
            "orphan_fingerprints 1",
            "queue_item_state 1",
            "queue_item_without_recipients 1",
            "uid_not_below_uidnext 1",
            // The message of the entry deleted above and that of the item removed.
            "unreferenced_message 2",
        ]
    );
    // What is left: the two objects only a backup can bring back.
    assert_eq!(store.reclaim(100).unwrap(), 2);
    let after = store.check(true, &|_| {}).unwrap();
    assert_eq!(fault_kinds(&after), ["missing_blob 2"]);
    assert_eq!(
        sql_i64(url, "SELECT MIN(uidnext) FROM mailboxes WHERE name='INBOX'"),
        4
    );
    // The frozen item waits for the admin.
    assert_eq!(
        sql_i64(url, "SELECT COUNT(*) FROM queue_items WHERE state='frozen'"),
        1
    );
}

#[test]
fn a_job_is_taken_over_only_from_a_node_that_went_away_and_resumes_where_it_stopped() {
    use lazaret_store::Store;
    let Some(server) = server() else { return };
    let url = fresh_database(&server, "jobs");
    let one = PostgresStore::open(&settings(&url, "mx1"), None).unwrap();
    let two = PostgresStore::open(&settings(&url, "mx2"), None).unwrap();
    let id = Store::shared_job_start(&one, "quarantine", "{\"ids\":[]}")
        .unwrap()
        .expect("a shared store records jobs");
    Store::shared_job_progress(&one, id, 500).unwrap();
    // mx1 is alive (its heartbeat is fresh): nobody takes its job, not even itself.
    assert_eq!(Store::shared_job_take_orphan(&two).unwrap(), None);
    assert_eq!(Store::shared_job_take_orphan(&one).unwrap(), None);

    // mx1 silent for longer than three heartbeats.
    admin_sql(
        &url,
        "UPDATE nodes SET heartbeat = heartbeat - 60 WHERE name = 'mx1'",
    );
    let taken = Store::shared_job_take_orphan(&two)
        .unwrap()
        .expect("the job of a silent node is taken over");
    assert_eq!(
        (
            taken.id,
            taken.action.as_str(),
            taken.spec.as_str(),
            taken.done,
            taken.from_node.as_str()
        ),
        (id, "quarantine", "{\"ids\":[]}", 500, "mx1")
    );
    // Taken once: no other node (nor mx2 again) gets it while mx2 lives.
    assert_eq!(Store::shared_job_take_orphan(&two).unwrap(), None);
    // mx1 comes back and reports on a job no longer its own: nothing moves.
    Store::shared_job_progress(&one, id, 900).unwrap();
    Store::shared_job_end(&one, id, false).unwrap();
    assert_eq!(
        sql_i64(
            &url,
            &format!("SELECT done FROM admin_jobs WHERE id = {id} AND state = 'running'")
        ),
        500
    );
    Store::shared_job_progress(&two, id, 1000).unwrap();
    Store::shared_job_end(&two, id, true).unwrap();
    assert_eq!(
        sql_i64(
            &url,
            &format!("SELECT done FROM admin_jobs WHERE id = {id} AND state = 'done'")
        ),
        1000
    );

    // A node started again lost its jobs with its old process: it takes them back.
    let again = Store::shared_job_start(&two, "rescan", "{}")
        .unwrap()
        .unwrap();
    admin_sql(
        &url,
        &format!("UPDATE admin_jobs SET claimed = claimed - 10 WHERE id = {again}"),
    );
    drop(two);
    let two = PostgresStore::open(&settings(&url, "mx2"), None).unwrap();
    let back = Store::shared_job_take_orphan(&two)
        .unwrap()
        .expect("its own old job");
    assert_eq!((back.id, back.from_node.as_str()), (again, "mx2"));
}
