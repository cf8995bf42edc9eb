//! Lenient Zipkin v2 JSON span reader: JSON lines, JSON arrays, arrays of arrays, or messages.
//!
//! ```
//! use tdist_examples::report::parse::parse_str;
//!
//! let text = "{\"traceId\":\"00000000000000AB\",\"id\":\"1\",\"name\":\"GET\"}\nnot json\n";
//! let parsed = parse_str(text);
//! assert_eq!(parsed.spans.len(), 1);
//! assert_eq!(parsed.spans[0].trace_id_hex(), "00000000000000ab");
//! assert_eq!(parsed.issues[0].location.to_string(), "line 2");
//! ```

use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

/// Zipkin span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// RPC client: request sent until response received.
    Client,
    /// RPC server: request received until response sent.
    Server,
    /// Message producer.
    Producer,
    /// Message consumer.
    Consumer,
}

impl Kind {
    /// The upper-case name Zipkin uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Client => "CLIENT",
            Kind::Server => "SERVER",
            Kind::Producer => "PRODUCER",
            Kind::Consumer => "CONSUMER",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_uppercase().as_str() {
            "CLIENT" => Some(Kind::Client),
            "SERVER" => Some(Kind::Server),
            "PRODUCER" => Some(Kind::Producer),
            "CONSUMER" => Some(Kind::Consumer),
            _ => None,
        }
    }
}

/// The service name used when a span has no `localEndpoint.serviceName`.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// One span as read from JSON, normalized: lower-case names, ids as integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// Trace id; a 128-bit id whose high half is zero is shortened to 64 bits (as Zipkin does).
    pub trace_id: u128,
    /// Whether the trace id is 128 bits wide.
    pub trace_id_128: bool,
    /// Span id (never zero).
    pub id: u64,
    /// Parent span id; an all-zero parent is absent.
    pub parent_id: Option<u64>,
    /// Kind, absent for local spans.
    pub kind: Option<Kind>,
    /// Operation name, lower case; empty when absent.
    pub name: String,
    /// Local service name, lower case; [`UNKNOWN_SERVICE`] when absent.
    pub service: String,
    /// Remote service name, lower case, if any.
    pub remote_service: Option<String>,
    /// Start in epoch microseconds, absent when unknown (or zero).
    pub timestamp: Option<i64>,
    /// Duration in microseconds, absent when unknown (or zero).
    pub duration: Option<i64>,
    /// B3 shared span: this side joined a span another tracer started (an RPC server).
    pub shared: bool,
    /// Whether the span carries an `error` tag.
    pub error: bool,
}

impl SpanRecord {
    /// The trace id as 16 or 32 lower-hex characters.
    pub fn trace_id_hex(&self) -> String {
        format_trace_id(self.trace_id, self.trace_id_128)
    }

    /// The span id as 16 lower-hex characters.
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

/// Formats a trace id as 16 or 32 lower-hex characters.
pub fn format_trace_id(id: u128, wide: bool) -> String {
    if wide {
        format!("{id:032x}")
    } else {
        format!("{id:016x}")
    }
}

/// Where a problem was found in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A 1-based line of a text input.
    Line(usize),
    /// A 0-based message index (for example a Kafka record).
    Message(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Message(n) => write!(f, "message {n}"),
        }
    }
}

/// An input item that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIssue {
    /// Where it was.
    pub location: Location,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Spans read from an input, plus the items that were skipped.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The spans that were read.
    pub spans: Vec<SpanRecord>,
    /// The skipped items, in input order.
    pub issues: Vec<ParseIssue>,
}

impl Parsed {
    /// Reads the spans in `v`: `v` itself, or the items of `v` and of the arrays in it. `at` is
    /// called once per item (every value that is not an array), in document order, for the
    /// location of that item.
    fn take_value(&mut self, v: Value, mut at: impl FnMut() -> Location) {
        // Arrays nest at most two deep (`/api/v2/traces`), but walk any depth without recursion.
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                Value::Array(items) => stack.extend(items.into_iter().rev()),
                Value::Object(map) => {
                    let location = at();
                    match span_from_map(&map) {
                        Ok(s) => self.spans.push(s),
                        Err(message) => self.issues.push(ParseIssue { location, message }),
                    }
                }
                other => self.issues.push(ParseIssue {
                    location: at(),
                    message: format!(
                        "expected a span object or an array, found {}",
                        type_name(&other)
                    ),
                }),
            }
        }
    }
}

