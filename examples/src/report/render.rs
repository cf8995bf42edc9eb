//! Text rendering: the waterfall tree of one trace and the cross-trace tables.
//!
//! ```
//! use tdist_examples::report::render::{format_micros, tree, TreeOptions};
//! use tdist_examples::report::Report;
//!
//! let r = Report::from_str(r#"{"traceId":"1","id":"1","name":"job","timestamp":5,"duration":1500,"localEndpoint":{"serviceName":"w"}}"#);
//! let text = tree(&r.traces[0], &TreeOptions { bar_width: 4, ..TreeOptions::default() });
//! assert_eq!(text.lines().nth(2), Some("      +0us    1.500ms |####| * w: job"));
//! assert_eq!(format_micros(2_500_000), "2.500s");
//! ```

use super::stats::{Aggregate, RepeatedCall, TimeShare};
use super::trace::{Node, Trace};
use std::fmt::Write;

/// Formats microseconds as `123us`, `12.345ms` or `1.234s`.
pub fn format_micros(us: i64) -> String {
    let a = us.unsigned_abs();
    let sign = if us < 0 { "-" } else { "" };
    if a < 1_000 {
        format!("{sign}{a}us")
    } else if a < 1_000_000 {
        format!("{sign}{}.{:03}ms", a / 1_000, a % 1_000)
    } else {
        format!("{sign}{}.{:03}s", a / 1_000_000, (a / 1_000) % 1_000)
    }
}

/// How to draw a tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    /// Width of the bar column in characters.
    pub bar_width: usize,
    /// Depth beyond which indentation stops growing (the depth is then printed).
    pub max_indent: usize,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            bar_width: 40,
            max_indent: 24,
        }
    }
}

