//! What an nsqd (or anything at its address) sends: a frame type and its data, as the
//! NSQ client decodes them. Malformed frames are errors, never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use superhero::broker::nsq::protocol::{Frame, expect_ok};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    // Mostly the three frame types there are, now and then another.
    let frame_type = u32::from_be_bytes(*head) % 4;
    if let Ok(frame) = Frame::decode(frame_type, rest.to_vec()) {
        let _ = frame.is_heartbeat();
        let _ = expect_ok(frame);
    }
});
