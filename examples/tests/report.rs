//! Trace report: fixtures for each tree case with exact rendered text, the critical path and
//! self time checked against independent brute-force computations, percentiles computed
//! independently, repeated calls, large generated traces, and lenient/malformed input.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use tdist_examples::report::parse::{parse_messages, parse_str, Location};
use tdist_examples::report::render::{self, TreeOptions};
use tdist_examples::report::stats::{self, Operation};
use tdist_examples::report::{trace, Report, ReportError, ReportOptions, Trace};

const T: i64 = 1_700_000_000_000_000;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Report {
    Report::from_path(fixture(name)).expect("fixture readable")
}

fn tree_text(t: &Trace) -> String {
    render::tree(t, &TreeOptions::default())
}

/// Critical path as (service, name, start, end) relative to `T`.
fn path_of(t: &Trace) -> Vec<(String, i64, i64)> {
    t.critical_path()
        .into_iter()
        .map(|(n, s, e)| (t.nodes[n].span.name.clone(), s - T, e - T))
        .collect()
}

fn p(name: &str, s: i64, e: i64) -> (String, i64, i64) {
    (name.to_owned(), s, e)
}

/// A span as one JSON line.
#[allow(clippy::too_many_arguments)]
fn span_json(
    trace: &str,
    id: u64,
    parent: Option<u64>,
    service: &str,
    name: &str,
    kind: Option<&str>,
    ts: i64,
    dur: i64,
) -> String {
    let parent = parent.map_or(String::new(), |p| format!(",\"parentId\":\"{p:016x}\""));
    let kind = kind.map_or(String::new(), |k| format!(",\"kind\":\"{k}\""));
    format!(
        "{{\"traceId\":\"{trace}\"{parent},\"id\":\"{id:016x}\"{kind},\"name\":\"{name}\",\"timestamp\":{ts},\"duration\":{dur},\"localEndpoint\":{{\"serviceName\":\"{service}\"}}}}\n"
    )
}

/// Small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------- trees (exact text)

/// Each span of `t` in preorder: depth, service, name, shared.
fn shape(t: &Trace) -> Vec<(usize, &str, &str, bool)> {
    t.preorder()
        .into_iter()
        .map(|n| {
            let s = &t.nodes[n].span;
            (
                t.nodes[n].depth,
                s.service.as_str(),
                s.name.as_str(),
                s.shared,
            )
        })
        .collect()
}
#[test]
fn shared_rpc_span_is_child_of_client_and_bad_line_is_reported() {
    let r = load("rpc_shared.jsonl");
    assert_eq!(r.issues.len(), 1);
    assert_eq!(r.issues[0].location, Location::Line(5));
    assert_eq!(
        r.traces.len(),
        1,
        "upper-case trace id normalized into the same trace"
    );
    let t = &r.traces[0];
    assert_eq!(
        tree_text(t),
        "\
trace 000000000000000a: 5 spans, 2 services, duration 10.000ms, 0 orphans, 0 skew-adjusted, 0 duplicates
    offset   duration |                                        |   service: name [KIND] flags
      +0us   10.000ms |####------------------------##--------##| * frontend: get /comments [SERVER]
  +1.000ms    6.000ms |    ##--------------------##            | *   frontend: check [CLIENT]
  +1.500ms    5.000ms |      ##------------######              | *     spam: check [SERVER] shared
  +2.000ms    3.000ms |        ############                    | *       spam: score
  +7.500ms    2.000ms |                              ########  | *   frontend: insert [CLIENT]
"
    );
    let base = T - 1_700_000_000_000_000 + 1_000_000;
    let rel: Vec<_> = t
        .critical_path()
        .into_iter()
        .map(|(n, s, e)| (t.nodes[n].span.service.as_str(), s - base, e - base))
        .collect();
    assert_eq!(
        rel,
        [
            ("frontend", 0, 1000),
            ("frontend", 1000, 1500),
            ("spam", 1500, 2000),
            ("spam", 2000, 5000),
            ("spam", 5000, 6500),
            ("frontend", 6500, 7000),
            ("frontend", 7000, 7500),
            ("frontend", 7500, 9500),
            ("frontend", 9500, 10000),
        ]
    );
}

#[test]
fn orphans_missing_fields_and_duplicates() {
    let r = load("orphans.jsonl");
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    let t = &r.traces[0];
    assert_eq!(t.orphans, 2);
    assert_eq!(t.duplicates, 1);
    assert_eq!(
        tree_text(t),
        "\
trace 000000000000000b: 6 spans, 3 services, duration 20.000ms, 2 orphans, 0 skew-adjusted, 1 duplicates
    offset   duration |                                        |   service: name [KIND] flags
      +0us   20.000ms |########################################| * frontend: get / [SERVER]
  +1.000ms          ? |  -                                     |     frontend: cache !no-duration
         ?      500us |                                        |     unknown: render !no-timestamp
  +5.000ms    8.000ms |          ----------------              |   worker: job [CONSUMER] !orphan parent=0000000000000004
  +6.000ms    3.000ms |            ------                      |     worker: save
 +12.000ms    1.000ms |                        --              |   worker: late !orphan parent=0000000000000099
"
    );
    // Untimed spans are never on the critical path; the root covers the whole trace.
    assert_eq!(path_of(t), [p("get /", 0, 20_000)]);
}

