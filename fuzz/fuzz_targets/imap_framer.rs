//! IMAP command framing (lines, synchronizing and non-synchronizing literals, limits,
//! recovery after a bad line) over imap-codec, fed arbitrary bytes in arbitrary pieces:
//! never a panic, never more buffered than the limits allow.
#![no_main]
use lazaret_proto::imap::framing::{Framer, Input};
use libfuzzer_sys::fuzz_target;

const MAX_LITERAL: u32 = 4096;
const MAX_LINE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let mut framer = Framer::new(MAX_LITERAL, MAX_LINE);
    for chunk in stream.chunks(usize::from(knobs) + 1) {
        framer.push(chunk);
        loop {
            match framer.next_input() {
                Input::Incomplete => break,
                Input::Reject { close: true, .. } => return,
                _ => {}
            }
        }
        assert!(
            framer.buffered() <= MAX_LINE + MAX_LITERAL as usize + 2 * stream.len().min(1 << 16),
            "the framer buffers without bound"
        );
    }
});
