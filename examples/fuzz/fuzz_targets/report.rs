//! The trace report reading arbitrary span files.
//!
//! `trace_report` reads files it did not write (Zipkin API answers, other tracers' spans), so
//! whatever they hold it must build traces and render them without a panic or an arithmetic
//! overflow (the target builds with overflow checks), in time (libFuzzer's timeout catches
//! quadratic walks), and without losing a span: every span read is a node of exactly one
//! trace or a duplicate merged away, and every node hangs in exactly one tree, below a root.
//!
//! With the first byte's low bit clear the rest is the file's text. With it set, the rest is
//! turned into spans with few distinct ids, so that parents, cycles, duplicates, shared spans
//! and clock skew between services are common, and timestamps and durations reach the
//! extremes the reader accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tdist_examples::report::{parse, Report, ReportOptions};

/// Timestamps and durations: small, ordinary, and at the extremes.
fn micros(b: u8, wide: u32) -> Value {
    match b % 8 {
        0 => Value::Null,
        1 => json!(i64::MAX),
        2 => json!(u64::MAX),
        3 => json!(-1),
        4 => json!(1_700_000_000_000_000u64 + u64::from(wide)),
        5 => json!(u64::from(wide)),
        6 => json!(253_402_300_799_999_999u64 - u64::from(wide)),
        _ => json!(f64::from(wide) * 1e9),
    }
}

/// Spans from bytes, ten bytes each.
fn spans(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks_exact(10) {
        let wide = u32::from_be_bytes([c[6], c[7], c[8], c[9]]);
        let mut span = json!({
            "traceId": format!("{:x}", 1 + c[0] % 3),
            "id": format!("{:x}", 1 + c[1] % 8),
            "timestamp": micros(c[3], wide),
            "duration": micros(c[4], wide.rotate_left(7)),
            "localEndpoint": {"serviceName": (["a", "b", "c"][usize::from(c[5] % 3)])},
            "name": (["get", "put"][usize::from(c[5] >> 7)]),
        });
        if c[2] % 9 != 0 {
            span["parentId"] = json!(format!("{:x}", c[2] % 9));
        }
        match c[5] >> 2 & 7 {
            0 => span["kind"] = json!("CLIENT"),
            1 => {
                span["kind"] = json!("SERVER");
                span["shared"] = json!(true);
            }
            2 => span["kind"] = json!("SERVER"),
            3 => span["kind"] = json!("PRODUCER"),
            4 => span["kind"] = json!("CONSUMER"),
            5 => span["tags"] = json!({"error": "boom"}),
            _ => {}
        }
        out.push_str(&span.to_string());
        out.push('\n');
    }
    out
}

fn check(text: &str) {
    let parsed = parse::parse_str(text);
    let read = parsed.spans.len();
    let report = Report::from_parsed(parsed);
    let placed: usize = report
        .traces
        .iter()
        .map(|t| t.nodes.len() + t.duplicates)
        .sum();
    assert_eq!(placed, read, "spans lost or invented");
    for t in &report.traces {
        // Every node is reached exactly once from the roots, with consistent links.
        let mut seen = vec![false; t.nodes.len()];
        let mut stack: Vec<usize> = t.roots.clone();
        for &r in &t.roots {
            assert_eq!(t.nodes[r].parent, None, "a root has a parent");
            assert_eq!(t.nodes[r].depth, 0);
        }
        while let Some(n) = stack.pop() {
            assert!(!seen[n], "node {n} reached twice");
            seen[n] = true;
            for &c in &t.nodes[n].children {
                assert_eq!(t.nodes[c].parent, Some(n));
                assert_eq!(t.nodes[c].depth, t.nodes[n].depth + 1);
                stack.push(c);
            }
        }
        assert!(seen.iter().all(|&s| s), "a node hangs in no tree");
        for n in &t.nodes {
            for &(s, e) in &n.critical {
                assert!(s <= e, "critical section ends before it starts");
            }
        }
    }
    let opts = ReportOptions::default();
    let _ = report.render(&opts).expect("the longest trace renders");
    for t in report.traces.iter().take(3) {
        let opts = ReportOptions {
            trace_id: Some(t.trace_id_hex()),
            top: 2,
            ..ReportOptions::default()
        };
        let _ = report.render(&opts).expect("a trace in the input renders");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            check(text);
        }
    } else {
        check(&spans(rest));
    }
});
