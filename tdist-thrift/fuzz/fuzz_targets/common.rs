//! What the Thrift targets share: size limits, protocols, and the checksum fix-up.

#[path = "../../../tdist-core/fuzz/fuzz_targets/checksum.rs"]
mod checksum;

use checksum::fix_checksum;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TOutputProtocol,
};
use thrift::TConfiguration;

/// Small limits, so that a length read from garbage cannot allocate much.
fn config() -> TConfiguration {
    TConfiguration::builder()
        .max_string_size(Some(4096))
        .max_container_size(Some(256))
        .build()
        .expect("valid configuration")
}

/// An input protocol over `r`: compact, or binary reading both strict and old-style messages.
pub fn input<'a, R: std::io::Read + 'a>(compact: bool, r: R) -> Box<dyn TInputProtocol + 'a> {
    if compact {
        Box::new(TCompactInputProtocol::with_config(r, config()))
    } else {
        Box::new(TBinaryInputProtocol::with_config(r, false, config()))
    }
}

/// An output protocol into `w`, compact or strict binary.
pub fn output<'a>(compact: bool, w: &'a mut Vec<u8>) -> Box<dyn TOutputProtocol + 'a> {
    if compact {
        Box::new(TCompactOutputProtocol::new(w))
    } else {
        Box::new(TBinaryOutputProtocol::new(w, true))
    }
}

/// The bytes after the mode byte, with a correct checksum written into a prefix at their start
/// when `fix` is set, so that the fuzzer gets past it.
pub fn with_checksum(rest: &[u8], fix: bool) -> Vec<u8> {
    let mut bytes = rest.to_vec();
    if fix {
        fix_checksum(&mut bytes);
    }
    bytes
}