#[test]
fn clock_skew_is_corrected_and_flagged() {
    let r = load("skew.jsonl");
    let t = &r.traces[0];
    assert_eq!(
        tree_text(t),
        "\
trace 000000000000000c: 6 spans, 3 services, duration 10.200ms, 0 orphans, 2 skew-adjusted, 0 duplicates
    offset   duration |                                        |   service: name [KIND] flags
    +200us   10.000ms |#####-----------------------############| * frontend: get /a [SERVER]
      +0us      100us |#                                       | *   frontend: log !before-parent
  +1.200ms    6.000ms |    #####---------------#####           | *   frontend: call [CLIENT]
  +2.200ms    4.000ms |        ##------#########               | *     backend: call [SERVER] shared !skew +1.500ms
  +2.300ms    2.000ms |         ##---###                       | *       backend: db [CLIENT] ~skew +1.500ms
  +2.800ms    1.000ms |          #####                         | *         postgres: select [SERVER] !skew -6.400ms
"
    );
    // The server (4ms) is centred in the client (6ms): it starts 1ms after the client.
    assert_eq!(
        path_of(t),
        [
            p("log", -200, -100),
            p("get /a", 0, 1000),
            p("call", 1000, 2000),
            p("call", 2000, 2100),
            p("db", 2100, 2600),
            p("select", 2600, 3600),
            p("db", 3600, 4100),
            p("call", 4100, 6000),
            p("call", 6000, 7000),
            p("get /a", 7000, 10_000),
        ]
    );
}

#[test]
fn async_trace_critical_path_starts_at_last_ending_span() {
    let r = load("async_kafka.jsonl");
    let t = &r.traces[0];
    assert_eq!(t.trace_id_hex(), "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(
        t.duration(),
        10_300,
        "the trace ends when the consumer side ends"
    );
    assert_eq!(
        path_of(t),
        [
            p("post /order", 0, 100),
            p("validate", 100, 800),
            p("post /order", 800, 1000),
            p("send", 1000, 1500),
            p("poll", 6000, 6300),
            p("process", 6300, 7000),
            p("reserve", 7000, 9000),
            p("process", 9000, 10_300),
        ]
    );
    assert_eq!(t.critical_gaps(), [(T + 1500, T + 6000)]);
    let text = tree_text(t);
    assert!(
        text.contains(
            "|                             -----      |           fulfillment: notify [CLIENT]\n"
        ),
        "{text}"
    );
}

#[test]
fn critical_path_crosses_a_lost_parent_as_a_gap() {
    // The producer span was never reported: the consumer side is an orphan subtree that ends
    // the trace; the path continues in the main tree before it.
    let tid = "00000000000000c1";
    let text = [
        span_json(tid, 1, None, "checkout", "post", Some("SERVER"), T, 5000),
        span_json(
            tid,
            2,
            Some(1),
            "checkout",
            "validate",
            None,
            T + 1000,
            1000,
        ),
        span_json(
            tid,
            4,
            Some(3),
            "billing",
            "poll",
            Some("CONSUMER"),
            T + 6000,
            300,
        ),
        span_json(tid, 5, Some(4), "billing", "charge", None, T + 6300, 3700),
    ]
    .concat();
    let t = &Report::from_str(&text).traces[0];
    assert_eq!(t.orphans, 1);
    assert_eq!(
        path_of(t),
        [
            p("post", 0, 1000),
            p("validate", 1000, 2000),
            p("post", 2000, 5000),
            p("poll", 6000, 6300),
            p("charge", 6300, 10_000),
        ]
    );
    assert_eq!(t.critical_gaps(), [(T + 5000, T + 6000)]);
}

#[test]
fn consumer_starting_before_its_producer_is_moved_to_the_producer_start() {
    let tid = "00000000000000d1";
    let text = [
        span_json(tid, 1, None, "a", "send", Some("PRODUCER"), T, 500),
        span_json(
            tid,
            2,
            Some(1),
            "b",
            "poll",
            Some("CONSUMER"),
            T - 3000,
            200,
        ),
        span_json(tid, 3, Some(2), "b", "work", None, T - 2800, 1000),
    ]
    .concat();
    let r = Report::from_str(&text);
    let t = &r.traces[0];
    assert_eq!(t.nodes[1].skew, 3000);
    assert!(t.nodes[1].skew_adjusted);
    assert_eq!(
        (t.nodes[2].start(), t.nodes[2].skew_adjusted),
        (Some(T + 200), false)
    );
    // Asynchronous: the consumer side may end after the producer; not moved back.
    assert_eq!(t.end(), Some(T + 1200));
    let text = tree_text(t);
    let lines: Vec<&str> = text.lines().skip(2).collect();
    assert!(
        lines[1].ends_with("b: poll [CONSUMER] !skew +3.000ms"),
        "{lines:?}"
    );
    assert!(lines[2].ends_with("b: work ~skew +3.000ms"), "{lines:?}");
}

#[test]
fn shared_spans_without_the_flag_and_children_of_the_shared_id() {
    // Older tracers: same id for client and server, no `shared`; the SERVER side is the child.
    let tid = "00000000000000e1";
    let text = [
        span_json(tid, 9, Some(8), "api", "get", Some("SERVER"), T + 100, 800),
        span_json(tid, 8, None, "web", "page", Some("SERVER"), T, 1000),
        span_json(tid, 9, Some(8), "web", "get", Some("CLIENT"), T + 50, 900),
        span_json(tid, 10, Some(9), "api", "load", None, T + 200, 300),
    ]
    .concat();
    let t = &Report::from_str(&text).traces[0];
    assert_eq!(t.orphans, 0);
    let shape: Vec<(usize, &str, &str)> = t
        .preorder()
        .into_iter()
        .map(|n| {
            let s = &t.nodes[n].span;
            (t.nodes[n].depth, s.service.as_str(), s.name.as_str())
        })
        .collect();
    assert_eq!(
        shape,
        [
            (0, "web", "page"),
            (1, "web", "get"),
            (2, "api", "get"),
            (3, "api", "load")
        ]
    );
    assert!(
        t.nodes[0].span.shared,
        "the server side is normalized to shared"
    );
}

