//! Cross-trace tables: self-time contributors, critical-path time, latency percentiles and
//! repeated calls.
//!
//! ```
//! use tdist_examples::report::{stats, Report};
//!
//! let mut text = String::from(r#"{"traceId":"1","id":"1","name":"tx","timestamp":1,"duration":100}"#);
//! for i in 2..14 {
//!     text += &format!("\n{{\"traceId\":\"1\",\"parentId\":\"1\",\"id\":\"{i:x}\",\"name\":\"select\",\"timestamp\":{},\"duration\":5}}", i * 6);
//! }
//! let report = Report::from_str(&text);
//! let found = stats::repeated_calls(&report.traces, stats::DEFAULT_REPEAT_THRESHOLD);
//! assert_eq!((found[0].count, found[0].op.name.as_str()), (12, "select"));
//! // tx ran 100us, 12 x 5us of it in its children.
//! assert_eq!(stats::self_time(&report.traces[0], 0), 40);
//! let agg = stats::aggregates(&report.traces);
//! assert_eq!((agg[0].op.name.as_str(), agg[0].p50), ("tx", 100));
//! ```

use super::trace::Trace;
use std::collections::HashMap;

/// A service and operation name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation {
    /// Local service name.
    pub service: String,
    /// Span name.
    pub name: String,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.service, self.name)
    }
}

fn op_of(t: &Trace, n: usize) -> Operation {
    let s = &t.nodes[n].span;
    Operation {
        service: s.service.clone(),
        name: s.name.clone(),
    }
}

/// Time attributed to one operation, summed over traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeShare {
    /// The operation.
    pub op: Operation,
    /// Microseconds attributed to it.
    pub micros: i64,
    /// Its share of the total over all operations, in [0, 1].
    pub share: f64,
}

fn ranked(map: HashMap<Operation, i64>) -> Vec<TimeShare> {
    let total: i64 = map.values().fold(0i64, |a, &b| a.saturating_add(b));
    let mut out: Vec<TimeShare> = map
        .into_iter()
        .map(|(op, micros)| TimeShare {
            share: if total > 0 {
                micros as f64 / total as f64
            } else {
                0.0
            },
            op,
            micros,
        })
        .collect();
    out.sort_by(|a, b| b.micros.cmp(&a.micros).then_with(|| a.op.cmp(&b.op)));
    out
}

/// Self time of one node: its duration minus the union of its timed children's intervals
/// ([`Trace::timed_children`]: children of an untimed child count as its own), each clipped to
/// the node's own interval. 0 for a span without timestamp or duration.
pub fn self_time(t: &Trace, n: usize) -> i64 {
    let Some((s, e)) = t.nodes[n].timed() else {
        return 0;
    };
    let mut iv: Vec<(i64, i64)> = t
        .timed_children(n)
        .into_iter()
        .filter_map(|c| t.nodes[c].timed())
        .map(|(cs, ce)| (cs.max(s), ce.min(e)))
        .filter(|(cs, ce)| ce > cs)
        .collect();
    iv.sort_unstable();
    let mut covered = 0;
    let mut cur: Option<(i64, i64)> = None;
    for (a, b) in iv {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            _ => {
                if let Some((ca, cb)) = cur {
                    covered += cb - ca;
                }
                cur = Some((a, b));
            }
        }
    }
    if let Some((ca, cb)) = cur {
        covered += cb - ca;
    }
    (e - s) - covered
}

/// Self time per operation summed over all traces, largest first, with share of the total.
pub fn contributors(traces: &[Trace]) -> Vec<TimeShare> {
    let mut map = HashMap::new();
    for t in traces {
        for n in 0..t.nodes.len() {
            let st = self_time(t, n);
            if t.nodes[n].timed().is_some() {
                let e: &mut i64 = map.entry(op_of(t, n)).or_insert(0);
                *e = e.saturating_add(st);
            }
        }
    }
    ranked(map)
}

/// Critical-path time per operation summed over all traces, largest first.
pub fn critical_path_table(traces: &[Trace]) -> Vec<TimeShare> {
    let mut map = HashMap::new();
    for t in traces {
        for (n, node) in t.nodes.iter().enumerate() {
            if !node.critical.is_empty() {
                let e: &mut i64 = map.entry(op_of(t, n)).or_insert(0);
                *e = e.saturating_add(node.critical_time());
            }
        }
    }
    ranked(map)
}

