//! Each container built in memory (or by hand where no writer exists) and walked:
//! members, names, limits, and cut-short input.

use super::*;
use crate::test_support::zip_of;
use std::io::Write;

fn tar_gz_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = ::tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = ::tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn walk(data: &[u8], limits: Limits) -> (Vec<String>, Result<(), Stopped>) {
    let mut paths = Vec::new();
    let r = expand("a", data, &limits, &mut |m| paths.push(m.path));
    (paths, r)
}

#[test]
fn nested_zip_and_tar_gz() {
    let inner = tar_gz_of(&[("dir/worm.exe", b"MZ payload"), ("readme.txt", b"hi")]);
    let outer = zip_of(&[("notes.txt", b"x"), ("inner.tgz", &inner)]);
    let (paths, r) = walk(&outer, Limits::default());
    r.unwrap();
    assert_eq!(
        paths,
        [
            "a/notes.txt",
            "a/inner.tgz/dir/worm.exe",
            "a/inner.tgz/readme.txt",
            "a/inner.tgz"
        ]
    );
}

#[test]
fn bomb_and_depth_and_garbage_give_reasons() {
    let zeros = vec![0u8; 10 << 20];
    let bomb = zip_of(&[("zeros.bin", &zeros)]);
    let (_, r) = walk(&bomb, Limits::default());
    assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("expands")));

    let mut nested = zip_of(&[("x.txt", b"x")]);
    for _ in 0..6 {
        nested = zip_of(&[("n.zip", &nested)]);
    }
    let (_, r) = walk(&nested, Limits::default());
    assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("nested")));

    let mut truncated = zip_of(&[("x.txt", b"some text to store")]);
    truncated.truncate(truncated.len() / 2);
    let (_, r) = walk(&truncated, Limits::default());
    assert!(matches!(r, Err(Stopped::Broken(_))));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &[7u8; 4000]).unwrap();
    let mut gz = gz.finish().unwrap();
    gz.truncate(gz.len() / 2);
    let (paths, r) = walk(&gz, Limits::default());
    assert!(paths.is_empty() && matches!(r, Err(Stopped::Broken(_))));

    // Data that only shares gzip's two magic bytes is not an archive, not broken.
    assert!(!is_archive(b"\x1f\x8bnot gzip at all, random bytes"));
    assert!(!is_archive(b"\x1f\x8b\x08\xffnot gzip: reserved flags set"));
}

/// A member as (path, bytes, is a file).
type Found = (String, Vec<u8>, bool);

/// Every member, and how the walk ended.
fn members(data: &[u8]) -> (Vec<Found>, Result<(), Stopped>) {
    let mut out = Vec::new();
    let r = expand("a", data, &Limits::default(), &mut |m| {
        out.push((m.path, m.data, m.is_file))
    });
    (out, r)
}

fn has_file(data: &[u8], path: &str, content: &[u8]) {
    let (found, r) = members(data);
    r.unwrap();
    assert!(
        found
            .iter()
            .any(|(p, d, f)| p == path && d == content && *f),
        "{path} not among {:?}",
        found
            .iter()
            .map(|(p, d, _)| (p, d.len()))
            .collect::<Vec<_>>()
    );
}

const PAYLOAD: &[u8] = b"MZ\x90\x00 pretend program \x00\x01\x02\xff and some text to find";

/// Every prefix of `data` walks to an end without a panic; a few lengths are enough
/// for large inputs.
fn survives_every_cut(data: &[u8]) {
    let cuts = if data.len() > 100_000 { 64 } else { 512 };
    let step = (data.len() / cuts).max(1);
    for len in (0..data.len()).step_by(step) {
        let _ = expand("cut", &data[..len], &Limits::default(), &mut |_| {});
    }
}

#[test]
fn bzip2_and_xz_hold_one_file_named_after_them() {
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(PAYLOAD).unwrap();
    let bz = bz.finish().unwrap();
    assert!(is_archive(&bz));
    let (found, r) = {
        let mut out = Vec::new();
        let r = expand("worm.exe.bz2", &bz, &Limits::default(), &mut |m| {
            out.push((m.path, m.data))
        });
        (out, r)
    };
    r.unwrap();
    assert_eq!(
        found,
        [("worm.exe.bz2/worm.exe".to_string(), PAYLOAD.to_vec())]
    );
    survives_every_cut(&bz);

    let mut bomb = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    bomb.write_all(&vec![0u8; 20 << 20]).unwrap();
    let (_, r) = members(&bomb.finish().unwrap());
    assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("expands")));
}