/// Random reports of a few ids (kinds, services and `shared` mixed), against the side rule
/// evaluated by brute force over all pairs of reports.
#[test]
fn shared_sides_match_the_rule_on_random_reports() {
    let mut rng = Rng(31);
    let kinds = [
        None,
        Some("CLIENT"),
        Some("SERVER"),
        Some("SERVER"),
        Some("PRODUCER"),
    ];
    for round in 0..300 {
        let n = 1 + rng.below(12) as usize;
        let spans: Vec<(u64, Option<&str>, &str, bool)> = (0..n)
            .map(|_| {
                let id = 1 + rng.below(3);
                let kind = kinds[rng.below(kinds.len() as u64) as usize];
                let service = ["a", "b", "c"][rng.below(3) as usize];
                (id, kind, service, rng.below(6) == 0)
            })
            .collect();
        let text: String = spans
            .iter()
            .enumerate()
            .map(|(i, &(id, kind, service, shared))| {
                let line = span_json("1", id, None, service, &format!("s{i}"), kind, T, 10);
                if shared {
                    line.replacen("{", "{\"shared\":true,", 1)
                } else {
                    line
                }
            })
            .collect();
        let side = |i: usize| {
            let (id, kind, service, shared) = spans[i];
            shared
                || (kind == Some("SERVER")
                    && spans.iter().any(|&(oid, okind, oservice, oshared)| {
                        oid == id && !oshared && okind != Some("SERVER") && oservice != service
                    }))
        };
        // One node per (id, side), named after its first report.
        let mut want: Vec<(u64, bool, String)> = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            let key = (span.0, side(i));
            if !want.iter().any(|w| (w.0, w.1) == key) {
                want.push((key.0, key.1, format!("s{i}")));
            }
        }
        let t = &Report::from_str(&text).traces[0];
        let got: Vec<(u64, bool, String)> = t
            .nodes
            .iter()
            .map(|x| (x.span.id, x.span.shared, x.span.name.clone()))
            .collect();
        assert_eq!(got, want, "round {round}: {spans:?}");
        assert_eq!(t.duplicates, n - want.len(), "round {round}");
    }
}

/// Many reports of one id: deciding their sides is linear in their number. (Each SERVER report
/// used to scan every other report of its id; quadratic, this took about 50 s in a debug build,
/// now about 2 s. No time is asserted: the test only has to finish.)
#[test]
fn fifty_thousand_reports_of_one_server_span() {
    let n = 50_000;
    let tid = "00000000000000e2";
    let mut text = span_json(tid, 1, None, "web", "page", Some("SERVER"), T, 100_000);
    text += &span_json(
        tid,
        2,
        Some(1),
        "web",
        "get",
        Some("CLIENT"),
        T + 10,
        90_000,
    );
    for i in 0..n {
        // The server side of span 2, reported again and again, without `shared`.
        text += &span_json(tid, 2, Some(1), "api", "get", Some("SERVER"), T + 20 + i, 5);
        // A SERVER span with no other side: never shared.
        text += &span_json(
            tid,
            3,
            Some(1),
            "web",
            "solo",
            Some("SERVER"),
            T + 30 + i,
            5,
        );
    }
    let t = &Report::from_str(&text).traces[0];
    assert_eq!(t.duplicates, 2 * (n as usize - 1));
    assert_eq!(
        shape(t),
        [
            (0, "web", "page", false),
            (1, "web", "get", false),
            (2, "api", "get", true),
            (1, "web", "solo", false),
        ]
    );
}

#[test]
fn parent_cycles_are_cut_not_looped() {
    let tid = "00000000000000f1";
    let text = [
        span_json(tid, 1, Some(2), "a", "x", None, T, 100),
        span_json(tid, 2, Some(1), "a", "y", None, T + 10, 50),
        span_json(tid, 3, Some(3), "a", "self", None, T + 20, 10),
    ]
    .concat();
    let t = &Report::from_str(&text).traces[0];
    assert_eq!(t.preorder().len(), 3, "every span shown once");
    assert_eq!(t.orphans, 2);
    assert_eq!(t.roots.len(), 2);
}

// ---------------------------------------------------------------- input formats

#[test]
fn zipkin_api_arrays_read_like_json_lines() {
    let lines = std::fs::read_to_string(fixture("async_kafka.jsonl")).unwrap();
    let spans: Vec<&str> = lines.lines().collect();
    // GET /api/v2/trace/{id}: one pretty-printed array.
    let one = format!("[\n  {}\n]\n", spans.join(",\n  "));
    // GET /api/v2/traces: an array of arrays.
    let shared = std::fs::read_to_string(fixture("rpc_shared.jsonl")).unwrap();
    let good: Vec<&str> = shared.lines().filter(|l| l.starts_with('{')).collect();
    let many = format!("[[{}],[{}]]", spans.join(","), good.join(","));
    let from_lines = Report::from_str(&lines);
    let from_one = Report::from_str(&one);
    let from_many = Report::from_str(&many);
    assert!(from_one.issues.is_empty() && from_many.issues.is_empty());
    assert_eq!(from_many.traces.len(), 2);
    let opts = ReportOptions::default();
    assert_eq!(
        from_lines.render(&opts).unwrap(),
        from_one.render(&opts).unwrap()
    );
    assert_eq!(
        tree_text(&from_many.traces[0]),
        tree_text(&from_lines.traces[0])
    );
}

#[test]
fn objects_in_an_array_are_reported_at_their_own_line() {
    // The reviewer's case: a pretty-printed array, invalid objects on lines 3 and 4.
    let text = "[\n  {\"traceId\":\"1\",\"id\":\"1\"},\n  {\"traceId\":\"1\"},\n  {\"traceId\":\"zz\",\"id\":\"2\"}\n]\n";
    let p = parse_str(text);
    assert_eq!(p.spans.len(), 1);
    let at: Vec<_> = p.issues.iter().map(|i| i.location).collect();
    assert_eq!(at, [Location::Line(3), Location::Line(4)]);

    // An array of arrays, objects spread over lines, strings holding brackets, braces, commas,
    // colons and escaped quotes, nested objects and arrays inside spans, a scalar item, and a
    // second top-level value.
    let text = r#"[
  [
    {"traceId": "1", "id": "1", "name": "[{,:\"}]",
     "annotations": [{"value": "{"}, {"value": "]"}],
     "localEndpoint": {"serviceName": "a"}},
    {"traceId": "1",
     "name": "{\\\"}, {\\"
    }, 42,
    [], [ {"traceId": "1", "id": "2"},
      {"traceId": "x", "id": "3"} ]
  ],
  ["just a string",
   {}]
]

  {"traceId": "1",
   "tags": {"k": "["}}
