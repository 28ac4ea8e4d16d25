//! `logveil_privacy::wire::decode` on arbitrary input: no panic, and whatever decodes
//! re-encodes to a batch that decodes to the same. The first byte picks what the rest is:
//! a whole batch (0), a body the harness frames and compresses (1), or the rest of a body
//! after a fixed valid header (2: string table, event count and columns).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use logveil_privacy::wire::{self, BatchHeader, WIRE_MAGIC, WIRE_VERSION};

/// The body of an empty batch without its string table and event count (two zero `u32`s):
/// the header length and JSON.
static HEADER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let empty = wire::encode(
        &BatchHeader {
            partitions: 1,
            ..BatchHeader::default()
        },
        &[],
    );
    let body = zstd::stream::decode_all(&empty[5..]).expect("an encoded batch decompresses");
    body[..body.len() - 8].to_vec()
});

fn framed(body: &[u8]) -> Vec<u8> {
    let mut batch = WIRE_MAGIC.to_vec();
    batch.push(WIRE_VERSION);
    batch.extend_from_slice(&zstd::bulk::compress(body, 1).expect("zstd compresses"));
    batch
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let batch = match mode % 3 {
        0 => rest.to_vec(),
        1 => framed(rest),
        _ => framed(&[&HEADER[..], rest].concat()),
    };
    if let Ok(decoded) = wire::decode(&batch) {
        let again = wire::encode(&decoded.header, &decoded.events);
        assert_eq!(wire::decode(&again).as_ref(), Ok(&decoded));
    }
});