/// cpio in its four forms, written field by field as cpio(1) does.
fn cpio_of(form: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entries: Vec<(&str, &[u8], u32)> =
        files.iter().map(|(n, d)| (*n, *d, 0o100644)).collect();
    entries.push(("TRAILER!!!", b"", 0));
    for (name, data, mode) in entries {
        let namesize = name.len() + 1;
        match form {
            "odc" => {
                out.extend_from_slice(
                    format!(
                        "070707{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:011o}{:06o}{:011o}",
                        0,
                        1,
                        mode,
                        0,
                        0,
                        1,
                        0,
                        0,
                        namesize,
                        data.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(name.as_bytes());
                out.push(0);
                out.extend_from_slice(data);
            }
            "newc" => {
                out.extend_from_slice(b"070701");
                for v in [
                    1,
                    mode as usize,
                    0,
                    0,
                    1,
                    0,
                    data.len(),
                    0,
                    0,
                    0,
                    0,
                    namesize,
                    0,
                ] {
                    out.extend_from_slice(format!("{v:08x}").as_bytes());
                }
                out.extend_from_slice(name.as_bytes());
                out.push(0);
                while out.len() % 4 != 0 {
                    out.push(0);
                }
                out.extend_from_slice(data);
                while out.len() % 4 != 0 {
                    out.push(0);
                }
            }
            _ => {
                let big = form == "bin-be";
                let words = [
                    0o070707u16,
                    0,
                    1,
                    mode as u16,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    namesize as u16,
                    (data.len() >> 16) as u16,
                    data.len() as u16,
                ];
                for w in words {
                    out.extend_from_slice(&if big {
                        w.to_be_bytes()
                    } else {
                        w.to_le_bytes()
                    });
                }
                out.extend_from_slice(name.as_bytes());
                out.push(0);
                if namesize % 2 == 1 {
                    out.push(0);
                }
                out.extend_from_slice(data);
                if data.len() % 2 == 1 {
                    out.push(0);
                }
            }
        }
    }
    out
}

#[test]
fn cpio_in_all_four_forms() {
    for form in ["odc", "newc", "bin-le", "bin-be"] {
        let archive = cpio_of(form, &[("./dir/worm.exe", PAYLOAD), ("odd", b"x")]);
        assert!(is_archive(&archive), "{form}");
        has_file(&archive, "a/dir/worm.exe", PAYLOAD);
        has_file(&archive, "a/odd", b"x");
        survives_every_cut(&archive);
    }
    // Two bytes of binary magic alone are not an archive.
    assert!(!is_archive(
        b"\xc7\x71 random bytes that are no cpio header at all"
    ));
    // Many members stop at the file limit.
    let many: Vec<(String, Vec<u8>)> = (0..1100).map(|n| (format!("f{n}"), vec![1])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let (_, r) = members(&cpio_of("newc", &refs));
    assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("files")));
}

#[test]
fn szdd_expands_literals_and_back_references() {
    // "abc" as literals, then 6 bytes from where "abc" went in the window (4080).
    let mut file = b"SZDD\x88\xf0\x27\x33A\x45".to_vec();
    file.extend_from_slice(&9u32.to_le_bytes());
    file.extend_from_slice(&[0x07, b'a', b'b', b'c', 0xf0, 0xf3]);
    assert!(is_archive(&file));
    let mut out = Vec::new();
    expand("SETUP.EX_", &file, &Limits::default(), &mut |m| {
        out.push((m.path, m.data))
    })
    .unwrap();
    assert_eq!(
        out,
        [("SETUP.EX_/SETUP.EXE".to_string(), b"abcabcabc".to_vec())]
    );
    survives_every_cut(&file);
}

fn tnef_attribute(out: &mut Vec<u8>, level: u8, id: u32, value: &[u8]) {
    out.push(level);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
    let sum = value.iter().map(|&b| u32::from(b)).sum::<u32>() as u16;
    out.extend_from_slice(&sum.to_le_bytes());
}

#[test]
fn tnef_attachments_with_their_titles() {
    let mut file = 0x223e_9f78u32.to_le_bytes().to_vec();
    file.extend_from_slice(&[1, 0]);
    tnef_attribute(&mut file, 1, 0x0008_9006, &[1, 0, 0, 0]);
    for (title, data) in [("invoice.exe", PAYLOAD), ("notes.txt", b"hello" as &[u8])] {
        tnef_attribute(&mut file, 2, 0x0006_9002, &[0; 14]);
        tnef_attribute(&mut file, 2, 0x0001_8010, format!("{title}\0").as_bytes());
        tnef_attribute(&mut file, 2, 0x0006_800f, data);
    }
    has_file(&file, "a/invoice.exe", PAYLOAD);
    has_file(&file, "a/notes.txt", b"hello");
    survives_every_cut(&file);
}

fn uuencoded(name: &str, data: &[u8]) -> String {
    let char_of = |v: u8| if v == 0 { '`' } else { (v + b' ') as char };
    let mut out = format!("begin 644 {name}\n");
    for line in data.chunks(45) {
        out.push(char_of(line.len() as u8));
        for group in line.chunks(3) {
            let b = |i: usize| u32::from(*group.get(i).unwrap_or(&0));
            let n = (b(0) << 16) | (b(1) << 8) | b(2);
            for shift in [18, 12, 6, 0] {
                out.push(char_of(((n >> shift) & 0x3f) as u8));
            }
        }
        out.push('\n');
    }
    out.push_str("`\nend\n");
    out
}

#[test]
fn uuencode_blocks_in_text() {
    let payload: Vec<u8> = (0..200u8).collect();
    let text = format!(
        "Hi,\nthe file you asked for:\n\n{}\nand another\n{}-- \nsig\n",
        uuencoded("C:\\temp\\report.exe", &payload),
        uuencoded("b.bin", PAYLOAD)
    );
    assert!(holds_files(text.as_bytes()) && !is_archive(text.as_bytes()));
    has_file(text.as_bytes(), "a/report.exe", &payload);
    has_file(text.as_bytes(), "a/b.bin", PAYLOAD);
    assert!(!holds_files(b"we begin 644 tests tomorrow"));
    survives_every_cut(text.as_bytes());
}

fn binhex_of(name: &str, data: &[u8]) -> String {
    let alphabet = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
    let mut raw = vec![name.len() as u8];
    raw.extend_from_slice(name.as_bytes());
    raw.push(0);
    raw.extend_from_slice(b"APPLmoof\0\0");
    raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
    raw.extend_from_slice(&0u32.to_be_bytes());
    raw.extend_from_slice(&[0, 0]);
    for &b in data {
        // 0x90 is the run marker: a literal one is written as 0x90 0x00.
        raw.push(b);
        if b == 0x90 {
            raw.push(0);
        }
    }
    raw.extend_from_slice(&[0, 0, 0, 0]);
    let mut text = String::from("(This file must be converted with BinHex 4.0)\n:");
    for group in raw.chunks(3) {
        let b = |i: usize| u32::from(*group.get(i).unwrap_or(&0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for shift in [18, 12, 6, 0].iter().take(group.len() + 1) {
            text.push(alphabet[((n >> shift) & 0x3f) as usize] as char);
        }
    }
    text.push_str(":\n");
    text
}

#[test]
fn binhex_data_fork() {
    let mut payload = PAYLOAD.to_vec();
    payload.extend_from_slice(&[0x90, 7, 7, 7, 7]);
    let text = binhex_of("clam.exe", &payload);
    has_file(text.as_bytes(), "a/clam.exe", &payload);
    survives_every_cut(text.as_bytes());
}

#[test]
fn html_data_uris_and_script_strings() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let big: Vec<u8> = (0..=255u8).cycle().take(600).collect();
    let html = format!(
        "<html><body><a href=\"data:application/octet-stream;base64,{}\">x</a>\
         <img src='data:text/plain,hello%20world'>\
         <p>metadata: text/plain, not a URI</p>\
         <script>var blob = \"{}\";</script></body></html>",
        b64.encode(PAYLOAD),
        b64.encode(&big)
    );
    assert!(holds_files(html.as_bytes()));
    has_file(html.as_bytes(), "a/data-uri-1", PAYLOAD);
    has_file(html.as_bytes(), "a/data-uri-2", b"hello world");
    has_file(html.as_bytes(), "a/script-base64-1", &big);
    let (found, _) = members(html.as_bytes());
    assert_eq!(found.len(), 3);
    survives_every_cut(html.as_bytes());

    // URIs inside URIs, a megabyte of them: read once (linear), not once per start.
    let nested = "=data:a/b,".repeat(100_000);
    // (Each decoded URI holds the rest again, down to the depth limit.)
    let (found, r) = members(nested.as_bytes());
    assert!(found.len() <= Limits::default().max_depth);
    assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("nested")));
}