/// Total critical-path time not covered by any span (see [`Trace::critical_gaps`]) over all
/// traces, microseconds.
pub fn critical_gap_total(traces: &[Trace]) -> i64 {
    traces
        .iter()
        .flat_map(|t| t.critical_gaps())
        .fold(0i64, |a, (s, e)| a.saturating_add(e - s))
}

/// Latency distribution of one operation over all traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The operation.
    pub op: Operation,
    /// Spans with a duration.
    pub count: usize,
    /// Spans without a duration (not in the percentiles).
    pub without_duration: usize,
    /// Median, microseconds (nearest rank).
    pub p50: i64,
    /// 90th percentile, microseconds (nearest rank).
    pub p90: i64,
    /// 99th percentile, microseconds (nearest rank).
    pub p99: i64,
    /// Largest duration, microseconds.
    pub max: i64,
}

/// Nearest-rank percentile of ascending `sorted` values: the value at 1-based rank
/// `ceil(p / 100 * n)` (rank at least 1). `None` for an empty slice.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(p) * n).div_ceil(100).clamp(1, n);
    Some(sorted[rank as usize - 1])
}

/// Count, p50, p90, p99 and max duration per operation over all traces, ordered by p99
/// (largest first), then by operation.
pub fn aggregates(traces: &[Trace]) -> Vec<Aggregate> {
    let mut map: HashMap<Operation, (Vec<i64>, usize)> = HashMap::new();
    for t in traces {
        for (n, node) in t.nodes.iter().enumerate() {
            let e = map.entry(op_of(t, n)).or_default();
            match node.span.duration {
                Some(d) => e.0.push(d),
                None => e.1 += 1,
            }
        }
    }
    let mut out: Vec<Aggregate> = map
        .into_iter()
        .map(|(op, (mut v, without))| {
            v.sort_unstable();
            let pct = |p| nearest_rank(&v, p).unwrap_or(0);
            Aggregate {
                count: v.len(),
                without_duration: without,
                p50: pct(50),
                p90: pct(90),
                p99: pct(99),
                max: v.last().copied().unwrap_or(0),
                op,
            }
        })
        .collect();
    out.sort_by(|a, b| b.p99.cmp(&a.p99).then_with(|| a.op.cmp(&b.op)));
    out
}

/// One operation called many times under one parent span in one trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedCall {
    /// Trace id (hex).
    pub trace_id: String,
    /// The parent span's operation.
    pub parent: Operation,
    /// The parent span id (hex).
    pub parent_id: String,
    /// The repeated child operation.
    pub op: Operation,
    /// How many times it was called under that parent.
    pub count: usize,
    /// Sum of those calls' durations, microseconds.
    pub total_micros: i64,
}

/// Default number of calls of one operation under one parent that is reported.
pub const DEFAULT_REPEAT_THRESHOLD: usize = 10;

/// Finds parents with at least `threshold` children of the same operation, largest count first.
pub fn repeated_calls(traces: &[Trace], threshold: usize) -> Vec<RepeatedCall> {
    let mut out = Vec::new();
    for t in traces {
        for (p, node) in t.nodes.iter().enumerate() {
            if node.children.len() < threshold.max(1) {
                continue;
            }
            let mut counts: HashMap<Operation, (usize, i64)> = HashMap::new();
            for &c in &node.children {
                let e = counts.entry(op_of(t, c)).or_default();
                e.0 += 1;
                e.1 = e.1.saturating_add(t.nodes[c].span.duration.unwrap_or(0));
            }
            for (op, (count, total)) in counts {
                if count >= threshold.max(1) {
                    out.push(RepeatedCall {
                        trace_id: t.trace_id_hex(),
                        parent: op_of(t, p),
                        parent_id: node.span.id_hex(),
                        op,
                        count,
                        total_micros: total,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| {
            (&a.trace_id, &a.parent_id, &a.op).cmp(&(&b.trace_id, &b.parent_id, &b.op))
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn nearest_rank_small() {
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(nearest_rank(&v, 50), Some(50));
        assert_eq!(nearest_rank(&v, 90), Some(90));
        assert_eq!(nearest_rank(&v, 99), Some(100));
        assert_eq!(nearest_rank(&v[..1], 50), Some(10));
        assert_eq!(nearest_rank(&[], 50), None);
    }
}
