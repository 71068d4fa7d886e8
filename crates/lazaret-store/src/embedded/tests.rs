use super::*;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A data directory for one test, removed when the test ends (passed or failed).
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the background reclaim to the end, as the server's loop would.
fn reclaim_all(store: &EmbeddedStore) -> usize {
    let mut total = 0;
    loop {
        let n = store.reclaim(7).unwrap();
        total += n;
        if n < 7 {
            return total;
        }
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("lazaret-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TempDir(dir)
}

fn incoming(id: &str, rcpt: &str) -> Incoming {
    Incoming {
        id: id.into(),
        mail_from: "a@far.test".into(),
        rcpt_to: vec![rcpt.into()],
        helo: "far.test".into(),
        peer: "127.0.0.1".into(),
        data: format!("Subject: m {id}\r\n\r\nbody {id}\r\n").into_bytes(),
        scan: None,
        via: Via::Smtp,
        auth: None,
    }
}

fn to_local(_: &str) -> String {
    QUEUE_LOCAL.into()
}

#[test]
fn ingest_route_deliver() {
    let dir = temp_dir("flow");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("Bob@LocalHost", "pw").unwrap();
    assert_eq!(
        store.recipient_status("bob@localhost").unwrap(),
        RecipientStatus::LocalUser
    );
    assert_eq!(
        store.recipient_status("eve@localhost").unwrap(),
        RecipientStatus::UnknownLocalUser
    );
    assert_eq!(
        store.recipient_status("bob@far.test").unwrap(),
        RecipientStatus::NotLocal
    );

    store.ingest(incoming("aa01", "bob@localhost")).unwrap();
    assert_eq!(store.queue_messages("inbound").unwrap().len(), 1);

    store
        .queue_set_state("inbound", QueueState::Frozen)
        .unwrap();
    assert_eq!(
        store
            .route_inbound(100, false, &to_local, 60)
            .unwrap()
            .routed,
        0,
        "frozen queue makes no moves"
    );
    store
        .queue_set_state("inbound", QueueState::Active)
        .unwrap();
    // With `local` frozen the copy waits there; thawed, the runner's delivery takes it.
    store.queue_set_state("local", QueueState::Frozen).unwrap();
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!((routed.routed, routed.local.delivered), (1, 0));
    assert_eq!(store.queue_messages("local").unwrap().len(), 1);
    assert_eq!(store.deliver_local(100, 60).unwrap().delivered, 0);
    store.queue_set_state("local", QueueState::Active).unwrap();
    assert_eq!(store.deliver_local(100, 60).unwrap().delivered, 1);

    let inbox = store.mailbox_messages("bob@localhost", "INBOX").unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].subject, "m aa01");
    assert_eq!(inbox[0].uid, Some(1));
    assert_eq!(
        store.message_raw(&inbox[0].id).unwrap(),
        incoming("aa01", "").data
    );
    assert!(store.queue_list().unwrap().iter().all(|q| q.messages == 0));
    assert!(store.user_verify_password("bob@localhost", "pw").unwrap());
    assert!(!store.user_verify_password("bob@localhost", "nope").unwrap());

    let err = store
        .user_remove("bob@localhost", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--delete-mail"), "{err}");
    assert_eq!(store.user_remove("bob@localhost", true).unwrap(), 1);
    assert_eq!(
        store.stats().unwrap().messages,
        0,
        "orphaned message collected"
    );
    assert!(!dir.join("blobs/aa/aa01.eml").exists());
}

#[test]
fn concurrent_ingest_shares_commits() {
    let dir = temp_dir("group");
    let store = Arc::new(EmbeddedStore::open(&dir).unwrap());
    store.user_add("bob@localhost", "pw").unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .ingest(incoming(&format!("{t:02x}{i:04x}"), "bob@localhost"))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.stats().unwrap().messages, 400);
    while store
        .route_inbound(1000, false, &to_local, 60)
        .unwrap()
        .routed
        > 0
    {}
    let inbox = store.mailbox_messages("bob@localhost", "INBOX").unwrap();
    let mut uids: Vec<i64> = inbox.iter().filter_map(|m| m.uid).collect();
    uids.sort();
    assert_eq!(
        uids,
        (1..=400).collect::<Vec<_>>(),
        "UIDs are dense and unique"
    );
}

