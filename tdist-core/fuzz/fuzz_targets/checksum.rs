//! The checksum fix-up of the targets that meet a context frame; included by path by the Kafka,
//! Thrift and Storm fuzz packages too.

use tdist_core::binary;

/// Writes a correct CRC into the frame announced at the start of `bytes`, when it fits, so that
/// the fuzzer gets past the checksum to the checks after it; whether it did.
pub fn fix_checksum(bytes: &mut [u8]) -> bool {
    let Ok(len) = binary::frame_len(bytes) else {
        return false;
    };
    if bytes.len() < len {
        return false;
    }
    let crc = crc32fast::hash(&bytes[..len - 4]);
    bytes[len - 4..len].copy_from_slice(&crc.to_be_bytes());
    true
}
