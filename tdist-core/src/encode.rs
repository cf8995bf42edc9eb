//! Zipkin v2 encoders: JSON (the collector's default) and proto3 `ListOfSpans`.
//!
//! The JSON writer follows Zipkin's own key order (`traceId, parentId, id, kind, name, timestamp,
//! duration, localEndpoint, remoteEndpoint, annotations, tags, debug, shared`), omits absent and
//! false fields, always writes `localEndpoint` (Zipkin's Kafka collector needs it to tell v2 from
//! v1), lower-cases names, and writes ids as lower-hex from stack buffers.
//!
//! ```
//! use tdist_core::encode;
//! use tdist_core::export::InMemory;
//! use tdist_core::Tracer;
//!
//! let sink = InMemory::new();
//! let tracer = Tracer::builder().service_name("Frontend").transport(sink.clone()).build().unwrap();
//! let mut span = tracer.root_span("GET /api");
//! span.tag("http.method", "GET");
//! span.finish();
//! tracer.flush().unwrap();
//! let json = String::from_utf8(encode::json_list(&sink.spans())).unwrap();
//! assert!(json.starts_with("[{\"traceId\":"));
//! assert!(json.contains("\"name\":\"get /api\""));
//! assert!(json.contains("\"localEndpoint\":{\"serviceName\":\"frontend\"}"));
//! ```

use crate::id::write_hex_u64;
use crate::record::{Endpoint, FinishedSpan, TagValue};
use std::io::Write;

/// Encodes spans as a JSON list, as `POST /api/v2/spans` and Zipkin's Kafka collector expect.
pub fn json_list(spans: &[FinishedSpan]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spans.len() * 320 + 2);
    write_json_list(spans, &mut out);
    out
}

/// Appends spans as a JSON list to `out`.
pub fn write_json_list(spans: &[FinishedSpan], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_span(s, out);
    }
    out.push(b']');
}

/// Appends one span as a JSON object to `out`.
pub fn write_json_span(s: &FinishedSpan, out: &mut Vec<u8>) {
    let mut hex = [0u8; 16];
    out.extend_from_slice(b"{\"traceId\":\"");
    let t = s.trace_id();
    if t.is_128() {
        write_hex_u64(t.high(), &mut hex);
        out.extend_from_slice(&hex);
    }
    write_hex_u64(t.low(), &mut hex);
    out.extend_from_slice(&hex);
    if let Some(p) = s.parent_id() {
        out.extend_from_slice(b"\",\"parentId\":\"");
        write_hex_u64(p.get(), &mut hex);
        out.extend_from_slice(&hex);
    }
    out.extend_from_slice(b"\",\"id\":\"");
    write_hex_u64(s.id().get(), &mut hex);
    out.extend_from_slice(&hex);
    out.push(b'"');
    if let Some(k) = s.kind() {
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(k.as_str().as_bytes());
        out.push(b'"');
    }
    if !s.name().is_empty() {
        out.extend_from_slice(b",\"name\":");
        write_json_str_lower(s.name(), out);
    }
    let mut num = itoa::Buffer::new();
    if s.timestamp_us() > 0 {
        out.extend_from_slice(b",\"timestamp\":");
        out.extend_from_slice(num.format(s.timestamp_us()).as_bytes());
    }
    out.extend_from_slice(b",\"duration\":");
    out.extend_from_slice(num.format(s.duration_us().max(1)).as_bytes());
    out.extend_from_slice(b",\"localEndpoint\":");
    write_json_endpoint(s.local_endpoint(), out);
    if let Some(r) = s.remote_endpoint().filter(|e| !e.is_empty()) {
        out.extend_from_slice(b",\"remoteEndpoint\":");
        write_json_endpoint(r, out);
    }
    if !s.annotations().is_empty() {
        out.extend_from_slice(b",\"annotations\":[");
        for (i, a) in s.annotations().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"timestamp\":");
            out.extend_from_slice(num.format(a.timestamp_us).as_bytes());
            out.extend_from_slice(b",\"value\":");
            write_json_str(&a.value, out);
            out.push(b'}');
        }
        out.push(b']');
    }
    let mut first = true;
    for (k, v) in s.reported_tags() {
        out.extend_from_slice(if first { b",\"tags\":{" } else { b"," });
        first = false;
        write_json_str(k, out);
        out.push(b':');
        match v {
            TagValue::Str(v) => write_json_str(v, out),
            TagValue::Inline(v) => write_json_str(v.as_str(), out),
            TagValue::I64(v) => {
                out.push(b'"');
                out.extend_from_slice(num.format(*v).as_bytes());
                out.push(b'"');
            }
            TagValue::Bool(v) => out.extend_from_slice(if *v { b"\"true\"" } else { b"\"false\"" }),
        }
    }
    if !first {
        out.push(b'}');
    }
    if s.debug() {
        out.extend_from_slice(b",\"debug\":true");
    }
    if s.shared() {
        out.extend_from_slice(b",\"shared\":true");
    }
    out.push(b'}');
}