#[test]
fn accounts_are_validated() {
    let dir = temp_dir("accounts");
    let store = EmbeddedStore::open(&dir).unwrap();
    assert!(matches!(
        store.user_add("x@nowhere.test", "pw"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.user_add("not-an-address", "pw"),
        Err(StoreError::Invalid(_))
    ));
    store.domain_add("example.test").unwrap();
    assert!(matches!(
        store.domain_add("example.test"),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.domain_add("bad domain"),
        Err(StoreError::Invalid(_))
    ));
    store.user_add("a@example.test", "pw").unwrap();
    assert!(matches!(
        store.domain_remove("example.test"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.queue_set_state("nonsense", QueueState::Frozen),
        Err(StoreError::NotFound(_))
    ));
    store.queue_set_state("poison", QueueState::Frozen).unwrap();
    let poison = store
        .queue_list()
        .unwrap()
        .into_iter()
        .find(|q| q.name == "poison")
        .unwrap();
    assert_eq!(poison.state, "frozen");
}

#[test]
fn a_panicking_write_is_contained() {
    let dir = temp_dir("panic");
    let store = EmbeddedStore::open(&dir).unwrap();
    let r: Result<()> = store.write(|c| {
        c.execute(
            "INSERT INTO domains(name, created) VALUES('half.test', 0)",
            [],
        )?;
        panic!("bug in a write job");
    });
    assert!(r.is_err());
    store.domain_add("after.test").unwrap();
    let names: Vec<String> = store
        .domain_list()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(
        names.contains(&"after.test".to_string()),
        "the writer still works"
    );
    assert!(
        !names.contains(&"half.test".to_string()),
        "the panicking job was undone"
    );
}

fn to_remote(r: &str) -> String {
    format!("remote:{}", r.rsplit_once('@').unwrap().1)
}

#[test]
fn outbound_attempts_partial_delivery_dsn_and_cleanup() {
    let dir = temp_dir("outbound");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("a@localhost", "pw").unwrap();
    let mut m = incoming("0b01", "x@far.test");
    m.rcpt_to.push("y@far.test".into());
    m.rcpt_to.push("z@far.test".into());
    store.ingest(m).unwrap();
    store.route_inbound(10, false, &to_remote, 60).unwrap();
    let queues = store.outbound_queues().unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].0, "remote:far.test");

    let due = store.outbound_due("remote:far.test", 10, &[]).unwrap();
    let [msg] = &due[..] else {
        panic!("one message due");
    };
    assert_eq!(msg.rcpts.len(), 3);
    assert!(!msg.flagged);
    assert!(store
        .outbound_due("remote:far.test", 10, &[msg.item])
        .unwrap()
        .is_empty());

    // x delivered, y refused (with a DSN), z deferred.
    store
        .record_attempts(vec![AttemptOutcome {
            item: msg.item,
            delivered: vec!["x@far.test".into()],
            failed: vec!["y@far.test".into()],
            deferred: vec!["z@far.test".into()],
            next_attempt: now() + 3600,
            error: Some("451 try later".into()),
            dsn: Some(Incoming {
                id: "d5a01".into(),
                mail_from: String::new(),
                rcpt_to: vec!["a@localhost".into()],
                helo: "me".into(),
                peer: "127.0.0.1".into(),
                data: b"Subject: Undelivered\r\n\r\nreport\r\n".to_vec(),
                scan: None,
                via: Via::Server("dsn"),
                auth: None,
            }),
            remote: None,
        }])
        .unwrap();
    let [left] = &store.queue_messages("remote:far.test").unwrap()[..] else {
        panic!("the item stays for z");
    };
    assert_eq!(left.to, vec!["z@far.test".to_string()]);
    assert_eq!(left.state, "retry");
    assert_eq!(left.attempts, Some(1));
    assert_eq!(left.last_error.as_deref(), Some("451 try later"));
    assert!(
        store
            .outbound_due("remote:far.test", 10, &[])
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let [dsn] = &store.queue_messages("inbound").unwrap()[..] else {
        panic!("the DSN waits in inbound");
    };
    assert_eq!(
        (dsn.from.as_str(), dsn.to.clone()),
        ("", vec!["a@localhost".to_string()])
    );

    // z delivered later: the item and, with no other reference, the message go.
    store
        .record_attempts(vec![AttemptOutcome {
            item: msg.item,
            delivered: vec!["z@far.test".into()],
            ..Default::default()
        }])
        .unwrap();
    assert!(store.queue_messages("remote:far.test").unwrap().is_empty());
    assert!(store.message_raw("0b01").is_err(), "gone for readers");
    assert_eq!(reclaim_all(&store), 1);
    assert!(store.message_raw("0b01").is_err(), "blob removed");
    assert!(store.message_raw("d5a01").is_ok());
}

#[test]
fn outbound_disable_freeze_items_and_poison() {
    let dir = temp_dir("outbound-hold");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.ingest(incoming("0b11", "x@far.test")).unwrap();
    store.ingest(incoming("0b12", "y@other.test")).unwrap();
    store.route_inbound(10, false, &to_remote, 60).unwrap();
    assert_eq!(store.outbound_queues().unwrap().len(), 2);

    store.set_outbound_disabled(true).unwrap();
    assert!(store.outbound_disabled().unwrap());
    assert!(store.outbound_queues().unwrap().is_empty());
    assert!(store
        .outbound_due("remote:far.test", 10, &[])
        .unwrap()
        .is_empty());
    let held: Vec<_> = store
        .queue_list()
        .unwrap()
        .into_iter()
        .filter(|q| q.name.starts_with("remote:"))
        .collect();
    assert!(held
        .iter()
        .all(|q| q.held.as_deref() == Some("outbound disabled")));
    store.set_outbound_disabled(false).unwrap();

    let id = store.queue_messages("remote:far.test").unwrap()[0]
        .id
        .clone();
    assert_eq!(
        store
            .items_set_frozen(&[id.clone(), "q999".into()], true)
            .unwrap(),
        1
    );
    assert!(store
        .outbound_due("remote:far.test", 10, &[])
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .items_set_frozen(std::slice::from_ref(&id), false)
            .unwrap(),
        1
    );
    let [due] = &store.outbound_due("remote:far.test", 10, &[]).unwrap()[..] else {
        panic!("thawed item is due");
    };

    // One worker failure is forgiven; the second moves the message to poison.
    assert_eq!(
        store
            .record_worker_failure(vec![due.item], "panic".into())
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .record_worker_failure(vec![due.item], "panic".into())
            .unwrap(),
        1
    );
    assert!(store.queue_messages("remote:far.test").unwrap().is_empty());
    let [poisoned] = &store.queue_messages("poison").unwrap()[..] else {
        panic!("in poison");
    };
    assert!(poisoned
        .last_error
        .as_deref()
        .unwrap()
        .contains("from remote:far.test"));
    assert!(store
        .outbound_queues()
        .unwrap()
        .iter()
        .all(|(q, _)| q != "poison"));
}

#[test]
fn folder_rename_moves_children_and_only_them() {
    let dir = temp_dir("rename");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("u@localhost", "pw").unwrap();
    for f in ["a_b", "a_b/c", "axb", "axb/c"] {
        store.folder_create("u@localhost", f, None).unwrap();
    }
    store.folder_rename("u@localhost", "a_b", "z").unwrap();
    let names: Vec<String> = store
        .folders("u@localhost")
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(names.contains(&"z".to_string()) && names.contains(&"z/c".to_string()));
    assert!(
        names.contains(&"axb/c".to_string()),
        "`_` is not a wildcard: {names:?}"
    );
    assert!(store.folder_rename("u@localhost", "INBOX", "x").is_err());
    assert!(store
        .folder_create("u@localhost", "bad//name", None)
        .is_err());
}

fn worm(id: &str, rcpt: &str, subject: &str) -> Incoming {
    Incoming {
        data: format!(
            "From: w@worm.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n\
             <p>Open the <b>invoice</b> now</p>\r\n--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"invoice.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             TVpwYXlsb2Fk\r\n--b--\r\n"
        )
        .into_bytes(),
        mail_from: "w@worm.test".into(),
        ..incoming(id, rcpt)
    }
}

const ALL: [Place; 3] = [Place::Queues, Place::Mailboxes, Place::Quarantine];

#[test]
fn find_newest_first_pages_through_windows() {
    let dir = temp_dir("find-newest");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    // Twelve messages in INBOX; every third one carries the lure.
    let messages = (0..12)
        .map(|i| ImportMessage {
            data: format!(
                "Subject: m{i}\r\n\r\n{}\r\n",
                if i % 3 == 0 {
                    "open the invoice"
                } else {
                    "hello"
                }
            )
            .into_bytes(),
            flags: vec![],
            internal_date: Some(1_700_000_000 - i),
        })
        .collect();
    store.import("bob@localhost", "INBOX", messages).unwrap();
    // And a queued worm copy, the newest message of all.
    store
        .queue_set_state("inbound", QueueState::Frozen)
        .unwrap();
    store.ingest(worm("cc01", "bob@localhost", "m12")).unwrap();
    let lure = Filters {
        body: Some("OPEN THE INVOICE".into()),
        ..Default::default()
    };
    let subjects = |found: FindResult| -> Vec<String> {
        found.messages.into_iter().map(|m| m.subject).collect()
    };
    // Windows of 2 ids: most hold no match, some one; the order is the store's, newest
    // first, whatever the dates say.
    let newest = |offset, limit, window| {
        store
            .read(|c| find::find_newest_first(c, &ALL, &lure, offset, limit, window))
            .unwrap()
    };
    let all = subjects(newest(0, None, 2));
    assert_eq!(all, ["m12", "m9", "m6", "m3", "m0"]);
    assert_eq!(subjects(newest(0, None, 1 << 20)), all);
    let first = newest(0, Some(2), 2);
    assert!(first.more);
    let second = newest(2, Some(2), 2);
    assert!(second.more);
    let last = newest(4, Some(2), 2);
    assert!(!last.more);
    let paged: Vec<String> = [first, second, last]
        .into_iter()
        .flat_map(subjects)
        .collect();
    assert_eq!(paged, all);
    // The API's sort key takes the same path, and finds what the date sort finds.
    let by_arrival = store
        .find(&ALL, &lure, Some(SortKey::Arrival), 0, None)
        .unwrap();
    assert_eq!(subjects(by_arrival), all);
    let mut by_date = subjects(store.find(&ALL, &lure, None, 0, None).unwrap());
    by_date.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(by_date, expected);
    // Other indexed filters are windowed too.
    let sha = hex::encode(Sha256::digest(b"MZpayload"));
    let by_hash = Filters {
        sha256: Some(sha),
        ..Default::default()
    };
    let found = store
        .read(|c| find::find_newest_first(c, &ALL, &by_hash, 0, Some(5), 2))
        .unwrap();
    assert_eq!(subjects(found), ["m12"]);
}

#[test]
fn find_quarantine_restore_remove() {
    let dir = temp_dir("find");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    store
        .ingest(worm("bb01", "bob@localhost", "Hello one"))
        .unwrap();
    store
        .ingest(worm("bb02", "bob@localhost", "Greetings two"))
        .unwrap();
    store.ingest(incoming("bb03", "bob@localhost")).unwrap();
    // All three into queue `local` (frozen), then one delivered.
    store.queue_set_state("local", QueueState::Frozen).unwrap();
    store.route_inbound(100, false, &to_local, 60).unwrap();
    store.queue_set_state("local", QueueState::Active).unwrap();
    store.deliver_local(1, 60).unwrap();
    // One worm copy is in INBOX, the other two messages still queued.
    let by = |f: Filters| store.find_ids(&ALL, &f).unwrap().len();
    let sha = hex::encode(Sha256::digest(b"MZpayload"));
    assert_eq!(
        by(Filters {
            sha256: Some(sha.clone()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        by(Filters {
            attachment: Some("*.EXE".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        by(Filters {
            body: Some("INVOICE now".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        by(Filters {
            subject: Some("greet".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(Filters {
            subject_re: Some("^(hello|greetings) ".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        by(Filters {
            from: Some("W@worm.test".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        by(Filters {
            from: Some("@worm.test".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        by(Filters {
            mailbox: Some("bob@localhost".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(Filters {
            queue: Some("local".into()),
            ..Default::default()
        }),
        2
    );
    assert!(store
        .find_ids(
            &ALL,
            &Filters {
                body: Some("in".into()),
                ..Default::default()
            }
        )
        .is_err());

    let ids = store
        .find_ids(
            &ALL,
            &Filters {
                sha256: Some(sha.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let report = store.quarantine(&ids, "test", "worm").unwrap();
    assert_eq!(report.done, 2);
    assert_eq!(report.users, ["bob@localhost"]);
    assert!(store
        .mailbox_messages("bob@localhost", "INBOX")
        .unwrap()
        .is_empty());
    assert_eq!(store.queue_messages("local").unwrap().len(), 1);
    let held = store
        .find(&[Place::Quarantine], &Filters::default(), None, 0, None)
        .unwrap()
        .messages;
    assert_eq!(held.len(), 2);
    // Quarantined mail is never delivered.
    assert_eq!(store.deliver_local(100, 60).unwrap().delivered, 1);

    let from_inbox = held
        .iter()
        .find(|m| m.origin.as_deref() == Some("mailbox:bob@localhost/INBOX"))
        .unwrap();
    let detail = store.quarantine_detail(&from_inbox.id).unwrap();
    assert_eq!(detail.reason, "worm");
    assert!(detail.headers.contains("Subject:"));
    let restored = store
        .quarantine_restore(std::slice::from_ref(&from_inbox.id))
        .unwrap();
    assert_eq!(restored.done, 1);
    let inbox = store.mailbox_messages("bob@localhost", "INBOX").unwrap();
    assert_eq!(inbox.len(), 2);

    // Purge the other one: its blob goes with it.
    let rest: Vec<String> = store
        .find_ids(&[Place::Quarantine], &Filters::default())
        .unwrap();
    assert_eq!(rest.len(), 1);
    let blob = held
        .iter()
        .find(|m| m.id == rest[0])
        .unwrap()
        .message
        .clone();
    let live = |s: &EmbeddedStore| {
        s.read(|c| Ok(c.query_row("SELECT SUM(live) FROM packs", [], |r| r.get::<_, i64>(0))?))
            .unwrap()
    };
    let (size, before) = (store.blob_read(&blob).unwrap().len() as i64, live(&store));
    let stored = store.stats().unwrap();
    assert_eq!(store.remove(&rest, Vec::new()).unwrap().done, 1);
    assert!(store.blob_read(&blob).is_err(), "gone at once for readers");
    let waiting = store.stats().unwrap();
    assert_eq!(waiting.reclaim_behind, 1);
    assert_eq!(
        waiting.messages,
        stored.messages - 1,
        "out of the totals at once"
    );
    assert_eq!(waiting.message_bytes, stored.message_bytes - size as u64);
    assert_eq!(live(&store), before, "the row waits for the reclaim");
    assert!(store.check(false, &|_| ()).unwrap().faults.is_empty());
    assert_eq!(reclaim_all(&store), 1);
    assert_eq!(store.stats().unwrap().reclaim_behind, 0);
    assert_eq!(store.stats().unwrap().messages, waiting.messages);
    assert_eq!(store.stats().unwrap().message_bytes, waiting.message_bytes);
    assert_eq!(
        live(&store),
        before - size - 32,
        "its bytes are free for compaction"
    );
    assert!(store
        .find_ids(&[Place::Quarantine], &Filters::default())
        .unwrap()
        .is_empty());
    // Gone ids are skipped, not errors.
    assert_eq!(store.remove(&rest, Vec::new()).unwrap().skipped, 1);
}

#[test]
fn import_keeps_flags_and_dates() {
    let dir = temp_dir("import");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("carol@localhost", "pw").unwrap();
    let n = store
        .import(
            "carol@localhost",
            "Archive/2025",
            vec![
                ImportMessage {
                    data: b"Subject: old one\r\n\r\nhello\r\n".to_vec(),
                    flags: vec!["\\Seen".into()],
                    internal_date: Some(1_700_000_000),
                },
                ImportMessage {
                    data: b"Subject: old two\r\n\r\nworld\r\n".to_vec(),
                    flags: vec![],
                    internal_date: None,
                },
            ],
        )
        .unwrap();
    assert_eq!(n, 2);
    let snap = store
        .folder_snapshot("carol@localhost", "Archive/2025")
        .unwrap();
    assert_eq!(snap.entries.len(), 2);
    assert_eq!(snap.entries[0].flags, ["\\Seen"]);
    assert_eq!(snap.entries[0].internal_date, 1_700_000_000);
    let old = store
        .find_ids(
            &ALL,
            &Filters {
                received_before: Some(1_700_000_001),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(old.len(), 1);
    let batch = store.reindex_batch(0, 10).unwrap();
    assert_eq!(batch.indexed, 2);
    assert_eq!(
        store
            .find_ids(
                &ALL,
                &Filters {
                    body: Some("world".into()),
                    ..Default::default()
                }
            )
            .unwrap()
            .len(),
        1,
        "reindex keeps the text index whole"
    );
    assert!(store.import("nobody@localhost", "INBOX", vec![]).is_err());
}

#[test]
fn scanner_gates_routing_quarantines_and_answers_hashes() {
    let dir = temp_dir("scanning");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    store
        .ingest(worm("cc01", "bob@localhost", "Hi one"))
        .unwrap();
    store.ingest(incoming("cc02", "bob@localhost")).unwrap();
    let stamped = Incoming {
        scan: Some(ScanStamp {
            version: "v1".into(),
            content_version: "c1".into(),
            verdict: None,
        }),
        ..incoming("cc03", "bob@localhost")
    };
    store.ingest(stamped).unwrap();
    // Only the message scanned before acceptance may be routed yet.
    assert_eq!(store.unscanned_inbound().unwrap(), 2);
    assert_eq!(
        store
            .route_inbound(100, true, &to_local, 60)
            .unwrap()
            .routed,
        1
    );
    let pending = store.scan_pending(10).unwrap();
    assert_eq!(pending.len(), 2);
    let stamp = |verdict: Option<&str>| ScanStamp {
        version: "v1".into(),
        content_version: "c1".into(),
        verdict: verdict.map(str::to_string),
    };
    assert_eq!(pending[1].recipients, ["bob@localhost"]);
    let next_hops = [("bob@localhost".to_string(), QUEUE_LOCAL.to_string())].into();
    let (report, routed) = store
        .record_scans_and_route(
            vec![
                ScanRecord {
                    message: pending[0].message,
                    stamp: stamp(Some("Worm.A")),
                    action: ScanAction::Quarantine {
                        reason: "scan: Worm.A".into(),
                        queues: true,
                        mailboxes: true,
                    },
                },
                ScanRecord {
                    message: pending[1].message,
                    stamp: stamp(None),
                    action: ScanAction::Keep,
                },
            ],
            next_hops,
            60,
        )
        .unwrap();
    assert_eq!(report.done, 1);
    // The clean one went on to INBOX in the commit that recorded its scan.
    assert_eq!((routed.routed, routed.local.delivered), (1, 1));
    assert_eq!(routed.local.users, ["bob@localhost"]);
    assert_eq!(store.unscanned_inbound().unwrap(), 0);
    assert_eq!(
        store
            .route_inbound(100, true, &to_local, 60)
            .unwrap()
            .routed,
        0
    );
    assert_eq!(
        store
            .mailbox_messages("bob@localhost", "INBOX")
            .unwrap()
            .len(),
        2
    );
    let quarantined = store
        .find(&[Place::Quarantine], &Filters::default(), None, 0, None)
        .unwrap();
    assert_eq!(quarantined.messages.len(), 1);
    assert_eq!(quarantined.messages[0].verdict.as_deref(), Some("Worm.A"));

    // Hash signatures answered from the part index, mailboxes only.
    let sha = hex::encode(Sha256::digest(b"MZpayload"));
    let md5 = hex::encode(md5::Md5::digest(b"MZpayload"));
    store
        .ingest(worm("cc04", "bob@localhost", "Hi two"))
        .unwrap();
    store.route_inbound(100, false, &to_local, 60).unwrap();
    let hits = store
        .hash_matches(vec![], vec![(sha.clone(), Some(9))], MAILBOXES)
        .unwrap();
    assert_eq!(hits.len(), 1, "the quarantined copy is not in a mailbox");
    assert_eq!(
        store
            .hash_matches(vec![(md5, None)], vec![(sha, Some(10))], MAILBOXES)
            .unwrap()
            .len(),
        1,
        "md5 without size matches; sha256 with the wrong size does not"
    );
    let everywhere = RescanScope {
        queues: true,
        mailboxes: true,
        cluster: None,
    };
    let again = store.rescan_candidates(0, 100, "c1", everywhere).unwrap();
    assert_eq!(again.len(), 1, "only the message never scanned with c1");
}

const MAILBOXES: RescanScope = RescanScope {
    queues: false,
    mailboxes: true,
    cluster: None,
};

/// Waits until the text indexer has caught up (it works behind the commit).
fn text_index_caught_up(store: &EmbeddedStore) {
    for _ in 0..500 {
        if store.stats().unwrap().text_index_behind == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the text indexer did not catch up");
}

#[test]
fn text_search_before_and_after_indexing_and_after_deletes() {
    let dir = temp_dir("text");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    let body = |text: &str| Filters {
        body: Some(text.into()),
        ..Default::default()
    };
    let subject = |text: &str| Filters {
        subject: Some(text.into()),
        ..Default::default()
    };
    let count = |f: Filters| store.find_ids(&ALL, &f).unwrap().len();

    // Found at once, whether or not the indexer got to it yet, in any case.
    for (id, words) in [
        ("cc01", "Open the Attached INVOICE"),
        ("cc02", "lunch at noon"),
    ] {
        let mut m = incoming(id, "bob@localhost");
        m.data = format!("Subject: Grüße {id}\r\n\r\n{words}\r\n").into_bytes();
        store.ingest(m).unwrap();
        assert_eq!(count(body("attached invoice")), 1, "right after {id}'s 250");
    }
    assert_eq!(count(subject("GRÜSSE")), 0, "no case folding of ß into ss");
    assert_eq!(count(subject("grüße cc0")), 2);
    text_index_caught_up(&store);
    assert_eq!(count(body("attached invoice")), 1, "from the index");
    assert_eq!(count(subject("grüße cc0")), 2, "from the index");
    assert_eq!(count(body("at noon")), 1);

    // A deleted message leaves the index; its id is never given to another message,
    // even though it was the highest.
    store.route_inbound(100, false, &to_local, 60).unwrap();
    let ids = store.find_ids(&ALL, &body("at noon")).unwrap();
    let gone_row: i64 = store
        .read(|c| Ok(c.query_row("SELECT max(id) FROM messages", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(
        store
            .mailbox_delete("bob@localhost", "INBOX", &ids)
            .unwrap(),
        1
    );
    assert_eq!(count(body("at noon")), 0);
    assert_eq!(reclaim_all(&store), 1);
    let mut m = incoming("cc03", "bob@localhost");
    m.data = b"Subject: again\r\n\r\nlunch at noon again\r\n".to_vec();
    store.ingest(m).unwrap();
    let new_row: i64 = store
        .read(|c| Ok(c.query_row("SELECT max(id) FROM messages", [], |r| r.get(0))?))
        .unwrap();
    assert!(new_row > gone_row, "id {new_row} reused (was {gone_row})");
    text_index_caught_up(&store);
    assert_eq!(count(body("at noon")), 1);
    let pending_removals = |s: &EmbeddedStore| {
        s.read(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM text_deleted", [], |r| {
                r.get::<_, i64>(0)
            })?)
        })
        .unwrap()
    };
    for _ in 0..500 {
        if pending_removals(&store) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        pending_removals(&store),
        0,
        "the indexer dropped the deleted row"
    );
    let indexed: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM t.text_index('body : \"noon\"')",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(indexed, 1, "only the new message is in the index");

    // A lost or damaged text.db is rebuilt from the blobs on the next start.
    drop(store);
    std::fs::write(dir.join("text.db"), b"not a database").unwrap();
    let _ = std::fs::remove_file(dir.join("text.db-wal"));
    let store = EmbeddedStore::open(&dir).unwrap();
    let count = |f: Filters| store.find_ids(&ALL, &f).unwrap().len();
    assert_eq!(
        count(body("attached invoice")),
        1,
        "answered from the blobs meanwhile"
    );
    text_index_caught_up(&store);
    assert_eq!(count(body("attached invoice")), 1);
    assert_eq!(count(body("lunch at noon")), 1);
}

#[test]
fn compaction_reclaims_deleted_mail_and_keeps_the_rest_readable() {
    let dir = temp_dir("compact");
    // Packs of 8 KB: a few messages each.
    let store = EmbeddedStore::open_with_pack_limit(&dir, 8 << 10).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    let body = |n: usize| format!("Subject: m{n}\r\n\r\n{}\r\n", "x".repeat(1000 + n));
    let mut uids = Vec::new();
    for n in 0..60 {
        let mut m = incoming(&format!("dd{n:02}"), "bob@localhost");
        m.data = body(n).into_bytes();
        uids.push(store.ingest(m).unwrap().id);
    }
    store.route_inbound(100, false, &to_local, 60).unwrap();
    let packs_before = store.blobs.packs().unwrap().len();
    assert!(packs_before >= 8, "{packs_before} packs");
    // Delete all but every fourth message.
    let inbox = store.mailbox_messages("bob@localhost", "INBOX").unwrap();
    let (keep, drop): (Vec<_>, Vec<_>) = inbox.iter().enumerate().partition(|(n, _)| n % 4 == 0);
    let drop: Vec<String> = drop.into_iter().map(|(_, m)| m.id.clone()).collect();
    assert_eq!(
        store
            .mailbox_delete("bob@localhost", "INBOX", &drop)
            .unwrap(),
        45
    );
    assert_eq!(reclaim_all(&store), 45);
    let removed = store.compact_packs().unwrap();
    assert!(removed >= 4, "only {removed} packs removed");
    let packs_after = store.blobs.packs().unwrap().len();
    assert!(
        packs_after < packs_before,
        "{packs_after} >= {packs_before}"
    );
    // Every kept message reads back byte for byte, by store id and by mailbox id.
    for (n, m) in keep {
        let uid = m.message.clone();
        assert_eq!(
            store.blob_read(&uid).unwrap(),
            body(n).into_bytes(),
            "message {n}"
        );
        assert_eq!(store.message_raw(&m.id).unwrap(), body(n).into_bytes());
        assert_eq!(
            store.message_head(&uid).unwrap(),
            format!("Subject: m{n}\r\n\r\n").into_bytes()
        );
    }
    // The live-byte count matches what is left, and it all survives a reopen.
    let live: i64 = store
        .read(|c| Ok(c.query_row("SELECT SUM(live) FROM packs", [], |r| r.get(0))?))
        .unwrap();
    let expected: i64 = store
        .read(|c| Ok(c.query_row("SELECT SUM(size + 32) FROM messages", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(live, expected);
    drop_store_and_reopen(store, &dir);
}

fn drop_store_and_reopen(store: EmbeddedStore, dir: &Path) {
    let inbox = store.mailbox_messages("bob@localhost", "INBOX").unwrap();
    drop(store);
    let store = EmbeddedStore::open_with_pack_limit(dir, 8 << 10).unwrap();
    for m in inbox {
        assert_eq!(store.message_raw(&m.id).unwrap().len() as u64, m.size);
    }
}

/// Records another boot id in the text index, as a machine restart would leave it.
fn pretend_the_machine_rebooted(dir: &Path) {
    Connection::open(dir.join("text.db"))
        .unwrap()
        .execute(
            "UPDATE text_state SET value='another-boot' WHERE key='boot'",
            [],
        )
        .unwrap();
}

#[test]
fn text_index_is_rebuilt_after_an_unclean_machine_restart() {
    let dir = temp_dir("textboot");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    let mut m = incoming("ee01", "bob@localhost");
    m.data = b"Subject: s\r\n\r\nquarterly figures attached\r\n".to_vec();
    store.ingest(m).unwrap();
    text_index_caught_up(&store);
    let through = |dir: &Path| {
        let c = Connection::open(dir.join("text.db")).unwrap();
        c.query_row(
            "SELECT COALESCE((SELECT value FROM text_state WHERE key='through'), 0)",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    // Closed cleanly: the index is trusted even after a reboot.
    store.close();
    drop(store);
    assert_eq!(through(&dir), 1);
    pretend_the_machine_rebooted(&dir);
    let store = EmbeddedStore::open(&dir).unwrap();
    store.close();
    drop(store);
    assert_eq!(through(&dir), 1, "kept: it was closed cleanly");
    // Not closed (a kill), then a reboot: rebuilt from the blobs — a new file (the
    // indexer may have caught up again already, so the marker tells, not `through`) —
    // and still found.
    let marked = |dir: &Path| {
        Connection::open(dir.join("text.db"))
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM text_state WHERE key='marker'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 1
    };
    // What a kill leaves: the run's boot recorded, no clean close.
    Connection::open(dir.join("text.db"))
        .unwrap()
        .execute_batch(
            "INSERT INTO text_state(key, value) VALUES('marker', 1);
             UPDATE text_state SET value=0 WHERE key='clean';",
        )
        .unwrap();
    pretend_the_machine_rebooted(&dir);
    let store = EmbeddedStore::open(&dir).unwrap();
    assert!(!marked(&dir), "rebuilt");
    let f = Filters {
        body: Some("QUARTERLY figures".into()),
        ..Default::default()
    };
    assert_eq!(store.find_ids(&ALL, &f).unwrap().len(), 1);
    text_index_caught_up(&store);
    assert_eq!(store.find_ids(&ALL, &f).unwrap().len(), 1);
}

#[test]
fn a_message_whose_bytes_were_lost_in_a_crash_is_removed_at_open() {
    use std::os::unix::fs::FileExt;
    let dir = temp_dir("torn");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    for id in ["ff01", "ff02", "ff03"] {
        store.ingest(incoming(id, "bob@localhost")).unwrap();
    }
    let lost = store.blob_ref("ff02").unwrap();
    let at = lost.at.expect("in a pack");
    drop(store);
    // The machine went down before ff02's bytes reached the disk (its row was
    // committed meanwhile): they read back as zeros.
    let pack = dir.join("blobs/packs").join(format!("{:08}.pack", at.pack));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .write_all_at(&vec![0u8; lost.len as usize], at.offset)
        .unwrap();
    let store = EmbeddedStore::open(&dir).unwrap();
    let queued: Vec<String> = store
        .queue_messages("inbound")
        .unwrap()
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(queued, ["ff01", "ff03"], "ff02 was never acknowledged");
    assert!(store.blob_read("ff02").is_err());
    assert_eq!(
        store.blob_read("ff03").unwrap(),
        incoming("ff03", "bob@localhost").data
    );
    let (live, expected): (i64, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT SUM(live) FROM packs), (SELECT SUM(size + 32) FROM messages)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .unwrap();
    assert_eq!(live, expected);
    // Intact stores lose nothing on open.
    drop(store);
    let store = EmbeddedStore::open(&dir).unwrap();
    assert_eq!(store.queue_messages("inbound").unwrap().len(), 2);
}

#[test]
fn a_busy_checkpoint_never_fails_a_commit() {
    let dir = temp_dir("busyckpt");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    // A reader keeps the log from being reset, so it stays past the writer's inline
    // threshold; another connection checkpoints all the time, so the writer's own
    // checkpoint keeps finding one in progress.
    let reader = Connection::open(dir.join("lazaret.db")).unwrap();
    reader
        .execute_batch("BEGIN; SELECT COUNT(*) FROM messages;")
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let (stop, db) = (stop.clone(), dir.join("lazaret.db"));
        std::thread::spawn(move || {
            let c = Connection::open(db).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })
    };
    for n in 0..300 {
        store
            .ingest(incoming(&format!("ab{n:04}"), "bob@localhost"))
            .unwrap_or_else(|e| panic!("message {n} refused although stored: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    checkpointer.join().unwrap();
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(store.queue_messages("inbound").unwrap().len(), 300);
}

/// A message with one attachment (`payload`) and a text of its own.
fn with_attachment(id: &str, text: &str, payload: &[u8]) -> Incoming {
    let payload = String::from_utf8_lossy(payload);
    Incoming {
        data: format!(
            "From: x{id}@far.test\r\nSubject: s {id}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
             {text}\r\n--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"f{id}.bin\"\r\n\r\n\
             {payload}\r\n--b--\r\n"
        )
        .into_bytes(),
        mail_from: format!("x{id}@far.test"),
        ..incoming(id, "bob@localhost")
    }
}

#[test]
fn clusters_group_by_attachment_merge_and_count_down_on_delete() {
    let dir = temp_dir("clusters");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    let (a, b) = ([b'A'; 100], [b'B'; 100]);
    for (id, text) in [("a1", "one"), ("a2", "two"), ("a3", "three")] {
        store.ingest(with_attachment(id, text, &a)).unwrap();
    }
    for (id, text) in [("b1", "four"), ("b2", "five")] {
        store.ingest(with_attachment(id, text, &b)).unwrap();
    }
    store
        .ingest(with_attachment("c1", "six", &[b'C'; 100]))
        .unwrap();
    // Nothing is filed before the clusterer runs; then all at once.
    assert_eq!(store.stats().unwrap().clusters_behind, 6);
    assert_eq!(store.file_clusters(100).unwrap(), 6);
    assert_eq!(store.stats().unwrap().clusters_behind, 0);
    let query = ClusterQuery {
        min: 2,
        limit: 10,
        ..ClusterQuery::default()
    };
    let found = store.clusters(&query).unwrap();
    assert_eq!(
        found.iter().map(|c| c.messages).collect::<Vec<_>>(),
        [3, 2],
        "c1 matches nothing and is no cluster"
    );
    let (ca, cb) = (found[0].id, found[1].id);
    assert_eq!(found[0].senders, 3);
    assert_eq!(found[0].in_queues, 3);
    assert_eq!(found[0].attachments[0].messages, 3);
    let members = |cluster: i64| {
        store
            .find_ids(
                &ALL,
                &Filters {
                    cluster: Some(cluster),
                    ..Default::default()
                },
            )
            .unwrap()
    };
    assert_eq!(members(ca).len(), 3);
    // A message carrying both payloads joins the two clusters into one (the older).
    let both = {
        let mut m = with_attachment("e1", "seven", &a);
        let extra = with_attachment("e1", "seven", &b).data;
        // Same message, second attachment appended as another part.
        let text = String::from_utf8(m.data).unwrap();
        let second = String::from_utf8(extra).unwrap();
        let part = &second[second.find("--b\r\nContent-Type: application").unwrap()
            ..second.rfind("--b--").unwrap()];
        m.data = text.replace("--b--", &format!("{part}--b--")).into_bytes();
        m
    };
    store.ingest(both).unwrap();
    assert_eq!(store.file_clusters(100).unwrap(), 1);
    let found = store.clusters(&query).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id, found[0].messages), (ca.min(cb), 6));
    // The absorbed cluster's id still names every member.
    assert_eq!(members(ca.max(cb)).len(), 6);
    // Deleting a member counts it out.
    let one = members(ca)[0].clone();
    store.remove(&[one], Vec::new()).unwrap();
    reclaim_all(&store);
    assert_eq!(store.cluster(ca).unwrap().unwrap().messages, 5);
    assert_eq!(store.cluster_allow(ca, true).unwrap(), Some(0));
    assert!(store.cluster(ca.max(cb)).unwrap().unwrap().allowed);
    assert_eq!(store.cluster_allow(9999, true).unwrap(), None);
}

#[test]
fn hold_freezes_a_fast_growing_cluster_from_many_senders_until_allowed() {
    let dir = temp_dir("hold");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    store.set_cluster_hold(Some(HoldRule {
        messages: 4,
        window_secs: 600,
        senders: 3,
    }));
    // One sender's mailing of six copies: a mailing, never held.
    let mailing = |id: String| {
        let mut m = with_attachment(&id, "news", &[b'N'; 100]);
        m.mail_from = "news@far.test".into();
        store.ingest(m).unwrap();
    };
    for i in 0..6 {
        mailing(format!("d{i}"));
    }
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!((routed.routed, routed.held), (6, 0));
    assert!(routed.holds.is_empty());
    // A worm from a new sender each copy: routed until its cluster has grown by four
    // (counted as messages are filed: the first two join at once), then held.
    let worm = [b'W'; 100];
    for i in 0..3 {
        store
            .ingest(with_attachment(&format!("e{i}"), "open it", &worm))
            .unwrap();
    }
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!((routed.routed, routed.held), (3, 0), "growth 3 of 4");
    for i in 3..7 {
        store
            .ingest(with_attachment(&format!("e{i}"), "open it", &worm))
            .unwrap();
    }
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!((routed.routed, routed.held), (0, 4));
    assert_eq!(routed.holds.len(), 1, "the hold starts once");
    let hold = &routed.holds[0];
    assert_eq!((hold.growth, hold.senders), (4, 4));
    let cluster = hold.cluster;
    let stats = store.stats().unwrap();
    assert_eq!((stats.clusters_held, stats.held_copies), (1, 4));
    let summary = store.cluster(cluster).unwrap().unwrap();
    assert!(summary.held_since.is_some());
    assert_eq!(summary.held_copies, 4);
    // Held copies are never routed (they are frozen), later copies are held too.
    store
        .ingest(with_attachment("e7", "open it", &worm))
        .unwrap();
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!((routed.routed, routed.held, routed.holds.len()), (0, 1, 0));
    // Thawed by the admin: that copy goes on; the hold stays for new copies.
    let frozen = store
        .find_ids(
            &[Place::Queues],
            &Filters {
                cluster: Some(cluster),
                state: Some("frozen".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(frozen.len(), 5);
    assert_eq!(store.items_set_frozen(&frozen[..1], false).unwrap(), 1);
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!(
        (routed.routed, routed.held),
        (1, 0),
        "a thawed copy is let go"
    );
    // Allowed: the hold ends and the held copies go on.
    assert_eq!(store.cluster_allow(cluster, true).unwrap(), Some(4));
    assert_eq!(store.stats().unwrap().held_copies, 0);
    store
        .ingest(with_attachment("e8", "open it", &worm))
        .unwrap();
    let routed = store.route_inbound(100, false, &to_local, 60).unwrap();
    assert_eq!((routed.routed, routed.held), (5, 0));
    // Growth sorts the list: the worm grew by 9 in the last hour, the mailing by 6.
    let by_growth = store
        .clusters(&ClusterQuery {
            limit: 10,
            by_growth: true,
            ..ClusterQuery::default()
        })
        .unwrap();
    assert_eq!(
        by_growth.iter().map(|c| c.last_hour).collect::<Vec<_>>(),
        [9, 6]
    );
}

#[test]
fn keys_of_deleted_messages_are_pruned_slice_by_slice() {
    let dir = temp_dir("prune-keys");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    store
        .ingest(with_attachment("b1", "first", &[b'P'; 100]))
        .unwrap();
    store
        .ingest(with_attachment("c1", "other", &[b'Q'; 100]))
        .unwrap();
    store.file_clusters(100).unwrap();
    let p1 = store
        .find_ids(
            &ALL,
            &Filters {
                subject: Some("s b1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    store.remove(&p1, Vec::new()).unwrap();
    reclaim_all(&store);
    let sweep = |store: &EmbeddedStore| -> usize {
        (0..crate::CLUSTER_KEY_SLICES)
            .map(|s| store.prune_cluster_keys(s).unwrap())
            .sum()
    };
    // p1's attachment key and text key go; q1's stay.
    assert_eq!(sweep(&store), 2);
    assert_eq!(sweep(&store), 0, "a second pass finds nothing");
    // A later copy of q1's payload still finds q1.
    store
        .ingest(with_attachment("c2", "again", &[b'Q'; 100]))
        .unwrap();
    store.file_clusters(100).unwrap();
    let found = store
        .clusters(&ClusterQuery {
            min: 2,
            limit: 10,
            ..ClusterQuery::default()
        })
        .unwrap();
    assert_eq!(found.iter().map(|c| c.messages).collect::<Vec<_>>(), [2]);
}

#[test]
fn a_failing_or_panicking_write_alone_in_its_transaction_is_undone() {
    let dir = temp_dir("alone");
    let store = EmbeddedStore::open(&dir).unwrap();
    let failed = store.write(|c| -> Result<()> {
        c.execute(
            "INSERT INTO settings(key, value) VALUES('half', 'done')",
            [],
        )?;
        Err(StoreError::Invalid("stop".into()))
    });
    assert!(matches!(failed, Err(StoreError::Invalid(m)) if m == "stop"));
    let panicked = store.write(|c| -> Result<()> {
        c.execute(
            "INSERT INTO settings(key, value) VALUES('half', 'done')",
            [],
        )?;
        panic!("a bug")
    });
    assert!(panicked.is_err());
    assert_eq!(
        store.setting("half").unwrap(),
        None,
        "nothing of either stays"
    );
    // The writer goes on.
    store.set_setting("after", "yes").unwrap();
    assert_eq!(store.setting("after").unwrap().as_deref(), Some("yes"));
}

/// Rebuilds a database from a whole copy and page copies, as `backup restore` does.
fn rebuild(whole: &Path, copies: &[&Path], into: &Path) -> Connection {
    std::fs::copy(whole, into).unwrap();
    let db = std::fs::OpenOptions::new().write(true).open(into).unwrap();
    for copy in copies {
        crate::pages::apply(std::fs::File::open(copy).unwrap(), &db).unwrap();
    }
    drop(db);
    let c = Connection::open(into).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    c
}

fn message_uids(c: &Connection) -> Vec<String> {
    c.prepare("SELECT uid FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn backups_copy_only_the_pages_changed_since_the_last_kept_one() {
    let dir = temp_dir("page-copies");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    let ingest = |range: std::ops::Range<usize>| {
        for n in range {
            store
                .ingest(incoming(&format!("cc{n:04}"), "bob@localhost"))
                .unwrap();
        }
    };
    let live = || message_uids(&open_read_only(&dir.join("lazaret.db")).unwrap());
    let base = |id: &str| BackupBase {
        id: id.into(),
        max_bytes: u64::MAX,
    };
    ingest(0..400);
    let whole = dir.join("whole.db");
    let first = snapshot_to(&store, &whole, None);
    assert_eq!(first.database, DatabaseCopy::Whole);
    (first.keep)("chain#1");
    let whole_pages = std::fs::metadata(&whole).unwrap().len() / 4096;

    // Mail arrives; the writer checkpoints on the way (every 20 pages in tests), so
    // some changed pages are in the record and some still in the log.
    ingest(400..410);
    let copy1 = dir.join("copy1");
    let second = snapshot_to(&store, &copy1, Some(&base("chain#1")));
    let DatabaseCopy::Pages { count, .. } = second.database else {
        panic!("expected a page copy, got {:?}", second.database)
    };
    assert!(
        count < whole_pages / 2,
        "{count} of {whole_pages} pages copied"
    );
    let expected = live();
    assert_eq!(expected.len(), 410);
    assert_eq!(
        message_uids(&rebuild(&whole, &[&copy1], &dir.join("r1.db"))),
        expected
    );
    (second.keep)("chain#2");

    // A copy on top of a copy.
    ingest(410..420);
    let copy2 = dir.join("copy2");
    let third = snapshot_to(&store, &copy2, Some(&base("chain#2")));
    assert!(matches!(third.database, DatabaseCopy::Pages { .. }));
    let rebuilt = rebuild(&whole, &[&copy1, &copy2], &dir.join("r2.db"));
    assert_eq!(message_uids(&rebuilt), live());
    // Not kept (the backup failed): the next one still counts from chain#2.
    drop(third);
    let again = snapshot_to(&store, &dir.join("copy2b"), Some(&base("chain#2")));
    assert!(matches!(again.database, DatabaseCopy::Pages { .. }));
    // Another base than the record's, or a copy bigger than allowed: the whole file.
    drop(again);
    let other = snapshot_to(&store, &dir.join("w2"), Some(&base("chain#1")));
    assert_eq!(other.database, DatabaseCopy::Whole);
    drop(other);
    let small = BackupBase {
        id: "chain#2".into(),
        max_bytes: 4096,
    };
    let big = snapshot_to(&store, &dir.join("w3"), Some(&small));
    assert_eq!(big.database, DatabaseCopy::Whole);
    (big.keep)("chain#3");

    // Another program writes and checkpoints the database: the record is void, the
    // next backup copies the whole file.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let foreign = Connection::open(dir.join("lazaret.db")).unwrap();
    foreign
        .execute(
            "INSERT INTO settings(key, value) VALUES('foreign', 'x')",
            [],
        )
        .unwrap();
    foreign
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .unwrap();
    let after = snapshot_to(&store, &dir.join("w4"), Some(&base("chain#3")));
    assert_eq!(after.database, DatabaseCopy::Whole);
}

/// `backup_snapshot` into a file.
fn snapshot_to(
    store: &EmbeddedStore,
    path: &std::path::Path,
    base: Option<&BackupBase>,
) -> crate::BackupSnapshot {
    let mut file = std::fs::File::create(path).unwrap();
    store.backup_snapshot(&mut file, base).unwrap()
}

fn fault_kinds(report: &CheckReport) -> Vec<&'static str> {
    let mut kinds: Vec<_> = report.faults.iter().map(|f| f.kind).collect();
    kinds.sort();
    kinds
}

#[test]
fn check_finds_each_kind_of_damage_and_repair_fixes_what_it_can() {
    let dir = temp_dir("check");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    for i in 0..6 {
        store
            .ingest(incoming(&format!("c{i:03}"), "bob@localhost"))
            .unwrap();
    }
    store.route_inbound(100, false, &to_local, 60).unwrap();
    store.deliver_local(100, 60).unwrap();
    text_index_caught_up(&store);
    let counted = std::sync::atomic::AtomicU64::new(0);
    let clean = store
        .check(true, &|n| {
            counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    assert!(clean.faults.is_empty(), "{:?}", clean.faults);
    assert_eq!(clean.messages, 6);
    assert_eq!(clean.mailbox_entries, 6);
    assert_eq!(counted.into_inner(), 6, "progress counts every message");

    // Damage: a folder's uidnext behind its UIDs, a message nothing holds, a pack's
    // live count off, a queue item without recipients, a message whose bytes changed.
    let (_, pack, offset): (i64, u32, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT m.id, m.blob_pack, m.blob_offset FROM mailbox_entries e
                 JOIN messages m ON m.id=e.message ORDER BY e.uid DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .unwrap();
    store
        .write(move |c| {
            c.execute_batch(
                "UPDATE mailboxes SET uidnext=2 WHERE name='INBOX';
                 UPDATE packs SET live=live+7;
                 DELETE FROM mailbox_entries WHERE uid=1;",
            )?;
            let message: i64 =
                c.query_row("SELECT id FROM messages LIMIT 1 OFFSET 1", [], |r| r.get(0))?;
            c.execute(
                "INSERT INTO queue_items(message, queue, state, next_attempt, created)
                 VALUES(?1, 'local', 'ready', 0, 0)",
                [message],
            )?;
            Ok(())
        })
        .unwrap();
    let pack_path = dir.join("blobs/packs").join(format!("{pack:08}.pack"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pack_path)
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"X", offset as u64 + 2).unwrap();
    drop(f);

    let quick = store.check(false, &|_| {}).unwrap();
    assert_eq!(
        fault_kinds(&quick),
        [
            "pack_live_bytes",
            "queue_item_without_recipients",
            "uid_not_below_uidnext",
            "unreferenced_message"
        ],
        "a quick check reads record headers only: {:?}",
        quick.faults
    );
    let deep = store.check(true, &|_| {}).unwrap();
    let missing = deep
        .faults
        .iter()
        .find(|f| f.kind == "missing_blob")
        .unwrap();
    assert_eq!(missing.count, 1);
    assert!(!missing.repairable);
    assert!(
        missing.examples[0].contains("another SHA-256"),
        "{:?}",
        missing.examples
    );

    let repaired = store.repair().unwrap();
    let kinds: Vec<&str> = repaired.repaired.iter().map(|(k, _)| k.as_str()).collect();
    for kind in [
        "pack_live_bytes",
        "queue_item_without_recipients",
        "uid_not_below_uidnext",
        "unreferenced_message",
    ] {
        assert!(kinds.contains(&kind), "{kind} repaired: {kinds:?}");
    }
    let after = store.check(true, &|_| {}).unwrap();
    assert_eq!(fault_kinds(&after), ["missing_blob"], "{:?}", after.faults);
    assert_eq!(after.messages, 5, "the message nothing held is gone");
    assert_eq!(after.faults[0].count, 1);

    // The text index: an entry for a message the indexer was never told about, and a
    // message at or below the watermark that is not in it.
    store
        .read(|c| {
            c.execute(
                "INSERT INTO t.text_index(rowid, subject, body) VALUES(999999, 'x', 'y')",
                [],
            )?;
            let newest: i64 = c.query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0))?;
            c.execute("DELETE FROM t.text_index WHERE rowid=?1", [newest])?;
            // And the lookups: a sender row lost, a digest row of a message never stored.
            c.execute("DELETE FROM lk.lookup_senders WHERE message=?1", [newest])?;
            c.execute(
                "INSERT INTO lk.lookup_hashes(hash, message) VALUES('00ff', 999999)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    let text = store.check(false, &|_| {}).unwrap();
    assert_eq!(
        fault_kinds(&text),
        [
            "lookups_missing",
            "lookups_stale",
            "text_index_missing",
            "text_index_stale"
        ]
    );
    store.repair().unwrap();
    text_index_caught_up(&store);
    for _ in 0..200 {
        if store.check(false, &|_| {}).unwrap().faults.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{:?}", store.check(false, &|_| {}).unwrap().faults);
}

#[test]
fn the_event_log_keeps_a_message_path_after_it_is_gone() {
    let dir = temp_dir("events");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    store.ingest(incoming("ee01", "bob@localhost")).unwrap();
    store.route_inbound(100, false, &to_local, 60).unwrap();
    let [entry] = &store.mailbox_messages("bob@localhost", "INBOX").unwrap()[..] else {
        panic!("delivered to bob");
    };
    // Downloads are recorded behind the caller's back; the next write commits after.
    let entry_id: i64 = entry.id[1..].parse().unwrap();
    store.record_downloads("bob@localhost", "pop3 RETR", vec![entry_id]);
    store
        .mailbox_delete("bob@localhost", "INBOX", std::slice::from_ref(&entry.id))
        .unwrap();
    reclaim_all(&store);

    let [t] = &store.trace(Some("ee01"), None).unwrap()[..] else {
        panic!("one message with that id");
    };
    assert!(!t.exists, "nothing holds it any more");
    let path: Vec<(&str, &str)> = t
        .events
        .iter()
        .map(|e| (e.event.as_str(), e.who.as_str()))
        .collect();
    assert_eq!(
        path,
        [
            ("accepted", "a@far.test"),
            ("delivered", "bob@localhost"),
            ("downloaded", "bob@localhost"),
            ("expunged", "bob@localhost"),
            ("gone", ""),
        ]
    );
    assert_eq!(t.subject, "m ee01", "the gone row keeps the subject");
    assert!(t.now.is_empty());

    let rows = store.exposure(&ExposureScope::Places(vec![])).unwrap();
    assert!(rows.is_empty(), "no places, no copies");

    // Retention: everything older than a second from now goes, in slices.
    let later = now() + 1;
    assert_eq!(store.prune_events(later, 2).unwrap(), 2);
    assert_eq!(store.prune_events(later, 100).unwrap(), 3);
    assert!(store.trace(Some("ee01"), None).unwrap().is_empty());
}

#[test]
fn queue_and_mailbox_ids_are_never_given_out_twice() {
    let dir = temp_dir("ids");
    let first_item;
    {
        let store = EmbeddedStore::open(&dir).unwrap();
        store.user_add("bob@localhost", "pw").unwrap();
        store.ingest(incoming("fa01", "bob@localhost")).unwrap();
        let [item] = &store.queue_messages("inbound").unwrap()[..] else {
            panic!("one inbound item");
        };
        first_item = item.id.clone();
        // Delivered: the highest item row goes. The next message's item must not take
        // its id, or an action on the first id (from a find a moment before) would hit
        // the second message.
        store.route_inbound(100, false, &to_local, 60).unwrap();
        let [entry] = &store.mailbox_messages("bob@localhost", "INBOX").unwrap()[..] else {
            panic!("delivered");
        };
        let entry = entry.id.clone();
        store
            .mailbox_delete("bob@localhost", "INBOX", std::slice::from_ref(&entry))
            .unwrap();
        store.ingest(incoming("fa02", "bob@localhost")).unwrap();
        let [item] = &store.queue_messages("inbound").unwrap()[..] else {
            panic!("one inbound item");
        };
        assert_ne!(item.id, first_item, "a deleted item's id came back");
        store.route_inbound(100, false, &to_local, 60).unwrap();
        let [again] = &store.mailbox_messages("bob@localhost", "INBOX").unwrap()[..] else {
            panic!("delivered");
        };
        assert_ne!(again.id, entry, "an expunged entry's id came back");
        store.close();
    }
    // And across a restart.
    let store = EmbeddedStore::open(&dir).unwrap();
    store.ingest(incoming("fa03", "bob@localhost")).unwrap();
    let [item] = &store.queue_messages("inbound").unwrap()[..] else {
        panic!("one inbound item");
    };
    let n = |id: &str| id[1..].parse::<i64>().unwrap();
    assert!(
        n(&item.id) > n(&first_item) + 1,
        "{} after {}",
        item.id,
        first_item
    );
}

/// A message of its own: sender, text and attachment all differ from every other
/// message's, so each adds an entry at a random place of every lookup (digests,
/// senders, cluster keys).
fn distinct_message(n: usize) -> Incoming {
    let seed = |k: usize| hex::encode(Sha256::digest(format!("{k}-{n}").as_bytes()));
    let text = (0..40)
        .map(|k| seed(k)[..8].to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut m = with_attachment(&format!("d{n}"), &text, seed(99).as_bytes());
    m.mail_from = format!("{}@far.test", &seed(7)[..12]);
    m
}

#[test]
fn one_percent_more_mail_changes_about_one_percent_of_the_main_database() {
    let dir = temp_dir("lookups-pages");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    // From several threads, so that the writer commits them in batches (quicker).
    let ingest = |range: std::ops::Range<usize>| {
        std::thread::scope(|s| {
            for t in 0..8 {
                let (store, range) = (&store, range.clone());
                s.spawn(move || {
                    for n in range.skip(t).step_by(8) {
                        store.ingest(distinct_message(n)).unwrap();
                    }
                });
            }
        });
        store.file_clusters(100_000).unwrap();
    };
    ingest(0..10_000);
    let whole = dir.join("whole.db");
    let first = snapshot_to(&store, &whole, None);
    (first.keep)("chain#1");
    let whole_pages = std::fs::metadata(&whole).unwrap().len() / 4096;
    ingest(10_000..10_100);
    let copy = snapshot_to(
        &store,
        &dir.join("copy"),
        Some(&BackupBase {
            id: "chain#1".into(),
            max_bytes: u64::MAX,
        }),
    );
    let DatabaseCopy::Pages { count, .. } = copy.database else {
        panic!("expected a page copy, got {:?}", copy.database)
    };
    // With the digests, senders and cluster keys indexed in this file it was 25–30%;
    // now it is the tables' and their id-ordered indexes' last pages (~2.5%).
    assert!(
        count * 100 <= whole_pages * 5,
        "1% more mail changed {count} of {whole_pages} pages"
    );
}

#[test]
fn lookups_answer_by_digest_and_sender_and_are_rebuilt_when_lost_or_behind() {
    let dir = temp_dir("lookups-rebuild");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    for n in 0..20 {
        store.ingest(distinct_message(n)).unwrap();
    }
    let payload_sha = |n: usize| {
        let payload = hex::encode(Sha256::digest(format!("99-{n}").as_bytes()));
        hex::encode(Sha256::digest(payload.as_bytes()))
    };
    let sender = |n: usize| {
        format!(
            "{}@FAR.test",
            &hex::encode(Sha256::digest(format!("7-{n}").as_bytes()))[..12]
        )
    };
    let subjects = |store: &EmbeddedStore, f: Filters| -> Vec<String> {
        let mut s: Vec<String> = store
            .find(&ALL, &f, None, 0, None)
            .unwrap()
            .messages
            .into_iter()
            .map(|m| m.subject)
            .collect();
        s.sort();
        s
    };
    let check = |store: &EmbeddedStore| {
        let by_hash = Filters {
            sha256: Some(payload_sha(3)),
            ..Default::default()
        };
        assert_eq!(subjects(store, by_hash), ["s d3"]);
        let by_sender = Filters {
            from: Some(sender(5)),
            ..Default::default()
        };
        assert_eq!(subjects(store, by_sender), ["s d5"]);
        let by_domain = Filters {
            from: Some("@far.test".into()),
            ..Default::default()
        };
        assert_eq!(subjects(store, by_domain).len(), 20);
    };
    check(&store);
    // A message removed leaves the lookups with it.
    let gone = store
        .find_ids(
            &ALL,
            &Filters {
                subject: Some("s d5".into()),
                ..Default::default()
            },
        )
        .unwrap();
    store.remove(&gone, Vec::new()).unwrap();
    reclaim_all(&store);
    let lookups = |dir: &Path| Connection::open(dir.join(lookups::FILE)).unwrap();
    let rows_of =
        |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let senders = rows_of(&lookups(&dir), "SELECT count(*) FROM lookup_senders");
    assert_eq!(
        senders,
        2 * 19,
        "envelope and header sender of each message left"
    );
    for n in 5..6 {
        assert!(subjects(
            &store,
            Filters {
                from: Some(sender(n)),
                ..Default::default()
            }
        )
        .is_empty());
    }
    store.ingest(distinct_message(5)).unwrap();

    // The file deleted: rebuilt at the next open.
    drop_store_and_reopen(store, &dir);
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{}{f}", lookups::FILE)));
    }
    let store = EmbeddedStore::open(&dir).unwrap();
    check(&store);

    // Its last commits lost (the counters disagree): rebuilt too.
    drop_store_and_reopen(store, &dir);
    let c = lookups(&dir);
    c.execute_batch(
        "DELETE FROM lookup_hashes; DELETE FROM lookup_senders;
         UPDATE lookup_state SET value=value-1 WHERE key='seq';",
    )
    .unwrap();
    drop(c);
    let store = EmbeddedStore::open(&dir).unwrap();
    check(&store);
    let c = lookups(&dir);
    assert_eq!(rows_of(&c, "SELECT count(*) FROM lookup_senders"), 2 * 20);
}

/// What `[auth_checks]` found goes with the message: `find --auth` matches whole
/// `method=result` terms, and a verdict with a quarantine reason is quarantined in the
/// commit that stores the message — never routed, restorable to `inbound`.
#[test]
fn auth_results_are_found_and_a_forgery_is_quarantined_as_it_is_stored() {
    let dir = temp_dir("auth");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.user_add("bob@localhost", "pw").unwrap();
    let checked = |id: &str, results: &str, quarantine: Option<&str>| Incoming {
        auth: Some(AuthVerdict {
            results: results.into(),
            quarantine: quarantine.map(Into::into),
        }),
        ..incoming(id, "bob@localhost")
    };
    store
        .ingest(checked(
            "a001",
            "spf=pass dkim=pass dmarc=pass arc=none",
            None,
        ))
        .unwrap();
    store
        .ingest(checked(
            "a002",
            "spf=fail dkim=none dmarc=none arc=none",
            Some("claims to be from our own domain localhost"),
        ))
        .unwrap();
    store.ingest(incoming("a003", "bob@localhost")).unwrap();
    let by = |auth: &str| {
        let f = Filters {
            auth: Some(auth.into()),
            ..Default::default()
        };
        store.find_ids(&ALL, &f).map(|ids| ids.len())
    };
    assert_eq!(by("spf=pass").unwrap(), 1);
    assert_eq!(by("DMARC=none, spf=fail").unwrap(), 1);
    // Terms are checked, never matched as fragments of another (`dkim=n`, `c=none`).
    assert!(by("dkim=n").is_err());
    assert!(by("c=none").is_err());
    assert_eq!(by("arc=none").unwrap(), 2);
    assert!(matches!(by("spam"), Err(StoreError::Invalid(m)) if m.contains("METHOD=RESULT")));

    let held = store
        .find(&[Place::Quarantine], &Filters::default(), None, 0, None)
        .unwrap()
        .messages;
    assert_eq!(held.len(), 1);
    let detail = store.quarantine_detail(&held[0].id).unwrap();
    assert_eq!(detail.actor, super::AUTH_CHECKS_ACTOR);
    assert_eq!(detail.origin, "queue:inbound");
    assert!(detail.reason.contains("our own domain"));
    // The other two go on to bob; the forgery does not.
    store.route_inbound(100, false, &to_local, 60).unwrap();
    store.deliver_local(100, 60).unwrap();
    assert_eq!(
        store
            .mailbox_messages("bob@localhost", "INBOX")
            .unwrap()
            .len(),
        2
    );
    store.quarantine_restore(&[held[0].id.clone()]).unwrap();
    store.route_inbound(100, false, &to_local, 60).unwrap();
    store.deliver_local(100, 60).unwrap();
    assert_eq!(
        store
            .mailbox_messages("bob@localhost", "INBOX")
            .unwrap()
            .len(),
        3
    );
}
