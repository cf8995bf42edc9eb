//! gRPC over the HTTP layers: a gRPC call answers `200 OK` whatever happened and reports its
//! outcome in a `grpc-status` trailer (or header, for a response without a body), so the layers
//! read that to mark failed calls, and name the span after the method, as Brave does.

use http::HeaderMap;
use std::borrow::Cow;
use tdist_core::{Span, TagValue};

/// Whether a `content-type` value is gRPC's (`application/grpc`, `application/grpc+proto`, ...).
#[inline]
pub(crate) fn is_grpc(content_type: &[u8]) -> bool {
    content_type.len() >= 16
        && content_type[..16].eq_ignore_ascii_case(b"application/grpc")
        && matches!(content_type.get(16), None | Some(b'+' | b';'))
}

/// The service and method of a gRPC path (`/package.Service/Method`); `None` for a path that
/// is not one, or longer than any real method's (a client chooses the path: it becomes the
/// span's name only when it is plausibly a method).
pub(crate) fn service_and_method(path: &str) -> Option<(&str, &str)> {
    if path.len() > crate::names::MAX_KEY_LEN {
        return None;
    }
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Names `span` after the called method and tags `rpc.service` and `rpc.method`.
/// The name is interned (`names.rs`), and the tags borrow from it, so a call allocates nothing
/// for them.
pub(crate) fn name_span(span: &mut Span, path: &str) {
    let Some((service, method)) = service_and_method(path) else {
        return;
    };
    let name = crate::names::grpc_name(path);
    let (service, method) = match &name {
        Cow::Borrowed(name) => {
            let (service, method) = name.split_once('/').unwrap_or((name, ""));
            (TagValue::from(service), TagValue::from(method))
        }
        // Past the bound of interned names: copies of the path's parts.
        Cow::Owned(_) => (TagValue::text(service), TagValue::text(method)),
    };
    span.set_name(name);
    span.tag("rpc.service", service);
    span.tag("rpc.method", method);
}

/// Records the call's outcome from the `grpc-status` in `headers`, if there is one; returns
/// whether there was. A status other than 0 (`OK`) tags `grpc.status_code` with the code's name
/// and marks the span as an error with the `grpc-message`, or the name when there is none.
pub(crate) fn record_status(span: &mut Span, headers: &HeaderMap) -> bool {
    let Some(status) = headers.get("grpc-status") else {
        return false;
    };
    let code = status
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok());
    if code == Some(0) {
        return true;
    }
    let name: Cow<'static, str> = match code {
        Some(c) => Cow::Borrowed(code_name(c)),
        None => Cow::Owned(String::from_utf8_lossy(status.as_bytes()).into_owned()),
    };
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .filter(|m| !m.is_empty());
    span.tag("grpc.status_code", name.clone());
    span.set_error(message.unwrap_or_else(|| name.into_owned()));
    true
}

/// The name of a gRPC status code, as gRPC's specification spells it.
pub(crate) fn code_name(code: u16) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        // Codes outside the specification are treated as UNKNOWN by gRPC libraries.
        _ => "UNKNOWN",
    }
}

/// `grpc-message` is percent-encoded UTF-8; anything malformed is kept as it is.
fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tdist_core::export::InMemory;
    use tdist_core::Tracer;

    #[test]
    fn grpc_content_types() {
        for ok in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"Application/GRPC+json",
            b"application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(ok), "{}", String::from_utf8_lossy(ok));
        }
        for not in [
            &b"application/grpc-web"[..],
            b"application/grp",
            b"application/json",
            b"",
        ] {
            assert!(!is_grpc(not), "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn paths_name_service_and_method() {
        assert_eq!(
            service_and_method("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        for bad in ["", "/", "/Check", "//Check", "/svc/", "/a/b/c", "svc/Check"] {
            assert_eq!(service_and_method(bad), None, "{bad}");
        }
    }

    #[test]
    fn statuses_are_recorded_from_headers() {
        let sink = InMemory::new();
        let tracer = Tracer::builder().transport(sink.clone()).build().unwrap();
        // Headers; whether a status is found; the `grpc.status_code` and `error` tags.
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            bool,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: [Case<'_>; 5] = [
            (&[], false, None, None),
            (&[("grpc-status", "0")], true, None, None),
            (
                &[("grpc-status", "5")],
                true,
                Some("NOT_FOUND"),
                Some("NOT_FOUND"),
            ),
            (
                &[
                    ("grpc-status", "14"),
                    ("grpc-message", "backend%20down%3A%20%E2%9C%97"),
                ],
                true,
                Some("UNAVAILABLE"),
                Some("backend down: ✗"),
            ),
            (&[("grpc-status", "x%")], true, Some("x%"), Some("x%")),
        ];
        for (i, (headers, found, code, error)) in cases.into_iter().enumerate() {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, HeaderValue::from_static(v));
            }
            let mut span = tracer.root_span(format!("case {i}"));
            assert_eq!(record_status(&mut span, &map), found, "case {i}");
            span.finish();
            tracer.flush().unwrap();
            let s = sink.spans().pop().unwrap();
            let tag = |k: &str| {
                s.tags()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(tag("grpc.status_code").as_deref(), code, "case {i}");
            assert_eq!(tag("error").as_deref(), error, "case {i}");
        }
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(99), "UNKNOWN");
    }

    #[test]
    fn messages_are_percent_decoded_and_malformed_escapes_kept() {
        assert_eq!(percent_decode(b"a%20b"), "a b");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"%E2%9C%97"), "✗");
    }
}
