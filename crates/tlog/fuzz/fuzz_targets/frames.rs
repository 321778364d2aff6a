//! Fuzz target: arbitrary bytes as the client side of a tlog connection after the
//! handshake. Nothing may panic, hang or allocate past the frame limits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = strata_tlog::frame::decode_frames(data);
    let _ = strata_tlog::message::HandshakeRequest::decode(data);
    let _ = strata_tlog::frame::message_len(data);
});