/// Byte offsets, in one valid JSON value, of the items [`Parsed::take_value`] visits: every
/// value that is not an array and lies in no object, in document order (for a span, or a
/// pretty-printed array of spans, where each span starts). One pass, no allocation.
struct ItemStarts<'a> {
    json: &'a [u8],
    pos: usize,
    /// Objects open at `pos` (nothing inside an object is an item).
    objects: usize,
    /// The next non-whitespace byte starts a value (or, in an object, a key).
    value_next: bool,
}

impl<'a> ItemStarts<'a> {
    fn new(json: &'a [u8]) -> Self {
        ItemStarts {
            json,
            pos: 0,
            objects: 0,
            value_next: true,
        }
    }
}

impl Iterator for ItemStarts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.pos < self.json.len() {
            let at = self.pos;
            let b = self.json[at];
            self.pos += 1;
            let starts_item = self.value_next && self.objects == 0;
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                // An array is not an item; its elements may be.
                b'[' | b',' | b':' => {
                    self.value_next = true;
                    continue;
                }
                b']' => {}
                b'}' => self.objects = self.objects.saturating_sub(1),
                b'{' => self.objects += 1,
                b'"' => {
                    // Skip the string, escapes included.
                    while self.pos < self.json.len() {
                        let c = self.json[self.pos];
                        self.pos += if c == b'\\' { 2 } else { 1 };
                        if c == b'"' {
                            break;
                        }
                    }
                }
                // The first byte of a number or literal; the rest follow with `value_next` unset.
                _ => {}
            }
            self.value_next = false;
            if starts_item && b != b']' && b != b'}' {
                return Some(at);
            }
        }
        None
    }
}

/// Reads spans from a file; see [`parse_str`].
pub fn parse_path(path: impl AsRef<Path>) -> std::io::Result<Parsed> {
    let bytes = std::fs::read(path)?;
    Ok(parse_str(&String::from_utf8_lossy(&bytes)))
}

/// Reads spans from text: JSON lines (one span or one array of spans per line, as tdist's file
/// transport writes) or whole JSON documents (an array of spans, or an array of arrays as
/// `GET /api/v2/traces` returns, pretty-printed or not).
///
/// The whole text is first read as a stream of JSON values; if that fails anywhere, it is read
/// line by line and every line that is not valid JSON is reported with its 1-based number and
/// skipped. Objects that are valid JSON but not valid spans are reported at the line where they
/// start (in an array too: each object at its own line). A UTF-8 byte-order mark at the start of
/// the text is skipped.
pub fn parse_str(text: &str) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Parsed::default();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |offset: usize| line_starts.partition_point(|&s| s <= offset);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => return out,
            Some(Ok(v)) => {
                let mut starts = ItemStarts::new(&text.as_bytes()[start..stream.byte_offset()]);
                let mut last = 0;
                out.take_value(v, || {
                    // Never short for a value serde_json accepted; if it were, keep the last.
                    last = starts.next().unwrap_or(last);
                    Location::Line(line_of(start + last))
                });
            }
            Some(Err(_)) => break,
        }
    }
    // Not a clean stream of JSON values: start over line by line.
    out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) => out.take_value(v, || Location::Line(i + 1)),
            Err(e) => out.issues.push(ParseIssue {
                location: Location::Line(i + 1),
                message: format!("malformed JSON: {e}"),
            }),
        }
    }
    out
}

/// Reads spans from a sequence of messages, each a JSON list of spans or one span (what tdist's
/// and Zipkin's Kafka transports publish). A message that is not valid JSON is reported with its
/// 0-based index and skipped. This is the hook for reading spans from a Kafka topic.
pub fn parse_messages<I, B>(messages: I) -> Parsed
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    let mut out = Parsed::default();
    for (i, m) in messages.into_iter().enumerate() {
        match serde_json::from_slice::<Value>(m.as_ref()) {
            Ok(v) => out.take_value(v, || Location::Message(i)),
            Err(e) => out.issues.push(ParseIssue {
                location: Location::Message(i),
                message: format!("malformed JSON: {e}"),
            }),
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses 1 to `max_len` hex digits, either case.
fn parse_hex(s: &str, max_len: usize) -> Option<u128> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

fn id_field(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_hex(s, 16)
            .map(|v| Some(v as u64))
            .ok_or_else(|| format!("{key} {s:?} is not 1 to 16 hex digits")),
        Some(other) => Err(format!("{key} is {}, not a string", type_name(other))),
    }
}

/// Largest accepted timestamp or duration: 2^52 microseconds (about 142 years after 1970), so
/// that sums and clock-skew shifts of any input stay far from `i64` overflow.
pub const MAX_MICROS: i64 = 1 << 52;

/// A positive integer field in microseconds; zero, negative or absent means unknown.
fn micros_field(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    let v = micros_value(map, key)?;
    match v {
        Some(v) if v > MAX_MICROS => Err(format!("{key} {v} is out of range")),
        _ => Ok(v),
    }
}

fn micros_value(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .or_else(|| n.as_u64().map(|u| u.min(i64::MAX as u64) as i64))
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(0);
            Ok((v > 0).then_some(v))
        }
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(v) => Ok((v > 0).then_some(v)),
            Err(_) => Err(format!("{key} {s:?} is not an integer")),
        },
        Some(other) => Err(format!("{key} is {}, not a number", type_name(other))),
    }
}

