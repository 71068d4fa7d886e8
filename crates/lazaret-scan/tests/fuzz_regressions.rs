//! Inputs the `archives` fuzz target found to crash an expander, kept as tests.

use lazaret_scan::{expand, Limits};

fn walks(data: &[u8]) -> Result<usize, lazaret_scan::Stopped> {
    let mut members = 0;
    expand("fuzzed", data, &Limits::default(), &mut |_| members += 1).map(|()| members)
}

/// A cabinet whose file starts past the end of its folder's data: the `cab` crate
/// indexed past its block list (a panic); it is now a broken archive.
#[test]
fn cab_file_past_its_folder() {
    let data = include_bytes!("fuzz_regressions/cab_file_past_its_folder.cab");
    assert!(matches!(walks(data), Err(lazaret_scan::Stopped::Broken(_))));
}

/// An NSIS first header whose stated length ends before the header itself (inside a
/// cpio member): a slice from 540 to 512 panicked; now nothing is taken out of it.
#[test]
fn nsis_first_header_past_its_length() {
    let data = include_bytes!("fuzz_regressions/nsis_first_header_past_its_length.bin");
    let _ = walks(data);
}

/// A cabinet whose data block decompresses to fewer bytes than its header says: the
/// `cab` crate sliced past its block (a panic). Cabinets are now read by Lazaret's own
/// reader, which calls it broken.
#[test]
fn cab_block_shorter_than_its_header_says() {
    let data = include_bytes!("fuzz_regressions/cab_block_shorter_than_its_header_says.cab");
    assert!(matches!(walks(data), Err(lazaret_scan::Stopped::Broken(_))));
}
