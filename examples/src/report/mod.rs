//! Trace report: read Zipkin v2 JSON spans, build traces, and print what a trace UI does not
//! show: a waterfall with the critical path, who contributed most time, latency percentiles per
//! operation, and operations called many times under one parent.
//!
//! The pipeline is `parse` (lenient JSON reader) → [`trace::Trace`] (tree, skew correction,
//! critical path) → [`stats`] (cross-trace tables) → [`render`] (text). [`Report`] ties them
//! together for programs such as the `trace_report` example.
//!
//! ```
//! use tdist_examples::report::{Report, ReportOptions};
//!
//! let spans = r#"[
//!   {"traceId":"1","id":"1","name":"get /","kind":"SERVER","timestamp":1000,"duration":100,"localEndpoint":{"serviceName":"web"}},
//!   {"traceId":"1","parentId":"1","id":"2","name":"query","kind":"CLIENT","timestamp":1010,"duration":80,"localEndpoint":{"serviceName":"web"}}
//! ]"#;
//! let report = Report::from_str(spans);
//! let trace = report.longest().unwrap();
//! assert_eq!(trace.duration(), 100);
//! // The query is on the critical path from 10us to 90us; the server span covers the rest.
//! let path: Vec<_> = trace.critical_path().iter().map(|&(_, s, e)| (s - 1000, e - 1000)).collect();
//! assert_eq!(path, [(0, 10), (10, 90), (90, 100)]);
//! let text = report.render(&ReportOptions::default()).unwrap();
//! assert!(text.contains("web: query [CLIENT]"));
//! ```
//!
//! # Critical path
//! The critical path of a trace is the chain of spans that determined when it ended. Because a
//! trace with asynchronous hops (a Kafka PRODUCER whose CONSUMER runs after the producer's
//! request has returned) ends when its *last span* ends, the walk starts at the span with the
//! latest (skew-corrected) end, not at the root, and goes back in time, as Jaeger's critical
//! path does:
//!
//! 1. Standing in span `S` at time `point` (initially `S`'s end), take the child of `S` that
//!    ended last at or before `point` and after `S` started. The time from that child's end to
//!    `point` is `S`'s own time on the path; continue in the child with `point` = its end.
//! 2. When `S` has no such child, the time from `S`'s start to `point` is on the path; go up to
//!    `S`'s parent with `point` = `S`'s start, never revisiting a child already walked.
//! 3. At a root (of the trace or of an orphan subtree), continue with the span, anywhere in the
//!    trace, that ended last at or before the root's start, and stop when there is none. A
//!    lost parent (an uninstrumented producer, a dropped span) thus leaves a gap in the path
//!    instead of cutting it.
//!
//! Children that overlap the chosen one but end later than `point` are off the path (they ran in
//! parallel and were not waited for). Spans without timestamp or duration are never on the path
//! and are transparent: their children are children of their nearest timed ancestor in steps 1
//! and 2 ([`Trace::timed_children`]), as they are for self time.
//! Time between two consecutive sections that no span covers (a message waiting in a broker
//! between a PRODUCER's end and its CONSUMER's start) is reported as a gap
//! ([`Trace::critical_gaps`]), not charged to any operation.
//! Each step is a binary search over children ordered by end, so the walk is O(n log n).
//!
//! # Percentiles
//! Nearest rank: with the `n` durations of an operation sorted ascending, the `p`th percentile
//! is the value at 1-based rank `ceil(p * n / 100)` — always an observed value.

pub mod parse;
pub mod render;
pub mod stats;
pub mod trace;

pub use parse::{ParseIssue, Parsed, SpanRecord};
pub use trace::{build_traces, Trace};

use std::path::Path;

/// What [`Report::render`] prints and how much.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The trace to draw (hex, any case, leading zeros optional); the longest when `None`.
    pub trace_id: Option<String>,
    /// Rows per table.
    pub top: usize,
    /// Calls of one operation under one parent that count as repeated.
    pub repeat_threshold: usize,
    /// Tree drawing options.
    pub tree: render::TreeOptions,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            trace_id: None,
            top: 20,
            repeat_threshold: stats::DEFAULT_REPEAT_THRESHOLD,
            tree: render::TreeOptions::default(),
        }
    }
}