/// Renders one trace as an indented waterfall.
///
/// One header line, then one line per span in depth-first order (children by start time; orphan
/// subtrees after the main tree): offset from the trace start, duration, a bar (`-` the span,
/// `#` its sections on the critical path), `*` when the span is on the critical path, indented
/// `service: name [KIND]`, then flags: `shared`, `error`, `!skew <shift>` (moved by the
/// clock-skew rule), `~skew <shift>` (moved with a same-service ancestor), `!before-parent`,
/// `!orphan parent=<id>`, `!no-timestamp`, `!no-duration`.
pub fn tree(t: &Trace, opts: &TreeOptions) -> String {
    let mut out = String::new();
    let t0 = t.start().unwrap_or(0);
    let total = t.duration();
    let mut services: Vec<&str> = t.nodes.iter().map(|n| n.span.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let skewed = t.nodes.iter().filter(|n| n.skew_adjusted).count();
    let _ = writeln!(
        out,
        "trace {}: {} spans, {} services, duration {}, {} orphans, {} skew-adjusted, {} duplicates",
        t.trace_id_hex(),
        t.nodes.len(),
        services.len(),
        format_micros(total),
        t.orphans,
        skewed,
        t.duplicates
    );
    let _ = writeln!(
        out,
        "{:>10} {:>10} |{:w$}|   service: name [KIND] flags",
        "offset",
        "duration",
        "",
        w = opts.bar_width
    );
    for n in t.preorder() {
        line(&mut out, &t.nodes[n], t0, total, opts);
    }
    out
}

fn line(out: &mut String, n: &Node, t0: i64, total: i64, opts: &TreeOptions) {
    let offset = n
        .start()
        .map_or_else(|| "?".to_owned(), |s| format!("+{}", format_micros(s - t0)));
    let dur = n
        .span
        .duration
        .map_or_else(|| "?".to_owned(), format_micros);
    let bar = bar(n, t0, total, opts.bar_width);
    let mark = if n.critical.is_empty() { ' ' } else { '*' };
    let indent = "  ".repeat(n.depth.min(opts.max_indent));
    let deep = if n.depth > opts.max_indent {
        format!("[depth {}] ", n.depth)
    } else {
        String::new()
    };
    let name = if n.span.name.is_empty() {
        "(unnamed)"
    } else {
        &n.span.name
    };
    let _ = write!(
        out,
        "{offset:>10} {dur:>10} |{bar}| {mark} {indent}{deep}{}: {name}",
        n.span.service
    );
    if let Some(k) = n.span.kind {
        let _ = write!(out, " [{}]", k.as_str());
    }
    flags(out, n);
    out.push('\n');
}

fn flags(out: &mut String, n: &Node) {
    if n.span.shared {
        out.push_str(" shared");
    }
    if n.span.error {
        out.push_str(" error");
    }
    if n.skew_adjusted {
        let _ = write!(
            out,
            " !skew {}{}",
            if n.skew > 0 { "+" } else { "" },
            format_micros(n.skew)
        );
    }
    if n.skew != 0 && !n.skew_adjusted {
        let _ = write!(
            out,
            " ~skew {}{}",
            if n.skew > 0 { "+" } else { "" },
            format_micros(n.skew)
        );
    }
    if n.starts_before_parent {
        out.push_str(" !before-parent");
    }
    if let Some(p) = n.missing_parent {
        let _ = write!(out, " !orphan parent={p:016x}");
    }
    if n.span.timestamp.is_none() {
        out.push_str(" !no-timestamp");
    }
    if n.span.duration.is_none() {
        out.push_str(" !no-duration");
    }
}

fn cols(s: i64, e: i64, t0: i64, total: i64, width: usize) -> (usize, usize) {
    let w = width as i128;
    let scale = |x: i64, up: bool| -> usize {
        let num = i128::from(x - t0) * w;
        let d = i128::from(total);
        let v = if up {
            (num + d - 1).div_euclid(d)
        } else {
            num.div_euclid(d)
        };
        v.clamp(0, w) as usize
    };
    let a = scale(s, false).min(width.saturating_sub(1));
    let b = scale(e, true).max(a + 1).min(width);
    (a, b)
}

fn bar(n: &Node, t0: i64, total: i64, width: usize) -> String {
    let mut cells = vec![' '; width];
    if let (Some(s), Some(e), true) = (n.start(), n.end(), total > 0 && width > 0) {
        let (a, b) = cols(s, e, t0, total, width);
        cells[a..b].iter_mut().for_each(|c| *c = '-');
        for &(cs, ce) in &n.critical {
            let (a, b) = cols(cs, ce, t0, total, width);
            cells[a..b].iter_mut().for_each(|c| *c = '#');
        }
    }
    cells.into_iter().collect()
}

/// Renders a time-share table (contributors or critical path): at most `top` rows.
pub fn time_shares(title: &str, rows: &[TimeShare], top: usize) -> String {
    let mut out = format!("{title}\n{:>12} {:>7}  operation\n", "time", "share");
    for r in rows.iter().take(top) {
        let _ = writeln!(
            out,
            "{:>12} {:>6.1}%  {}",
            format_micros(r.micros),
            r.share * 100.0,
            r.op
        );
    }
    if rows.len() > top {
        let _ = writeln!(out, "... {} more", rows.len() - top);
    }
    out
}

/// Renders the latency aggregates table: at most `top` rows.
pub fn aggregates(rows: &[Aggregate], top: usize) -> String {
    let mut out = format!(
        "Latency per operation (nearest-rank percentiles)\n{:>7} {:>10} {:>10} {:>10} {:>10}  operation\n",
        "count", "p50", "p90", "p99", "max"
    );
    for r in rows.iter().take(top) {
        let _ = write!(
            out,
            "{:>7} {:>10} {:>10} {:>10} {:>10}  {}",
            r.count,
            format_micros(r.p50),
            format_micros(r.p90),
            format_micros(r.p99),
            format_micros(r.max),
            r.op
        );
        if r.without_duration > 0 {
            let _ = write!(out, " (+{} without duration)", r.without_duration);
        }
        out.push('\n');
    }
    if rows.len() > top {
        let _ = writeln!(out, "... {} more", rows.len() - top);
    }
    out
}

/// Renders the repeated-call findings: at most `top` rows.
pub fn repeated(rows: &[RepeatedCall], threshold: usize, top: usize) -> String {
    let mut out =
        format!("Repeated calls (>= {threshold} calls of one operation under one parent)\n");
    if rows.is_empty() {
        out.push_str("none\n");
    }
    for r in rows.iter().take(top) {
        let _ = writeln!(
            out,
            "trace {}: {} x {} under {} (span {}), {} in total",
            r.trace_id,
            r.count,
            r.op,
            r.parent,
            r.parent_id,
            format_micros(r.total_micros)
        );
    }
    if rows.len() > top {
        let _ = writeln!(out, "... {} more", rows.len() - top);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format_micros;

    #[test]
    fn micros() {
        assert_eq!(format_micros(999), "999us");
        assert_eq!(format_micros(1_000), "1.000ms");
        assert_eq!(format_micros(12_345), "12.345ms");
        assert_eq!(format_micros(1_234_567), "1.234s");
        assert_eq!(format_micros(-1_500), "-1.500ms");
    }
}