/// An OLE "Package" object's native data for a file.
fn package_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![2, 0];
    for s in [name, &format!("C:\\Users\\x\\{name}")] {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(&[0, 0, 3, 0]);
    let temp = format!("C:\\Temp\\{name}\0");
    out.extend_from_slice(&(temp.len() as u32).to_le_bytes());
    out.extend_from_slice(temp.as_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn rtf_package_objects() {
    let native = package_of("run.exe", PAYLOAD);
    let mut object = Vec::new();
    object.extend_from_slice(&0x0501u32.to_le_bytes());
    object.extend_from_slice(&2u32.to_le_bytes());
    for name in ["Package\0", "\0", "\0"] {
        object.extend_from_slice(&(name.len() as u32).to_le_bytes());
        object.extend_from_slice(name.as_bytes());
    }
    object.extend_from_slice(&(native.len() as u32).to_le_bytes());
    object.extend_from_slice(&native);
    let hex: String = object.iter().map(|b| format!("{b:02x}")).collect();
    let lines: Vec<&str> = hex
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let rtf = format!(
        "{{\\rtf1\\ansi {{\\object\\objemb{{\\*\\objclass Package}}{{\\*\\objdata\n{}\n}}}}}}",
        lines.join("\r\n")
    );
    assert!(is_archive(rtf.as_bytes()));
    has_file(rtf.as_bytes(), "a/run.exe", PAYLOAD);
    survives_every_cut(rtf.as_bytes());
}

#[test]
fn pdf_streams_and_embedded_files() {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(PAYLOAD).unwrap();
    let flate = z.finish().unwrap();
    let mut pdf = b"%PDF-1.4\n1 0 obj\n<< /Length 20 >>\nstream\nBT /F1 12 Tf (Hi) Tj ET\nendstream\nendobj\n".to_vec();
    pdf.extend_from_slice(
        format!(
            "2 0 obj\n<< /Type /EmbeddedFile /Filter /FlateDecode /Length {} >>\nstream\r\n",
            flate.len()
        )
        .as_bytes(),
    );
    pdf.extend_from_slice(&flate);
    pdf.extend_from_slice(b"\r\nendstream\nendobj\n3 0 obj\n<< /Filter [/ASCIIHexDecode] >>\nstream\n68656c6c6f>\nendstream\nendobj\n%%EOF\n");
    assert!(is_archive(&pdf));
    has_file(&pdf, "a/embedded2", PAYLOAD);
    let (found, _) = members(&pdf);
    assert!(found
        .iter()
        .any(|(p, d, f)| p == "a/stream3" && d == b"hello" && !f));
    assert!(found
        .iter()
        .any(|(p, d, f)| p == "a/stream1" && d == b"BT /F1 12 Tf (Hi) Tj ET" && !f));
    // The index asks for files only.
    let mut files = Vec::new();
    let limits = Limits {
        files_only: true,
        ..Limits::default()
    };
    expand("a", &pdf, &limits, &mut |m| files.push(m.path)).unwrap();
    assert_eq!(files, ["a/embedded2"]);
    survives_every_cut(&pdf);

    // A flate bomb in a stream stops at the ratio limit.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; 20 << 20]).unwrap();
    let mut bomb = b"%PDF-1.4\n1 0 obj\n<< /Filter /FlateDecode >>\nstream\n".to_vec();
    bomb.extend_from_slice(&z.finish().unwrap());
    bomb.extend_from_slice(b"\nendstream\nendobj\n");
    let (_, r) = members(&bomb);
    assert!(matches!(r, Err(Stopped::LimitExceeded(_))));
}

/// A VBA module stream: the compressed container, every chunk written as flag bytes
/// of zero over eight literals (valid MS-OVBA, as a compressor may emit).
fn vba_module_of(source: &[u8]) -> Vec<u8> {
    let mut out = b"performance cache bytes".to_vec();
    out.push(1);
    for chunk in source.chunks(4096) {
        let mut body = Vec::new();
        for eight in chunk.chunks(8) {
            body.push(0);
            body.extend_from_slice(eight);
        }
        let header = 0xb000u16 | (body.len() as u16 + 2 - 3);
        out.extend_from_slice(&header.to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

#[test]
fn ole2_streams_packages_and_macros() {
    use std::io::Cursor;
    let source = b"Attribute VB_Name = \"ThisDocument\"\r\nSub AutoOpen()\r\n Shell \"cmd /c evil\"\r\nEnd Sub\r\n";
    let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    file.create_storage_all("/ObjectPool/_1").unwrap();
    let mut native = (0u32).to_le_bytes().to_vec();
    native.extend_from_slice(&package_of("invoice.exe", PAYLOAD));
    file.create_stream("/ObjectPool/_1/\u{1}Ole10Native")
        .unwrap()
        .write_all(&native)
        .unwrap();
    file.create_storage_all("/Macros/VBA").unwrap();
    file.create_stream("/Macros/VBA/ThisDocument")
        .unwrap()
        .write_all(&vba_module_of(source))
        .unwrap();
    file.create_stream("/WordDocument")
        .unwrap()
        .write_all(&[7u8; 5000])
        .unwrap();
    file.flush().unwrap();
    let doc = file.into_inner().into_inner();
    assert!(is_archive(&doc));
    has_file(&doc, "a/invoice.exe", PAYLOAD);
    let (found, _) = members(&doc);
    assert!(found
        .iter()
        .any(|(p, d, f)| p == "a/Macros/VBA/ThisDocument.vba" && d == source && !f));
    assert!(found
        .iter()
        .any(|(p, d, _)| p == "a/WordDocument" && d.len() == 5000));
    survives_every_cut(&doc);
}

#[test]
fn cab_members() {
    use std::io::Cursor;
    // Text over several 32 KB blocks, in an MSZIP folder and a stored one.
    let long: Vec<u8> = (0..120_000u32)
        .map(|n| b"cabinet text "[n as usize % 13] ^ (n / 5000) as u8)
        .collect();
    let mut builder = ::cab::CabinetBuilder::new();
    let folder = builder.add_folder(::cab::CompressionType::MsZip);
    folder.add_file("dir\\setup.exe");
    folder.add_file("long.txt");
    builder
        .add_folder(::cab::CompressionType::None)
        .add_file("readme.txt");
    let mut writer = builder.build(Cursor::new(Vec::new())).unwrap();
    let contents: [&[u8]; 3] = [PAYLOAD, &long, b"read me"];
    let mut n = 0;
    while let Some(mut file) = writer.next_file().unwrap() {
        file.write_all(contents[n]).unwrap();
        n += 1;
    }
    let cabinet = writer.finish().unwrap().into_inner();
    has_file(&cabinet, "a/dir/setup.exe", PAYLOAD);
    has_file(&cabinet, "a/long.txt", &long);
    has_file(&cabinet, "a/readme.txt", b"read me");
    survives_every_cut(&cabinet);
}

/// Containers inside containers of other kinds are opened in turn, and the depth
/// limit holds across kinds.
#[test]
fn nesting_across_kinds() {
    let inner = cpio_of("newc", &[("worm.exe", PAYLOAD)]);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&inner).unwrap();
    let text = uuencoded("files.cpio.bz2", &bz.finish().unwrap());
    let outer = zip_of(&[("mail.txt", text.as_bytes())]);
    has_file(
        &outer,
        "a/mail.txt/files.cpio.bz2/files.cpio/worm.exe",
        PAYLOAD,
    );

    let mut nested = PAYLOAD.to_vec();
    for n in 0..6 {
        nested = cpio_of("odc", &[(&format!("level{n}"), &nested)]);
    }
    let (_, r) = members(&nested);
    assert!(matches!(r, Err(Stopped::LimitExceeded(ref m)) if m.contains("nested")));
}

/// The files Debian's clamav-testfiles wrap clam.exe in, when installed: each one
/// hands out clam.exe's exact bytes, and every cut of each ends without a panic.
#[test]
fn clamav_testfiles_hand_out_clam_exe() {
    let dir = std::path::Path::new("/usr/share/clamav-testfiles");
    let Ok(clam) = std::fs::read(dir.join("clam.exe")) else {
        eprintln!("clamav-testfiles not installed: skipped");
        return;
    };
    let wrapped = [
        "clam.7z",
        "clam.arj",
        "clam.bin-be.cpio",
        "clam.bin-le.cpio",
        "clam.bz2.zip",
        "clam.cab",
        "clam.chm",
        "clam.d64.zip",
        "clam.exe.binhex",
        "clam.exe.bz2",
        "clam.exe.html",
        "clam.exe.rtf",
        "clam.exe.szdd",
        "clam.impl.zip",
        "clam.newc.cpio",
        "clam.odc.cpio",
        "clam.ole.doc",
        "clam.pdf",
        "clam.ppt",
        "clam.sis",
        "clam.tnef",
        "clam.zip",
        "clam_IScab_ext.exe",
    ];
    for name in wrapped {
        let data = std::fs::read(dir.join(name)).unwrap();
        let (found, r) = members(&data);
        assert!(r.is_ok(), "{name}: {r:?}");
        assert!(
            found.iter().any(|(_, d, _)| *d == clam),
            "{name}: clam.exe not found"
        );
        survives_every_cut(&data);
    }
}

#[test]
fn nsis_blocks_stored_and_deflated() {
    let mut deflated =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflated.write_all(PAYLOAD).unwrap();
    let deflated = deflated.finish().unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&6u32.to_le_bytes());
    body.extend_from_slice(b"script");
    body.extend_from_slice(&(deflated.len() as u32 | 0x8000_0000).to_le_bytes());
    body.extend_from_slice(&deflated);
    let mut installer = b"MZ".to_vec();
    installer.resize(512, 0);
    installer.extend_from_slice(&0u32.to_le_bytes());
    installer.extend_from_slice(b"\xef\xbe\xad\xdeNullsoftInst");
    installer.extend_from_slice(&6u32.to_le_bytes());
    installer.extend_from_slice(&(28 + body.len() as u32).to_le_bytes());
    installer.extend_from_slice(&body);
    assert!(is_archive(&installer));
    has_file(&installer, "a/file1", PAYLOAD);
    survives_every_cut(&installer);
}

#[test]
fn lzma_alone_and_its_look_alikes() {
    // PAYLOAD three times, by Python's lzma.compress(format=FORMAT_ALONE).
    let lzma = hex::decode(
        "5d00008000ffffffffffffffff0026968e7001014e0a732e949dd52c4dff25fe2acc1cb59b01c5d066\
         34a8de759cc4408afe2473291457338e92a93c8dc3c1a030ffffab9b2000",
    )
    .unwrap();
    assert!(is_archive(&lzma));
    let mut out = Vec::new();
    expand("x.exe.lzma", &lzma, &Limits::default(), &mut |m| {
        out.push((m.path, m.data))
    })
    .unwrap();
    assert_eq!(out, [("x.exe.lzma/x.exe".to_string(), PAYLOAD.repeat(3))]);
    survives_every_cut(&lzma);
    // The properties byte alone is not enough: the dictionary must be a size encoders
    // write.
    let mut odd = lzma.clone();
    odd[1..5].copy_from_slice(&12_345u32.to_le_bytes());
    assert!(!is_archive(&odd));
}

#[test]
fn yenc_in_text() {
    let payload: Vec<u8> = (0..=255u8).chain(PAYLOAD.iter().copied()).collect();
    let mut text = format!(
        "hello\r\n=ybegin line=128 size={} name=my file.exe\r\n",
        payload.len()
    );
    let mut line = String::new();
    for &b in &payload {
        let c = b.wrapping_add(42);
        if matches!(c, 0 | b'\n' | b'\r' | b'=') {
            line.push('=');
            line.push(c.wrapping_add(64) as char);
        } else {
            line.push(c as char);
        }
        if line.len() >= 128 {
            text.push_str(&line);
            text.push_str("\r\n");
            line.clear();
        }
    }
    text.push_str(&line);
    text.push_str(&format!("\r\n=yend size={}\r\nbye\r\n", payload.len()));
    // Bytes over 127 became chars: write them as Latin-1 bytes, as yEnc does.
    let bytes: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    assert!(holds_files(&bytes));
    has_file(&bytes, "a/my file.exe", &payload);
    survives_every_cut(&bytes);
}

#[test]
fn pdf_lzw_streams() {
    let lzw = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
        .encode(&PAYLOAD.repeat(20))
        .unwrap();
    let mut pdf =
        b"%PDF-1.2\n4 0 obj\n<< /Type /EmbeddedFile /Filter /LZWDecode >>\nstream\n".to_vec();
    pdf.extend_from_slice(&lzw);
    pdf.extend_from_slice(b"\nendstream\nendobj\n");
    has_file(&pdf, "a/embedded1", &PAYLOAD.repeat(20));
    survives_every_cut(&pdf);
}
