use super::*;
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lazaret-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn incoming(id: &str, rcpt: &str) -> Incoming {
    Incoming {
        id: id.into(),
        mail_from: "a@far.test".into(),
        rcpt_to: vec![rcpt.into()],
        helo: "far.test".into(),
        peer: "127.0.0.1".into(),
        data: format!("Subject: m {id}\r\n\r\nbody {id}\r\n").into_bytes(),
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
        store.route_inbound(100, &to_local).unwrap(),
        0,
        "frozen queue makes no moves"
    );
    store
        .queue_set_state("inbound", QueueState::Active)
        .unwrap();
    assert_eq!(store.route_inbound(100, &to_local).unwrap(), 1);
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
    std::fs::remove_dir_all(&dir).unwrap();
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
    while store.route_inbound(1000, &to_local).unwrap() > 0 {}
    while store.deliver_local(1000, 60).unwrap().delivered > 0 {}
    let inbox = store.mailbox_messages("bob@localhost", "INBOX").unwrap();
    let mut uids: Vec<i64> = inbox.iter().filter_map(|m| m.uid).collect();
    uids.sort();
    assert_eq!(
        uids,
        (1..=400).collect::<Vec<_>>(),
        "UIDs are dense and unique"
    );
    std::fs::remove_dir_all(&dir).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
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
    store.route_inbound(10, &to_remote).unwrap();
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
            }),
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
    assert!(store.message_raw("0b01").is_err(), "blob removed");
    assert!(store.message_raw("d5a01").is_ok());
}

#[test]
fn outbound_disable_freeze_items_and_poison() {
    let dir = temp_dir("outbound-hold");
    let store = EmbeddedStore::open(&dir).unwrap();
    store.ingest(incoming("0b11", "x@far.test")).unwrap();
    store.ingest(incoming("0b12", "y@other.test")).unwrap();
    store.route_inbound(10, &to_remote).unwrap();
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
        store.folder_create("u@localhost", f).unwrap();
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
    assert!(store.folder_create("u@localhost", "bad//name").is_err());
}
