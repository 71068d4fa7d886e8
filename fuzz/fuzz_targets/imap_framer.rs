//! IMAP command framing (lines, synchronizing and non-synchronizing literals, limits,
//! recovery after a bad line) over imap-codec, fed arbitrary bytes in arbitrary pieces,
//! with the line mode the session switches to after IDLE (until DONE) and AUTHENTICATE
//! (one response line): never a panic, never more buffered than the limits allow.
#![no_main]
use imap_codec::imap_types::command::CommandBody;
use lazaret_proto::imap::framing::{Framer, Input};
use libfuzzer_sys::fuzz_target;

const MAX_LITERAL: u32 = 4096;
const MAX_LINE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let mut framer = Framer::new(MAX_LITERAL, MAX_LINE);
    // Lines the session reads whole before framing commands again: IDLE waits for
    // DONE, AUTHENTICATE for one response.
    let (mut idling, mut auth_lines) = (false, 0);
    for chunk in stream.chunks(usize::from(knobs) + 1) {
        framer.push(chunk);
        loop {
            if idling || auth_lines > 0 {
                match framer.take_line() {
                    Some(line) if idling => idling = !line.eq_ignore_ascii_case(b"DONE"),
                    Some(_) => auth_lines -= 1,
                    // The session closes a client that floods these lines.
                    None if framer.buffered() > MAX_LINE => return,
                    None => break,
                }
                continue;
            }
            match framer.next_input() {
                Input::Incomplete => break,
                Input::Reject { close: true, .. } => return,
                Input::Command(c) => match c.body {
                    CommandBody::Idle => idling = true,
                    CommandBody::Authenticate { initial_response: None, .. } => auth_lines = 1,
                    _ => {}
                },
                _ => {}
            }
        }
        assert!(
            framer.buffered() <= MAX_LINE + MAX_LITERAL as usize + 2 * stream.len().min(1 << 16),
            "the framer buffers without bound"
        );
    }
});