fn endpoint_service(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)?
        .get("serviceName")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
}

/// Builds a span from a JSON object, leniently: only `traceId` and `id` are required.
fn span_from_map(map: &Map<String, Value>) -> Result<SpanRecord, String> {
    let trace = match map.get("traceId") {
        Some(Value::String(s)) => {
            parse_hex(s, 32).ok_or_else(|| format!("traceId {s:?} is not 1 to 32 hex digits"))?
        }
        Some(other) => return Err(format!("traceId is {}, not a string", type_name(other))),
        None => return Err("span without traceId".to_owned()),
    };
    if trace == 0 {
        return Err("traceId is all zeros".to_owned());
    }
    let id = id_field(map, "id")?.ok_or("span without id")?;
    if id == 0 {
        return Err("span id is all zeros".to_owned());
    }
    let parent_id = id_field(map, "parentId")?.filter(|&p| p != 0);
    let kind = match map.get("kind") {
        Some(Value::String(s)) => Kind::parse(s),
        _ => None,
    };
    let tags = map.get("tags").and_then(Value::as_object);
    Ok(SpanRecord {
        trace_id: trace,
        trace_id_128: trace >> 64 != 0,
        id,
        parent_id,
        kind,
        name: map
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default(),
        service: endpoint_service(map, "localEndpoint")
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned()),
        remote_service: endpoint_service(map, "remoteEndpoint"),
        timestamp: micros_field(map, "timestamp")?,
        duration: micros_field(map, "duration")?,
        shared: map.get("shared").and_then(Value::as_bool).unwrap_or(false),
        error: tags.is_some_and(|t| t.contains_key("error")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_normalized() {
        let p = parse_str(
            r#"{"traceId":"0000000000000000000000000000ABCD","id":"00000000000000FF","parentId":"0000000000000000"}"#,
        );
        assert!(p.issues.is_empty(), "{:?}", p.issues);
        let s = &p.spans[0];
        assert_eq!(s.trace_id_hex(), "000000000000abcd");
        assert_eq!(s.id_hex(), "00000000000000ff");
        assert_eq!(s.parent_id, None);
        assert_eq!(s.service, UNKNOWN_SERVICE);
        assert_eq!((s.timestamp, s.duration, s.kind), (None, None, None));
    }

    #[test]
    fn bad_spans_are_reported_not_fatal() {
        let text = "{\"traceId\":\"zz\",\"id\":\"1\"}\n{\"traceId\":\"1\"}\n42\n{\"traceId\":\"1\",\"id\":\"2\"}\n";
        let p = parse_str(text);
        assert_eq!(p.spans.len(), 1);
        let lines: Vec<_> = p.issues.iter().map(|i| i.location).collect();
        assert_eq!(
            lines,
            [Location::Line(1), Location::Line(2), Location::Line(3)]
        );
    }

    #[test]
    fn pretty_printed_array_of_arrays() {
        let text = "[\n  [\n    {\"traceId\": \"1\", \"id\": \"1\"}\n  ],\n  [ {\"traceId\": \"2\", \"id\": \"1\"} ]\n]\n";
        let p = parse_str(text);
        assert!(p.issues.is_empty());
        assert_eq!(p.spans.len(), 2);
    }

    #[test]
    fn messages() {
        let p = parse_messages([&b"[{\"traceId\":\"1\",\"id\":\"1\"}]"[..], b"{oops"]);
        assert_eq!(p.spans.len(), 1);
        assert_eq!(p.issues[0].location, Location::Message(1));
    }
}
