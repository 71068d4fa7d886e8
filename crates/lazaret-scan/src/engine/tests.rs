use super::*;
use crate::test_support::zip_of;
use std::io::Write;

fn tar_gz_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, data).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&builder.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    // Enough base64 for tests, in 76-column lines.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| acc << 8 | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn mail_with(name: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "From: a@x.test\r\nTo: b@y.test\r\nSubject: Your invoice\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nPlease open the attached invoice today.\r\n--b\r\nContent-Type: application/octet-stream; name={name}\r\nContent-Disposition: attachment; filename={name}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        b64(data)
    )
    .into_bytes()
}

fn engine(files: &[(&str, &str)]) -> Engine {
    let parsed = files
        .iter()
        .map(|(n, t)| signatures::parse_file(n, t.as_bytes()).unwrap())
        .collect();
    Engine::new(parsed, ScanLimits::default())
}

#[test]
fn eicar_in_every_wrapping() {
    let e = engine(&[]);
    let nested = zip_of(&[("inner.zip", &zip_of(&[("eicar.com", EICAR)]))]);
    let rfc822 = mail_with("fwd.eml", &mail_with("eicar.com", EICAR));
    for (what, data, mail) in [
        ("plain", EICAR.to_vec(), false),
        ("zip", zip_of(&[("eicar.com", EICAR)]), false),
        ("nested zip", nested.clone(), false),
        ("tar.gz", tar_gz_of("dir/eicar.com", EICAR), false),
        ("mail base64", mail_with("eicar.com", EICAR), true),
        ("mail zip", mail_with("e.zip", &nested), true),
        ("mail in mail", rfc822, true),
    ] {
        let r = if mail {
            e.scan_message(&data)
        } else {
            e.scan_file("f", &data)
        };
        assert_eq!(r.names(), [EICAR_NAME], "{what}: {r:?}");
    }
    let r = e.scan_file("f.zip", &nested);
    assert_eq!(r.detections[0].object, "inner.zip/eicar.com");
    // Not at offset 0: not the test file.
    assert!(!e
        .scan_file("f", &[b"xx".as_slice(), EICAR].concat())
        .infected());
    assert!(!e.scan_message(&mail_with("clean.txt", b"hello")).infected());
}

#[test]
fn hashes_bodies_and_rules() {
    let payload = b"MZ this is the worm payload \x00\x01\x02 end".to_vec();
    let md5 = hex::encode(Md5::digest(&payload));
    let sha = hex::encode(Sha256::digest(&payload));
    let e = engine(&[
        ("a.hdb", &format!("{md5}:{}:Worm.Md5\n{md5}:1:Worm.WrongSize\n", payload.len())),
        ("b.hsb", &format!("{sha}:*:Worm.Sha:73\n")),
        ("c.ndb", "Worm.Body:1:*:776f726d{2-6}6c6f6164\nWorm.Never:0:*:6e657665722d73656e\n"),
        ("d.rules", "Worm.Name filename *.pdf.exe\nWorm.Subject header Subject: (?i)^your invoice$\nWorm.Lure body open the attached\n"),
    ]);
    assert_eq!(
        e.scan_file("x.bin", &payload).names(),
        ["Worm.Body", "Worm.Md5", "Worm.Sha"]
    );
    let mail = mail_with("invoice.pdf.exe", &zip_of(&[("w.exe", &payload)]));
    assert_eq!(
        e.scan_message(&mail).names(),
        [
            "Worm.Body",
            "Worm.Lure",
            "Worm.Md5",
            "Worm.Name",
            "Worm.Sha",
            "Worm.Subject"
        ]
    );
    let found = e.scan_message(&mail);
    assert!(found
        .detections
        .iter()
        .any(|d| d.name == "Worm.Md5" && d.object == "invoice.pdf.exe/w.exe"));
    assert_ne!(e.version(), engine(&[]).version());
    // Hash signatures do not change the content version: no blob reads on rescan.
    let only_bodies = engine(&[
        ("c.ndb", "Worm.Body:1:*:776f726d{2-6}6c6f6164\nWorm.Never:0:*:6e657665722d73656e\n"),
        ("d.rules", "Worm.Name filename *.pdf.exe\nWorm.Subject header Subject: (?i)^your invoice$\nWorm.Lure body open the attached\n"),
    ]);
    assert_eq!(e.content_version(), only_bodies.content_version());
    assert_eq!(e.hash_signatures().len(), 3);
}

#[test]
fn bombs_and_broken_archives_give_verdicts() {
    let e = engine(&[]);
    let bomb = zip_of(&[("zeros.bin", &vec![0u8; 20 << 20])]);
    assert_eq!(e.scan_file("bomb.zip", &bomb).names(), [LIMITS_EXCEEDED]);
    assert_eq!(
        e.scan_message(&mail_with("bomb.zip", &bomb)).names(),
        [LIMITS_EXCEEDED]
    );
    let mut truncated = zip_of(&[("eicar.com", EICAR), ("more.txt", b"more text")]);
    truncated.truncate(truncated.len() - 30);
    assert!(e
        .scan_file("t.zip", &truncated)
        .names()
        .contains(&BROKEN_ARCHIVE.to_string()));
    let mut deep = zip_of(&[("x.txt", b"x")]);
    for _ in 0..7 {
        deep = zip_of(&[("n.zip", &deep)]);
    }
    assert_eq!(e.scan_file("deep.zip", &deep).names(), [LIMITS_EXCEEDED]);
    let lenient = Engine::new(
        Vec::new(),
        ScanLimits {
            flag: false,
            ..ScanLimits::default()
        },
    );
    let r = lenient.scan_file("bomb.zip", &bomb);
    assert!(!r.infected() && r.notes.len() == 1);
    assert_ne!(lenient.content_version(), e.content_version());
}

#[test]
fn garbage_never_panics() {
    let e = engine(&[("c.ndb", "W.A:0:*:4142*4344\n")]);
    let mut seed = 7u64;
    for len in [0usize, 1, 2, 100, 5000] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 33) as u8
            })
            .collect();
        e.scan_file("g", &data);
        e.scan_message(&data);
        e.scan_file("g", &[b"PK\x03\x04".as_slice(), &data].concat());
        e.scan_message(&[b"From: a\r\nSubject: b\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n".as_slice(), &data].concat());
    }
}
