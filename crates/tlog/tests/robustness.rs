//! The frame decoder on hostile input: random bytes, and valid frames with bytes flipped,
//! cut or spliced. The same entry point is the libFuzzer target (`scripts/fuzz-tlog`); this
//! is its smoke run in CI.

use proptest::prelude::*;
use strata_tlog::frame::decode_frames;
use strata_tlog::message::{Command, MessageType};

use crate::harness::block;

fn valid_frames() -> Vec<u8> {
    let mut bytes = vec![MessageType::Block as u8];
    bytes.extend_from_slice(&block(1).encode());
    bytes.push(MessageType::ForceFlushAtSeq as u8);
    bytes.extend_from_slice(&Command { kind: 2, sequence: 1 }.encode());
    bytes
}

#[test]
fn valid_frames_decode() {
    assert_eq!(decode_frames(&valid_frames()).ok(), Some(2));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_frames(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = valid_frames();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let end = cut.index(bytes.len() + 1);
        let _ = decode_frames(&bytes[..end]);
    }
}