/// Why a report could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The requested trace id is not valid hex.
    #[error("trace id {0:?} is not 1 to 32 hex digits")]
    BadTraceId(String),
    /// The requested trace is not in the input.
    #[error("trace {0} is not in the input")]
    NoSuchTrace(String),
}

/// Traces read from an input, plus the input problems that were skipped.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The traces, in order of first appearance.
    pub traces: Vec<Trace>,
    /// Skipped input items.
    pub issues: Vec<ParseIssue>,
}

impl Report {
    /// Builds traces from parsed spans.
    pub fn from_parsed(p: Parsed) -> Report {
        Report {
            traces: build_traces(p.spans),
            issues: p.issues,
        }
    }

    /// Reads JSON lines or JSON arrays from text (see [`parse::parse_str`]).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Report {
        Report::from_parsed(parse::parse_str(text))
    }

    /// Reads JSON lines or JSON arrays from a file.
    pub fn from_path(path: impl AsRef<Path>) -> std::io::Result<Report> {
        parse::parse_path(path).map(Report::from_parsed)
    }

    /// Reads messages each holding a JSON list of spans, such as records of a Zipkin Kafka topic.
    pub fn from_messages<I, B>(messages: I) -> Report
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        Report::from_parsed(parse::parse_messages(messages))
    }

    /// The trace with the longest end-to-end duration (the first one on ties).
    pub fn longest(&self) -> Option<&Trace> {
        self.traces.iter().rev().max_by_key(|t| t.duration())
    }

    /// The trace with this id (hex, any case, leading zeros optional).
    pub fn find(&self, id: &str) -> Result<&Trace, ReportError> {
        let id = id.trim();
        let ok = !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let v = ok
            .then(|| u128::from_str_radix(id, 16).ok())
            .flatten()
            .ok_or_else(|| ReportError::BadTraceId(id.to_owned()))?;
        self.traces
            .iter()
            .find(|t| t.trace_id == v)
            .ok_or_else(|| ReportError::NoSuchTrace(id.to_ascii_lowercase()))
    }

    /// Renders the full report: input problems, the tree of one trace, repeated calls,
    /// contributors, critical-path time and latency aggregates.
    pub fn render(&self, opts: &ReportOptions) -> Result<String, ReportError> {
        let mut out = String::new();
        let spans: usize = self.traces.iter().map(|t| t.nodes.len()).sum();
        out.push_str(&format!(
            "{} traces, {} spans, {} input problems\n",
            self.traces.len(),
            spans,
            self.issues.len()
        ));
        for i in self.issues.iter().take(opts.top) {
            out.push_str(&format!("skipped {i}\n"));
        }
        if self.issues.len() > opts.top {
            out.push_str(&format!(
                "... {} more problems\n",
                self.issues.len() - opts.top
            ));
        }
        let shown = match &opts.trace_id {
            Some(id) => Some(self.find(id)?),
            None => self.longest(),
        };
        if let Some(t) = shown {
            out.push('\n');
            out.push_str(&render::tree(t, &opts.tree));
        }
        let sections = [
            render::repeated(
                &stats::repeated_calls(&self.traces, opts.repeat_threshold),
                opts.repeat_threshold,
                opts.top,
            ),
            render::time_shares(
                "Top contributors (self time, all traces)",
                &stats::contributors(&self.traces),
                opts.top,
            ),
            render::time_shares(
                "Critical path time (all traces)",
                &stats::critical_path_table(&self.traces),
                opts.top,
            ) + &format!(
                "{:>12}          on the path but in no span (async hops, untraced work)\n",
                render::format_micros(stats::critical_gap_total(&self.traces))
            ),
            render::aggregates(&stats::aggregates(&self.traces), opts.top),
        ];
        for s in sections {
            out.push('\n');
            out.push_str(&s);
        }
        Ok(out)
    }
}