"#;
    // Invalid items: line 6 (no id), 8 (a number), 10 (bad trace id), 12 (a string), 13 (no
    // trace id), 16 (no id, a second top-level value).
    let p = parse_str(text);
    assert_eq!(p.spans.len(), 2, "{:?}", p.issues);
    assert_eq!(p.spans[0].name, "[{,:\"}]");
    let at: Vec<_> = p.issues.iter().map(|i| i.location).collect();
    assert_eq!(
        at,
        [6, 8, 10, 12, 13, 16].map(Location::Line),
        "{:?}",
        p.issues
    );

    // Written on one line, every item is on line 1.
    let p = parse_str("[{\"traceId\":\"1\"},{\"traceId\":\"1\",\"id\":\"1\"},{\"id\":\"2\"}]");
    assert_eq!(p.spans.len(), 1);
    let at: Vec<_> = p.issues.iter().map(|i| i.location).collect();
    assert_eq!(at, [Location::Line(1), Location::Line(1)]);
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let spans = "{\"traceId\":\"1\",\"id\":\"1\"},{\"traceId\":\"1\",\"id\":\"2\"}";
    // One array on one line, as a Windows tool may save an API answer.
    let p = parse_str(&format!("\u{feff}[{spans}]"));
    assert!(p.issues.is_empty(), "{:?}", p.issues);
    assert_eq!(p.spans.len(), 2);
    // JSON lines with a bad line: line numbers are unchanged.
    let p = parse_str(
        "\u{feff}{\"traceId\":\"1\",\"id\":\"1\"}\nnot json\n{\"traceId\":\"1\",\"id\":\"2\"}\n",
    );
    assert_eq!(p.spans.len(), 2);
    assert_eq!(p.issues[0].location, Location::Line(2));
    // From a file, bytes EF BB BF first.
    let path = std::env::temp_dir().join(format!("tdist-report-bom-{}.json", std::process::id()));
    std::fs::write(&path, format!("\u{feff}[{spans}]\n")).unwrap();
    let r = Report::from_path(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    assert_eq!(r.traces[0].nodes.len(), 2);
}

#[test]
fn messages_hook_reads_span_lists() {
    let lines = std::fs::read_to_string(fixture("skew.jsonl")).unwrap();
    let msgs: Vec<Vec<u8>> = lines
        .lines()
        .map(|l| format!("[{l}]").into_bytes())
        .chain([b"\x00garbage".to_vec()])
        .collect();
    let r = Report::from_messages(&msgs);
    assert_eq!(r.issues.len(), 1);
    assert_eq!(r.issues[0].location, Location::Message(6));
    assert_eq!(
        tree_text(&r.traces[0]),
        tree_text(&load("skew.jsonl").traces[0])
    );
}

#[test]
fn lenient_fields() {
    let text = r#"{"traceId":"ABC","id":"F","parentId":"0000000000000000","kind":"server","name":"GET /X","timestamp":"1000","duration":0,"localEndpoint":{"serviceName":"Web"},"tags":{"error":"boom"}}"#;
    let parsed = parse_str(text);
    assert!(parsed.issues.is_empty(), "{:?}", parsed.issues);
    let s = &parsed.spans[0];
    assert_eq!(s.trace_id_hex(), "0000000000000abc");
    assert_eq!(s.id_hex(), "000000000000000f");
    assert_eq!(
        (s.parent_id, s.timestamp, s.duration),
        (None, Some(1000), None)
    );
    assert_eq!((s.name.as_str(), s.service.as_str()), ("get /x", "web"));
    assert!(s.error);
    let r = Report::from_str(text);
    assert!(r.find("ABC").is_ok());
    assert!(r.find("0000000000000abc").is_ok());
    assert_eq!(
        r.find("xyz").unwrap_err(),
        ReportError::BadTraceId("xyz".into())
    );
    assert_eq!(
        r.find("abd").unwrap_err(),
        ReportError::NoSuchTrace("abd".into())
    );
}

