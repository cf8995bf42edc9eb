//! The binary context frame (Kafka payload prefix, Thrift message prefix) from arbitrary bytes.
//!
//! An input that is not a frame comes back whole and untouched; one that is decodes to a
//! context whose encoding is exactly the frame's bytes (the format has one encoding per
//! context). With the first byte's low bit set, the target writes a correct checksum over the
//! announced frame first, so the fuzzer reaches the checks that come after it.
#![no_main]

mod checksum;

use checksum::fix_checksum;
use libfuzzer_sys::fuzz_target;
use tdist_core::binary;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = rest.to_vec();
    if mode & 1 == 1 {
        fix_checksum(&mut input);
    }
    let announced = binary::frame_len(&input);
    match binary::split(&input) {
        (None, whole) => {
            assert_eq!(whole.as_ptr(), input.as_ptr());
            assert_eq!(whole.len(), input.len());
            assert!(binary::decode(&input).is_err());
        }
        (Some(ctx), payload) => {
            let len = announced.expect("a decoded frame announced its length");
            assert!((binary::MIN_LEN..=binary::MAX_LEN).contains(&len));
            assert_eq!(payload, &input[len..]);
            assert_eq!(binary::encode(&ctx).as_bytes(), &input[..len]);
            let mut appended = b"x".to_vec();
            binary::encode_into(&ctx, &mut appended);
            assert_eq!(&appended[1..], &input[..len]);
            assert!(!ctx.shared());
        }
    }
});
