//! A consumer's deserializer wrapper reading arbitrary payloads.
//!
//! Consumers are upgraded before producers, so the wrapped deserializer must see every payload
//! that is not a valid frame whole, and a framed one exactly as the producer's serializer wrote
//! it: serializing the value again under the context found gives back the input. With bit 0
//! of the first byte set, the target first writes a correct checksum into a frame at the start
//! of the payload, so the fuzzer gets past it.
#![no_main]

#[path = "../../../tdist-core/fuzz/fuzz_targets/checksum.rs"]
mod checksum;

use checksum::fix_checksum;
use libfuzzer_sys::fuzz_target;
use tdist_kafka::codec::{Bytes, Deserializer, TracingDeserializer, TracingSerializer};
use tdist_kafka::frame;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut payload = rest.to_vec();
    if mode & 1 == 1 {
        fix_checksum(&mut payload);
    }
    let traced = TracingDeserializer::new(Bytes)
        .deserialize(&payload)
        .expect("the bytes deserializer takes anything");
    let unframed = frame::decode(&payload);
    assert_eq!(traced.context, unframed.context);
    assert_eq!(traced.value, unframed.payload);
    match traced.context {
        None => assert_eq!(traced.value, payload),
        Some(ctx) => {
            assert_eq!(frame::overhead(&ctx), payload.len() - traced.value.len());
            let mut again = Vec::new();
            TracingSerializer::new(Bytes)
                .serialize_with(Some(&ctx), &traced.value, &mut again)
                .expect("the bytes serializer takes anything");
            assert_eq!(again, payload);
            assert_eq!(frame::encode(Some(&ctx), &traced.value), payload);
        }
    }
});