fn write_json_endpoint(e: &Endpoint, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut sep = false;
    let mut field = |out: &mut Vec<u8>, name: &[u8]| {
        if sep {
            out.push(b',');
        }
        sep = true;
        out.extend_from_slice(name);
    };
    if let Some(n) = e.service_name() {
        field(out, b"\"serviceName\":");
        write_json_str_lower(n, out);
    }
    if let Some(ip) = e.ipv4() {
        field(out, b"\"ipv4\":\"");
        let mut num = itoa::Buffer::new();
        for (i, octet) in ip.octets().iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            out.extend_from_slice(num.format(*octet).as_bytes());
        }
        out.push(b'"');
    }
    if let Some(ip) = e.ipv6() {
        field(out, b"\"ipv6\":\"");
        let _ = write!(out, "{ip}\"");
    }
    if let Some(p) = e.port() {
        field(out, b"\"port\":");
        out.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
    }
    out.push(b'}');
}

fn write_json_str_lower(s: &str, out: &mut Vec<u8>) {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        write_json_str(&s.to_ascii_lowercase(), out);
    } else {
        write_json_str(s, out);
    }
}

/// Writes a JSON string literal with RFC 8259 escaping.
pub(crate) fn write_json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Encodes spans as a proto3 `zipkin.proto3.ListOfSpans` (`application/x-protobuf`).
pub fn proto3_list(spans: &[FinishedSpan]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spans.len() * 200);
    let mut span_buf = Vec::with_capacity(256);
    for s in spans {
        span_buf.clear();
        write_proto_span(s, &mut span_buf);
        out.push(0x0A);
        varint(span_buf.len() as u64, &mut out);
        out.extend_from_slice(&span_buf);
    }
    out
}

fn write_proto_span(s: &FinishedSpan, out: &mut Vec<u8>) {
    let t = s.trace_id();
    if t.is_128() {
        bytes_field(0x0A, &t.to_bytes(), out);
    } else {
        bytes_field(0x0A, &t.low().to_be_bytes(), out);
    }
    if let Some(p) = s.parent_id() {
        bytes_field(0x12, &p.get().to_be_bytes(), out);
    }
    bytes_field(0x1A, &s.id().get().to_be_bytes(), out);
    if let Some(k) = s.kind() {
        out.push(0x20);
        varint(
            match k {
                crate::Kind::Client => 1,
                crate::Kind::Server => 2,
                crate::Kind::Producer => 3,
                crate::Kind::Consumer => 4,
            },
            out,
        );
    }
    if !s.name().is_empty() {
        bytes_field(0x2A, s.name().to_ascii_lowercase().as_bytes(), out);
    }
    if s.timestamp_us() > 0 {
        out.push(0x31);
        out.extend_from_slice(&s.timestamp_us().to_le_bytes());
    }
    out.push(0x38);
    varint(s.duration_us().max(1), out);
    let mut ep = Vec::new();
    write_proto_endpoint(s.local_endpoint(), &mut ep);
    bytes_field(0x42, &ep, out);
    if let Some(r) = s.remote_endpoint().filter(|e| !e.is_empty()) {
        ep.clear();
        write_proto_endpoint(r, &mut ep);
        bytes_field(0x4A, &ep, out);
    }
    for a in s.annotations() {
        let mut ab = Vec::with_capacity(16 + a.value.len());
        ab.push(0x09);
        ab.extend_from_slice(&a.timestamp_us.to_le_bytes());
        bytes_field(0x12, a.value.as_bytes(), &mut ab);
        bytes_field(0x52, &ab, out);
    }
    for (k, v) in s.reported_tags() {
        let v = v.to_string();
        let mut entry = Vec::with_capacity(k.len() + v.len() + 4);
        bytes_field(0x0A, k.as_bytes(), &mut entry);
        bytes_field(0x12, v.as_bytes(), &mut entry);
        bytes_field(0x5A, &entry, out);
    }
    if s.debug() {
        out.extend_from_slice(&[0x60, 1]);
    }
    if s.shared() {
        out.extend_from_slice(&[0x68, 1]);
    }
}

fn write_proto_endpoint(e: &Endpoint, out: &mut Vec<u8>) {
    if let Some(n) = e.service_name() {
        bytes_field(0x0A, n.as_bytes(), out);
    }
    if let Some(ip) = e.ipv4() {
        bytes_field(0x12, &ip.octets(), out);
    }
    if let Some(ip) = e.ipv6() {
        bytes_field(0x1A, &ip.octets(), out);
    }
    if let Some(p) = e.port() {
        out.push(0x20);
        varint(u64::from(p), out);
    }
}

fn bytes_field(tag: u8, b: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_quotes() {
        let mut out = Vec::new();
        write_json_str("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn inline_and_owned_tag_text_encode_alike() {
        use crate::{SpanContext, SpanId, TraceId};
        let ctx = SpanContext::new(TraceId::new(0, 1).unwrap(), SpanId::new(2).unwrap());
        let json = |v: TagValue| {
            let mut s = FinishedSpan::empty();
            s.context = ctx;
            s.tags.push(("http.path".into(), v));
            let mut out = Vec::new();
            write_json_span(&s, &mut out);
            String::from_utf8(out).unwrap()
        };
        let text = "/a\"b/é";
        assert!(json(TagValue::text(text)).contains(r#""tags":{"http.path":"/a\"b/é"}"#));
        assert_eq!(
            json(TagValue::text(text)),
            json(TagValue::from(text.to_owned()))
        );
    }

    #[test]
    fn varints() {
        let mut out = Vec::new();
        varint(300, &mut out);
        assert_eq!(out, [0xAC, 0x02]);
    }
}