#[test]
fn huge_numbers_are_rejected_not_overflowed() {
    let text = "\
{\"traceId\":\"1\",\"id\":\"1\",\"timestamp\":9223372036854775807,\"duration\":1}
{\"traceId\":\"1\",\"id\":\"2\",\"parentId\":\"1\",\"timestamp\":1,\"duration\":18446744073709551615}
{\"traceId\":\"1\",\"id\":\"3\",\"parentId\":\"1\",\"timestamp\":4503599627370496,\"duration\":4503599627370496,\"kind\":\"SERVER\"}
{\"traceId\":\"1\",\"id\":\"4\",\"parentId\":\"3\",\"timestamp\":1,\"duration\":4503599627370496,\"localEndpoint\":{\"serviceName\":\"b\"}}
{\"traceId\":\"1\",\"id\":\"5\",\"parentId\":\"4\",\"timestamp\":1e300,\"duration\":-5}
";
    let r = Report::from_str(text);
    let lines: Vec<_> = r.issues.iter().map(|i| i.location).collect();
    assert_eq!(
        lines,
        [Location::Line(1), Location::Line(2), Location::Line(5)]
    );
    let out = r.render(&ReportOptions::default()).unwrap();
    assert!(
        out.starts_with("1 traces, 2 spans, 3 input problems\n"),
        "{out}"
    );
    // Span 4 (another service) ended after its SERVER parent began: moved into it, no overflow.
    let t = &r.traces[0];
    assert_eq!(t.orphans, 1, "span 3's parent was rejected");
    assert!(t.nodes[1].skew_adjusted);
}

#[test]
fn garbage_never_panics() {
    let mut corpus = String::new();
    for f in [
        "rpc_shared.jsonl",
        "orphans.jsonl",
        "skew.jsonl",
        "async_kafka.jsonl",
    ] {
        corpus.push_str(&std::fs::read_to_string(fixture(f)).unwrap());
    }
    let base: Vec<u8> = corpus.into_bytes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..1500 {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(20) {
            let i = rng.below(b.len() as u64) as usize;
            match rng.below(3) {
                0 => b[i] = rng.below(256) as u8,
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, b"{}[],:\"0aF-9\n"[rng.below(13) as usize]),
            }
        }
        let text = String::from_utf8_lossy(&b);
        let r = Report::from_str(&text);
        let _ = r.render(&ReportOptions::default()).unwrap();
        for t in &r.traces {
            // The critical path moves strictly back in time and stays inside the trace.
            let path = t.critical_path();
            for w in path.windows(2) {
                assert!(w[0].2 <= w[1].1, "{path:?}");
            }
            for &(n, s, e) in &path {
                assert!(
                    s < e && t.nodes[n].start().unwrap() <= s && e <= t.nodes[n].end().unwrap()
                );
            }
            assert_eq!(t.preorder().len(), t.nodes.len());
        }
        let lines = text.lines().count();
        for i in &r.issues {
            if let Location::Line(n) = i.location {
                assert!(n >= 1 && n <= lines.max(1), "{i}");
            }
        }
        let _ = parse_messages(b.split(|&c| c == b'\n'));
    }
}

// ---------------------------------------------------------------- critical path, independently

/// Reference critical path on a small tree, written recursively and with linear scans:
/// the same rule as the library documents, computed without its binary search and cursors.
fn reference_path(iv: &[(i64, i64)], parent: &[Option<usize>]) -> Vec<(usize, i64, i64)> {
    let n = iv.len();
    let kids: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..n).filter(|&c| parent[c] == Some(i)).collect())
        .collect();
    let last = (0..n)
        .max_by_key(|&i| (iv[i].1, iv[i].0, std::cmp::Reverse(i)))
        .unwrap();
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    fn descend(
        s: usize,
        mut point: i64,
        iv: &[(i64, i64)],
        kids: &[Vec<usize>],
        visited: &mut HashSet<usize>,
        out: &mut Vec<(usize, i64, i64)>,
    ) {
        loop {
            point = point.min(iv[s].1);
            let next = kids[s]
                .iter()
                .copied()
                .filter(|c| !visited.contains(c) && iv[*c].1 <= point && iv[*c].1 > iv[s].0)
                .max_by_key(|&c| (iv[c].1, iv[c].0, c));
            match next {
                Some(c) => {
                    if point > iv[c].1 {
                        out.push((s, iv[c].1, point));
                    }
                    visited.insert(c);
                    descend(c, iv[c].1, iv, kids, visited, out);
                    point = iv[c].0;
                }
                None => {
                    if point > iv[s].0 {
                        out.push((s, iv[s].0, point));
                    }
                    return;
                }
            }
        }
    }
    let mut from = Some(last);
    while let Some(start) = from {
        visited.insert(start);
        descend(start, iv[start].1, iv, &kids, &mut visited, &mut out);
        let mut cur = start;
        let mut point = iv[start].1;
        while let Some(p) = parent[cur] {
            visited.insert(cur);
            point = point.min(iv[cur].0);
            descend(p, point, iv, &kids, &mut visited, &mut out);
            cur = p;
        }
        // At a root: jump to whatever ended last before it started (and before the path).
        let limit = iv[cur].0.min(point);
        from = (0..n)
            .filter(|&i| iv[i].1 <= limit)
            .max_by_key(|&i| (iv[i].1, iv[i].0, std::cmp::Reverse(i)));
    }
    out.sort_by_key(|&(i, s, _)| (s, i));
    out
}

/// Random tree: mostly children inside their parent, some overflowing (async), one service.
fn random_tree(rng: &mut Rng, n: usize) -> (Vec<(i64, i64)>, Vec<Option<usize>>) {
    let mut iv = vec![(0, 1 + rng.below(1000) as i64)];
    let mut parent = vec![None];
    for i in 1..n {
        if rng.below(8) == 0 {
            // Another root (an orphan subtree) anywhere in time.
            let s = rng.below(2000) as i64;
            iv.push((s, s + 1 + rng.below(500) as i64));
            parent.push(None);
            continue;
        }
        let p = rng.below(i as u64) as usize;
        let (ps, pe) = iv[p];
        let s = ps + rng.below((pe - ps) as u64 + 1) as i64;
        let e = if rng.below(5) == 0 {
            s + 1 + rng.below(600) as i64
        } else {
            s + 1 + rng.below((pe - s).max(1) as u64) as i64
        };
        iv.push((s, e));
        parent.push(Some(p));
    }
    (iv, parent)
}

fn tree_json(trace: &str, iv: &[(i64, i64)], parent: &[Option<usize>]) -> String {
    (0..iv.len())
        .map(|i| {
            let par = match parent[i] {
                Some(p) => Some(p as u64 + 1),
                None if i > 0 => Some(0xdead_0000 + i as u64),
                None => None,
            };
            span_json(
                trace,
                i as u64 + 1,
                par,
                "svc",
                &format!("op{}", i % 7),
                None,
                T + iv[i].0,
                iv[i].1 - iv[i].0,
            )
        })
        .collect()
}

#[test]
fn critical_path_matches_reference_on_random_trees() {
    let mut rng = Rng(7);
    for round in 0..300 {
        let n = 1 + rng.below(40) as usize;
        let (iv, parent) = random_tree(&mut rng, n);
        let r = Report::from_str(&tree_json("00000000000000aa", &iv, &parent));
        let t = &r.traces[0];
        // Node i is span id i+1 and was read in order, so node indices equal tree indices.
        let got: Vec<(usize, i64, i64)> = t
            .critical_path()
            .into_iter()
            .map(|(n, s, e)| (n, s - T, e - T))
            .collect();
        assert_eq!(
            got,
            reference_path(&iv, &parent),
            "round {round}: {iv:?} {parent:?}"
        );
        // Sections never overlap and end at the trace end.
        for w in got.windows(2) {
            assert!(w[0].2 <= w[1].1, "round {round}: {got:?}");
        }
        assert_eq!(got.last().unwrap().2, t.end().unwrap() - T);
        let covered: i64 = got.iter().map(|&(_, s, e)| e - s).sum();
        let gaps: i64 = t.critical_gaps().iter().map(|&(s, e)| e - s).sum();
        assert_eq!(
            covered + gaps,
            got.last().unwrap().2 - got[0].1,
            "round {round}"
        );
    }
}

// ---------------------------------------------------------------- self time and contributors

#[test]
fn self_time_matches_unit_coverage_and_contributors_sum() {
    let mut rng = Rng(99);
    let mut traces = Vec::new();
    let mut expect: HashMap<String, i64> = HashMap::new();
    for k in 0..60u64 {
        let n = 1 + rng.below(30) as usize;
        let (iv, parent) = random_tree(&mut rng, n);
        let r = Report::from_str(&tree_json(&format!("{:016x}", k + 1), &iv, &parent));
        let t = r.traces.into_iter().next().unwrap();
        for i in 0..n {
            let (s, e) = iv[i];
            let covered = (s..e)
                .filter(|&x| (0..n).any(|c| parent[c] == Some(i) && iv[c].0 <= x && x < iv[c].1))
                .count() as i64;
            assert_eq!(stats::self_time(&t, i), (e - s) - covered);
            *expect.entry(format!("op{}", i % 7)).or_default() += (e - s) - covered;
        }
        traces.push(t);
    }
    let rows = stats::contributors(&traces);
    let total: i64 = expect.values().sum();
    assert_eq!(rows.len(), expect.len());
    for w in rows.windows(2) {
        assert!(w[0].micros >= w[1].micros);
    }
    for r in &rows {
        assert_eq!(r.micros, expect[&r.op.name], "{}", r.op);
        assert!((r.share - r.micros as f64 / total as f64).abs() < 1e-12);
    }
}

#[test]
fn a_span_without_duration_is_transparent_for_self_time_and_critical_path() {
    // root [0,100] -> mid (timestamp, no duration) -> x [10,40], y [50,90].
    let mid = "{\"traceId\":\"1\",\"parentId\":\"0000000000000001\",\"id\":\"0000000000000002\",\"name\":\"mid\",\"timestamp\":1700000000000005,\"localEndpoint\":{\"serviceName\":\"a\"}}\n";
    let text = [
        span_json("1", 1, None, "a", "root", None, T, 100),
        mid.to_owned(),
        span_json("1", 3, Some(2), "a", "x", None, T + 10, 30),
        span_json("1", 4, Some(2), "a", "y", None, T + 50, 40),
    ]
    .concat();
    let r = Report::from_str(&text);
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    let t = &r.traces[0];
    assert_eq!(
        path_of(t),
        [
            p("root", 0, 10),
            p("x", 10, 40),
            p("root", 40, 50),
            p("y", 50, 90),
            p("root", 90, 100),
        ]
    );
    let selfs: Vec<i64> = (0..4).map(|n| stats::self_time(t, n)).collect();
    assert_eq!(selfs, [30, 0, 30, 40]);
    let total: i64 = stats::contributors(&r.traces)
        .iter()
        .map(|c| c.micros)
        .sum();
    assert_eq!(total, t.duration());
}

/// Random trees where some spans have no duration, against the same tree with those spans
/// removed and their children attached to the nearest timed ancestor.
#[test]
fn untimed_spans_match_the_tree_without_them() {
    let mut rng = Rng(4242);
    for round in 0..300 {
        let n = 2 + rng.below(40) as usize;
        let (iv, parent) = random_tree(&mut rng, n);
        let untimed: Vec<bool> = (0..n).map(|_| rng.below(4) == 0).collect();
        // JSON with the untimed spans' durations left out.
        let text: String = tree_json("00000000000000bb", &iv, &parent)
            .lines()
            .zip(&untimed)
            .map(|(line, &u)| {
                let line = if u {
                    let at = line.find(",\"duration\":").unwrap();
                    let len = line[at + 1..].find(',').unwrap() + 1;
                    format!("{}{}", &line[..at], &line[at + len..])
                } else {
                    line.to_owned()
                };
                line + "\n"
            })
            .collect();
        let r = Report::from_str(&text);
        let t = &r.traces[0];
        // The contracted tree: timed spans only, each under its nearest timed ancestor.
        let keep: Vec<usize> = (0..n).filter(|&i| !untimed[i]).collect();
        let pos: HashMap<usize, usize> = keep.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        let up = |mut i: usize| loop {
            match parent[i] {
                Some(p) if untimed[p] => i = p,
                Some(p) => return Some(pos[&p]),
                None => return None,
            }
        };
        let c_iv: Vec<(i64, i64)> = keep.iter().map(|&i| iv[i]).collect();
        let c_parent: Vec<Option<usize>> = keep.iter().map(|&i| up(i)).collect();
        let got: Vec<(usize, i64, i64)> = t
            .critical_path()
            .into_iter()
            .map(|(n, s, e)| (n, s - T, e - T))
            .collect();
        let want: Vec<(usize, i64, i64)> = if keep.is_empty() {
            Vec::new()
        } else {
            reference_path(&c_iv, &c_parent)
                .into_iter()
                .map(|(k, s, e)| (keep[k], s, e))
                .collect()
        };
        assert_eq!(got, want, "round {round}: {iv:?} {parent:?} {untimed:?}");
        for i in 0..n {
            let want = match pos.get(&i) {
                None => 0,
                Some(&k) => {
                    let (s, e) = c_iv[k];
                    let covered = (s..e)
                        .filter(|&x| {
                            (0..keep.len())
                                .any(|c| c_parent[c] == Some(k) && c_iv[c].0 <= x && x < c_iv[c].1)
                        })
                        .count() as i64;
                    (e - s) - covered
                }
            };
            assert_eq!(stats::self_time(t, i), want, "round {round} node {i}");
        }
    }
}

#[test]
fn critical_path_table_sums_sections_over_traces() {
    let traces = [load("async_kafka.jsonl"), load("skew.jsonl")]
        .into_iter()
        .flat_map(|r| r.traces)
        .collect::<Vec<_>>();
    let rows = stats::critical_path_table(&traces);
    let get = |svc: &str, name: &str| {
        rows.iter()
            .find(|r| {
                r.op == Operation {
                    service: svc.into(),
                    name: name.into(),
                }
            })
            .map(|r| r.micros)
    };
    assert_eq!(get("checkout", "post /order"), Some(300));
    assert_eq!(get("fulfillment", "process"), Some(700 + 1300));
    assert_eq!(get("frontend", "get /a"), Some(4000));
    assert_eq!(get("frontend", "call"), Some(2000));
    assert_eq!(get("backend", "call"), Some(2000));
    assert_eq!(get("fulfillment", "notify"), None);
    assert_eq!(rows[0].op.name, "get /a");
}

// ---------------------------------------------------------------- percentiles

#[test]
fn percentiles_match_independent_nearest_rank() {
    let mut rng = Rng(2024);
    let mut text = String::new();
    let mut durations: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    let ops = [("web", "get /"), ("db", "select"), ("cache", "get")];
    for k in 0..250u64 {
        let tid = format!("{:016x}", k + 1);
        for (j, &(svc, name)) in ops.iter().enumerate() {
            // Different counts per operation, including 1 call of "cache get" in some traces.
            let calls = if j == 2 {
                k % 2
            } else {
                1 + j as u64 * (k % 3)
            };
            for c in 0..calls {
                let d = 1 + rng.below(50_000) as i64;
                durations.entry((svc, name)).or_default().push(d);
                let id = (j as u64 + 1) * 1000 + c + 1;
                text.push_str(&span_json(&tid, id, None, svc, name, None, T, d));
            }
        }
    }
    let r = Report::from_str(&text);
    let agg = stats::aggregates(&r.traces);
    assert_eq!(agg.len(), 3);
    for a in &agg {
        let mut v = durations[&(a.op.service.as_str(), a.op.name.as_str())].clone();
        v.sort();
        let rank = |q: f64| -> i64 {
            let k = ((q / 100.0) * v.len() as f64).ceil() as usize;
            v[k.max(1) - 1]
        };
        assert_eq!(a.count, v.len());
        assert_eq!(
            (a.p50, a.p90, a.p99, a.max),
            (rank(50.0), rank(90.0), rank(99.0), *v.last().unwrap()),
            "{}",
            a.op
        );
    }
    for w in agg.windows(2) {
        assert!(w[0].p99 >= w[1].p99);
    }
    let table = render::aggregates(&agg, 10);
    let a = &agg[0];
    let row = format!(
        "{:>7} {:>10} {:>10} {:>10} {:>10}  {}",
        a.count,
        render::format_micros(a.p50),
        render::format_micros(a.p90),
        render::format_micros(a.p99),
        render::format_micros(a.max),
        a.op
    );
    assert!(table.lines().any(|l| l == row), "{table}");
}

// ---------------------------------------------------------------- repeated calls

#[test]
fn four_thousand_database_calls_are_flagged() {
    let tid = "0000000000000abc";
    let mut text = span_json(
        tid,
        1,
        None,
        "orders",
        "post /tx",
        Some("SERVER"),
        T,
        900_000,
    );
    for i in 0..4000u64 {
        let ts = T + 10 + i as i64 * 200;
        text.push_str(&span_json(
            tid,
            100 + i,
            Some(1),
            "orders",
            "select item",
            Some("CLIENT"),
            ts,
            150,
        ));
    }
    // Nine calls under another parent stay below the default threshold of 10.
    text.push_str(&span_json(
        tid,
        2,
        Some(1),
        "orders",
        "audit",
        None,
        T + 10,
        100,
    ));
    for i in 0..9u64 {
        text.push_str(&span_json(
            tid,
            10_000 + i,
            Some(2),
            "orders",
            "write",
            None,
            T + 20,
            5,
        ));
    }
    let r = Report::from_str(&text);
    let found = stats::repeated_calls(&r.traces, stats::DEFAULT_REPEAT_THRESHOLD);
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!((f.count, f.total_micros), (4000, 4000 * 150));
    assert_eq!(f.op.name, "select item");
    assert_eq!(
        (f.parent.name.as_str(), f.parent_id.as_str()),
        ("post /tx", "0000000000000001")
    );
    assert_eq!(stats::repeated_calls(&r.traces, 9).len(), 2);
    let text = r.render(&ReportOptions::default()).unwrap();
    assert!(text.contains(
        "trace 0000000000000abc: 4000 x orders select item under orders post /tx (span 0000000000000001), 600.000ms in total"
    ));
}

// ---------------------------------------------------------------- scale

#[test]
fn fifty_thousand_deep_and_twenty_thousand_wide() {
    // A chain 50k deep: every span inside its parent, each 2us longer than its child.
    let n = 50_000u64;
    let tid = "00000000000000dd";
    let mut text = String::with_capacity(n as usize * 180);
    for i in 0..n {
        let parent = (i > 0).then_some(i);
        let ts = T + i as i64;
        text.push_str(&span_json(
            tid,
            i + 1,
            parent,
            "deep",
            "step",
            None,
            ts,
            2 * (n - i) as i64,
        ));
    }
    let r = Report::from_str(&text);
    let t = &r.traces[0];
    assert_eq!(t.nodes.iter().map(|x| x.depth).max(), Some(n as usize - 1));
    let path = t.critical_path();
    assert_eq!(path.len(), 2 * n as usize - 1);
    let on_path: i64 = path.iter().map(|&(_, s, e)| e - s).sum();
    assert_eq!(on_path, t.duration());
    let rendered = tree_text(t);
    assert_eq!(rendered.lines().count(), n as usize + 2);
    assert!(rendered
        .lines()
        .last()
        .unwrap()
        .contains("[depth 49999] deep: step"));
    let self_total: i64 = stats::contributors(&r.traces)
        .iter()
        .map(|c| c.micros)
        .sum();
    assert_eq!(self_total, t.duration());

    // 20k children under one root, plus the report over both traces.
    let wide = 20_000u64;
    let tid2 = "00000000000000ee";
    let mut text2 = span_json(tid2, 1, None, "wide", "root", None, T, 1_000_000);
    for i in 0..wide {
        text2.push_str(&span_json(
            tid2,
            i + 2,
            Some(1),
            "wide",
            "leaf",
            None,
            T + (i as i64 * 37) % 900_000,
            50,
        ));
    }
    let r2 = Report::from_str(&(text + &text2));
    assert_eq!(r2.traces.len(), 2);
    let out = r2
        .render(&ReportOptions {
            top: 5,
            ..ReportOptions::default()
        })
        .unwrap();
    assert!(out.contains("20000 x wide leaf under wide root"));
    assert!(out.starts_with("2 traces, 70001 spans, 0 input problems\n"));
}

#[test]
fn fifty_thousand_deep_each_span_before_its_parent() {
    // One service's chain 50k deep where every span ends before its parent starts (one bad
    // clock: flagged, not moved). The walk reaches each span by a jump from the root above it,
    // and must not climb the spent chain above it again each time (that took 50k^2/2 steps:
    // about 90 s here, against well under one).
    let n = 50_000u64;
    let tid = "00000000000000df";
    let mut text = String::with_capacity(n as usize * 180);
    for i in 0..n {
        let parent = (i > 0).then_some(i);
        let ts = T + 10 * (n - i) as i64;
        text.push_str(&span_json(tid, i + 1, parent, "one", "step", None, ts, 1));
    }
    let r = Report::from_str(&text);
    let t = &r.traces[0];
    assert_eq!(t.nodes.iter().map(|x| x.depth).max(), Some(n as usize - 1));
    assert_eq!(
        t.nodes.iter().filter(|x| x.starts_before_parent).count(),
        n as usize - 1
    );
    // Every span is on the path, latest (the root) last, with a 9us gap before each.
    let path = t.critical_path();
    assert_eq!(path.len(), n as usize);
    assert_eq!(path.last().map(|&(i, _, _)| i), Some(0));
    assert_eq!(t.critical_gaps().len(), n as usize - 1);
    let out = r.render(&ReportOptions::default()).unwrap();
    assert!(out.starts_with("1 traces, 50000 spans, 0 input problems\n"));
}

// ---------------------------------------------------------------- tdist's own file transport

#[test]
fn reads_what_the_tdist_file_transport_writes() {
    use tdist_core::export::JsonLinesFile;
    use tdist_core::{Extracted, Kind, Tracer};
    let path = std::env::temp_dir().join(format!("tdist-report-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sink = JsonLinesFile::create(&path).unwrap();
    let web = Tracer::builder()
        .service_name("Web")
        .transport(sink)
        .build()
        .unwrap();
    let api = web.with_service_name("api");
    {
        let mut root = web.root_span("GET /page");
        root.set_kind(Kind::Server);
        let mut client = web.child_span(&root.context(), "fetch");
        client.set_kind(Kind::Client);
        {
            let mut server = api.join_span(Extracted::Context(client.context()), "fetch");
            server.set_kind(Kind::Server);
            let _db = api.child_span(&server.context(), "query");
        }
        client.finish();
    }
    web.flush().unwrap();
    let r = Report::from_path(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(r.issues.is_empty(), "{:?}", r.issues);
    let t = &r.traces[0];
    assert_eq!(
        shape(t),
        [
            (0, "web", "get /page", false),
            (1, "web", "fetch", false),
            (2, "api", "fetch", true),
            (3, "api", "query", false),
        ]
    );
    assert_eq!(t.orphans, 0);
}

#[test]
fn clock_skew_shifts_do_not_accumulate_past_the_range() {
    // Chains of spans from alternating services (a, b, b, a, a, ...), every pair adding 2^52
    // to the shift. Trace 1: each cross-service child starts 2^52 before its parent (moved
    // forward to the parent's start), each same-service child 2^52 after its parent. Trace 2:
    // each cross-service SERVER child starts 2^52 after its CLIENT parent (moved back into
    // it), each same-service CLIENT child 2^52 before its SERVER parent.
    let big: i64 = 1 << 52;
    let mut text = String::new();
    for k in 0..4200u64 {
        let service = if k.div_ceil(2) % 2 == 0 { "a" } else { "b" };
        let parent = k.checked_sub(1).map(|p| p + 1);
        let (ts, kind, dur) = if k % 2 == 0 {
            (big, None, 1)
        } else {
            (1, None, 1)
        };
        text += &span_json("1", k + 1, parent, service, "op", kind, ts, dur);
        let (ts, kind, dur) = if k % 2 == 0 {
            (1, Some("CLIENT"), 2)
        } else {
            (big, Some("SERVER"), 1)
        };
        text += &span_json("2", k + 1, parent, service, "op", kind, ts, dur);
    }
    let r = Report::from_str(&text);
    assert!(r.issues.is_empty());
    let out = r.render(&ReportOptions::default()).unwrap();
    assert!(
        out.starts_with("2 traces, 8400 spans, 0 input problems\n"),
        "{out}"
    );
    for t in &r.traces {
        assert!(t.nodes.iter().all(|n| n.skew.abs() <= trace::MAX_SKEW));
        assert!(t.nodes.iter().filter(|n| n.skew_adjusted).count() >= 2000);
    }
}
