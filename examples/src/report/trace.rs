//! One trace as a tree: parent links, shared client/server spans, orphans, clock-skew
//! correction and the critical path. Everything is iterative and O(n log n).
//!
//! ```
//! use tdist_examples::report::parse::parse_str;
//! use tdist_examples::report::build_traces;
//!
//! // A B3 RPC: the client and the server report span 2; the server side is the client's child.
//! let traces = build_traces(parse_str(concat!(
//!     r#"{"traceId":"1","id":"1","name":"page","timestamp":100,"duration":50,"localEndpoint":{"serviceName":"web"}}"#, "\n",
//!     r#"{"traceId":"1","parentId":"1","id":"2","kind":"CLIENT","name":"get","timestamp":110,"duration":30,"localEndpoint":{"serviceName":"web"}}"#, "\n",
//!     r#"{"traceId":"1","parentId":"1","id":"2","kind":"SERVER","name":"get","timestamp":105,"duration":10,"shared":true,"localEndpoint":{"serviceName":"api"}}"#, "\n",
//! )).spans);
//! let t = &traces[0];
//! let server = &t.nodes[2];
//! assert_eq!(server.parent, Some(1));
//! assert_eq!(server.depth, 2);
//! // It started before its client (clock skew): moved to the middle of the client span.
//! assert_eq!((server.skew_adjusted, server.start()), (true, Some(120)));
//! ```
//!
//! # Tree rules
//! - A span's parent is the span named by its `parentId`. When both sides of a B3 shared span are
//!   present (same id, one with `shared: true`, or without the flag one `SERVER` and one other
//!   kind), the shared SERVER side is the child of the CLIENT side, and spans whose `parentId` is
//!   that id hang under the SERVER side (they ran in the server).
//! - The same span reported twice (same id and side) is merged: the first copy wins, missing
//!   fields are filled from later ones; merged copies are counted in [`Trace::duplicates`].
//! - A span whose parent is absent is an *orphan*: it roots its own subtree, shown after the
//!   main tree and counted in [`Trace::orphans`]. Parent cycles are cut the same way.
//!
//! # Clock-skew rule
//! Timestamps from different services come from different clocks. Walking the tree top-down,
//! every span first inherits its parent's correction when both were recorded by the same
//! service (same clock). Then, for a child recorded by a *different* service than its parent:
//! - synchronous RPC (CLIENT parent, SERVER child): if the child starts before the parent or ends
//!   after it, it is moved so that it sits in the middle of the client span (the network latency
//!   is split evenly both ways, as Zipkin does); if it is longer than the client span, its start
//!   is aligned with the client's start;
//! - any other cross-service child (messaging, unknown kinds): if it starts before its parent it
//!   is moved to start with the parent (an asynchronous child may end after its parent).
//!
//! A moved span is flagged with the shift applied, and the shift carries down to its
//! same-service descendants. A same-service child that starts before its parent is not moved
//! (one clock cannot disagree with itself) but is flagged. A span's total shift is limited to
//! ±[`MAX_SKEW`] (2^53 µs): shifts add up along a chain, and no input may overflow.

use super::parse::{format_trace_id, Kind, SpanRecord, MAX_MICROS};
use std::collections::HashMap;

/// Largest clock-skew correction of one span, either way: 2^53 microseconds. Shifts add up
/// along a chain of spans from alternating services; without a bound, a few thousand crafted
/// spans would push adjusted times past `i64`. Real clocks are never this far apart.
pub const MAX_SKEW: i64 = 2 * MAX_MICROS;

/// A span placed in its trace.
#[derive(Debug, Clone)]
pub struct Node {
    /// The span as read.
    pub span: SpanRecord,
    /// Index of the parent node, `None` for roots.
    pub parent: Option<usize>,
    /// Children, ordered by (adjusted) start time; untimed children last.
    pub children: Vec<usize>,
    /// Depth below its root (roots are 0).
    pub depth: usize,
    /// Clock-skew correction applied to the timestamp, in microseconds.
    pub skew: i64,
    /// This span was moved by the skew rule itself (not only inheriting a parent's shift).
    pub skew_adjusted: bool,
    /// This span starts before its parent (after correction) within one service.
    pub starts_before_parent: bool,
    /// The parent id could not be found in the trace (or formed a cycle).
    pub missing_parent: Option<u64>,
    /// Sections `(start, end)` of this span that lie on the critical path, in absolute
    /// adjusted microseconds, latest first.
    pub critical: Vec<(i64, i64)>,
}

impl Node {
    /// Adjusted start, if the span has a timestamp.
    pub fn start(&self) -> Option<i64> {
        self.span.timestamp.map(|t| t + self.skew)
    }

    /// Adjusted end: start plus duration (a span without duration ends where it starts).
    pub fn end(&self) -> Option<i64> {
        self.start().map(|s| s + self.span.duration.unwrap_or(0))
    }

    /// Both start and duration are known.
    pub fn timed(&self) -> Option<(i64, i64)> {
        let s = self.start()?;
        Some((s, s + self.span.duration?))
    }

    /// Time of this span on the critical path, in microseconds.
    pub fn critical_time(&self) -> i64 {
        self.critical.iter().map(|(s, e)| e - s).sum()
    }
}

/// One trace, built from its spans.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Trace id.
    pub trace_id: u128,
    /// Whether the trace id is 128 bits wide.
    pub trace_id_128: bool,
    /// All nodes; indices are stable.
    pub nodes: Vec<Node>,
    /// Root nodes: true roots (no parent id) first, then orphans, each group by start time.
    pub roots: Vec<usize>,
    /// Number of spans whose parent is missing.
    pub orphans: usize,
    /// Number of duplicate span reports merged away.
    pub duplicates: usize,
}

/// Groups spans by trace id and builds each trace, in order of first appearance.
pub fn build_traces(spans: Vec<SpanRecord>) -> Vec<Trace> {
    let mut order: Vec<u128> = Vec::new();
    let mut groups: HashMap<u128, Vec<SpanRecord>> = HashMap::new();
    for s in spans {
        groups
            .entry(s.trace_id)
            .or_insert_with(|| {
                order.push(s.trace_id);
                Vec::new()
            })
            .push(s);
    }
    order
        .into_iter()
        .filter_map(|id| groups.remove(&id))
        .map(Trace::build)
        .collect()
}

/// Key of a span within a trace: its id and whether it is the server side of a shared span.
type Side = (u64, bool);

impl Trace {
    /// Builds one trace from spans that share a trace id (an empty list gives an empty trace
    /// with id 0). Never panics on span content.
    pub fn build(spans: Vec<SpanRecord>) -> Trace {
        let trace_id = spans.first().map_or(0, |s| s.trace_id);
        let trace_id_128 = spans.iter().any(|s| s.trace_id_128);
        let (nodes, index, duplicates) = dedupe(spans);
        let mut t = Trace {
            trace_id,
            trace_id_128,
            nodes,
            roots: Vec::new(),
            orphans: 0,
            duplicates,
        };
        t.link(&index);
        t.cut_cycles();
        t.correct_skew();
        t.sort_children();
        t.compute_critical_path();
        t
    }

    /// The trace id as hex.
    pub fn trace_id_hex(&self) -> String {
        format_trace_id(self.trace_id, self.trace_id_128)
    }

    /// Earliest adjusted start over all timed spans.
    pub fn start(&self) -> Option<i64> {
        self.nodes.iter().filter_map(Node::start).min()
    }

    /// Latest adjusted end over all spans.
    pub fn end(&self) -> Option<i64> {
        self.nodes.iter().filter_map(Node::end).max()
    }

    /// End-to-end duration: latest end minus earliest start (0 when nothing is timed).
    pub fn duration(&self) -> i64 {
        match (self.start(), self.end()) {
            (Some(s), Some(e)) => e - s,
            _ => 0,
        }
    }

    /// Nodes in display order: depth-first pre-order over [`Trace::roots`] (iterative).
    pub fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<usize> = self.roots.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            out.push(n);
            stack.extend(self.nodes[n].children.iter().rev());
        }
        out
    }

    /// The critical path as `(node, start, end)` sections in time order.
    pub fn critical_path(&self) -> Vec<(usize, i64, i64)> {
        let mut out: Vec<(usize, i64, i64)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.critical.iter().map(move |&(s, e)| (i, s, e)))
            .collect();
        out.sort_by_key(|&(i, s, _)| (s, i));
        out
    }

    /// The timed spans whose nearest timed ancestor is `n`: its timed children, and the timed
    /// descendants it reaches through spans without a timestamp or duration only (an untimed span
    /// is transparent: its children count as children of its nearest timed ancestor). In
    /// pre-order. Iterative; over all timed `n` together, every node is visited at most once.
    pub fn timed_children(&self, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack: Vec<usize> = self.nodes[n].children.iter().rev().copied().collect();
        while let Some(c) = stack.pop() {
            if self.nodes[c].timed().is_some() {
                out.push(c);
            } else {
                stack.extend(self.nodes[c].children.iter().rev());
            }
        }
        out
    }

    /// Gaps between consecutive critical-path sections: time on the way to the trace's end that
    /// no span on the path covers (a message waiting in a broker, untraced work).
    pub fn critical_gaps(&self) -> Vec<(i64, i64)> {
        self.critical_path()
            .windows(2)
            .filter(|w| w[1].1 > w[0].2)
            .map(|w| (w[0].2, w[1].1))
            .collect()
    }

    fn link(&mut self, index: &HashMap<Side, usize>) {
        for i in 0..self.nodes.len() {
            let (id, shared, parent_id) = {
                let s = &self.nodes[i].span;
                (s.id, self.is_shared_side(i, index), s.parent_id)
            };
            let parent = if shared && index.contains_key(&(id, false)) {
                index.get(&(id, false)).copied()
            } else if let Some(p) = parent_id {
                let found = index
                    .get(&(p, true))
                    .or_else(|| index.get(&(p, false)))
                    .copied()
                    .filter(|&j| j != i);
                if found.is_none() {
                    self.nodes[i].missing_parent = Some(p);
                    self.orphans += 1;
                }
                found
            } else {
                None
            };
            self.nodes[i].parent = parent;
            if let Some(p) = parent {
                self.nodes[p].children.push(i);
            }
        }
    }

    fn is_shared_side(&self, i: usize, index: &HashMap<Side, usize>) -> bool {
        let id = self.nodes[i].span.id;
        index.get(&(id, true)) == Some(&i)
    }

    /// Makes roots of nodes unreachable from any root (parent cycles), then sets depths.
    fn cut_cycles(&mut self) {
        let mut reached = vec![false; self.nodes.len()];
        let mut roots: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].parent.is_none())
            .collect();
        self.mark_depths(&roots, &mut reached);
        for i in 0..self.nodes.len() {
            if reached[i] {
                continue;
            }
            // `i` lies on or below a cycle: walk up to a node on the cycle and cut there.
            let mut seen = std::collections::HashSet::new();
            let mut n = i;
            while seen.insert(n) {
                match self.nodes[n].parent {
                    Some(p) => n = p,
                    None => break,
                }
            }
            if let Some(p) = self.nodes[n].parent.take() {
                self.nodes[p].children.retain(|&c| c != n);
                self.nodes[n].missing_parent = Some(self.nodes[p].span.id);
                self.orphans += 1;
            }
            roots.push(n);
            self.mark_depths(&[n], &mut reached);
        }
        let key = |n: &Node| (n.missing_parent.is_some(), n.start().is_none(), n.start());
        roots.sort_by_key(|&r| key(&self.nodes[r]));
        self.roots = roots;
    }

    fn mark_depths(&mut self, from: &[usize], reached: &mut [bool]) {
        let mut stack: Vec<(usize, usize)> = from.iter().map(|&r| (r, 0)).collect();
        while let Some((n, d)) = stack.pop() {
            if reached[n] {
                continue;
            }
            reached[n] = true;
            self.nodes[n].depth = d;
            stack.extend(self.nodes[n].children.iter().map(|&c| (c, d + 1)));
        }
    }

    /// Applies the clock-skew rule (module docs) top-down, iteratively.
    fn correct_skew(&mut self) {
        let mut stack: Vec<usize> = self.roots.clone();
        while let Some(n) = stack.pop() {
            if let Some(p) = self.nodes[n].parent {
                self.adjust_child(p, n);
            }
            stack.extend(self.nodes[n].children.iter().copied());
        }
    }

    fn adjust_child(&mut self, p: usize, c: usize) {
        let same_service = self.nodes[p].span.service == self.nodes[c].span.service;
        if same_service {
            self.nodes[c].skew = self.nodes[p].skew;
        }
        let (Some(ps), Some(cs)) = (self.nodes[p].start(), self.nodes[c].start()) else {
            return;
        };
        if same_service {
            self.nodes[c].starts_before_parent = cs < ps;
            return;
        }
        let pk = self.nodes[p].span.kind;
        let ck = self.nodes[c].span.kind;
        let shift = match (
            pk,
            ck,
            self.nodes[p].span.duration,
            self.nodes[c].span.duration,
        ) {
            (Some(Kind::Client), Some(Kind::Server), Some(pd), cd) => {
                let cd = cd.unwrap_or(0);
                if cs >= ps && cs + cd <= ps + pd {
                    0
                } else if cd <= pd {
                    ps + (pd - cd) / 2 - cs
                } else {
                    ps - cs
                }
            }
            _ if cs < ps => ps - cs,
            _ => 0,
        };
        if shift != 0 {
            // Shifts carry down and add up along a chain; the bound keeps adjusted times of any
            // input far from `i64` overflow.
            self.nodes[c].skew = (self.nodes[c].skew + shift).clamp(-MAX_SKEW, MAX_SKEW);
            self.nodes[c].skew_adjusted = true;
        }
    }

    fn sort_children(&mut self) {
        for i in 0..self.nodes.len() {
            let mut kids = std::mem::take(&mut self.nodes[i].children);
            kids.sort_by_key(|&c| {
                let n = &self.nodes[c];
                (n.start().is_none(), n.start(), n.end(), c)
            });
            self.nodes[i].children = kids;
        }
    }

    /// Critical path, walking back in time from the span that ends last (see the module docs of
    /// [`crate::report`]).
    fn compute_critical_path(&mut self) {
        // Timed children of every timed node, through untimed spans ([`Trace::timed_children`]),
        // ordered by end (then start, then index); and each timed node's nearest timed ancestor.
        let mut by_end: Vec<Vec<(i64, usize)>> = vec![Vec::new(); self.nodes.len()];
        let mut pos_in_parent = vec![0usize; self.nodes.len()];
        let mut timed_parent: Vec<Option<usize>> = vec![None; self.nodes.len()];
        for (i, list) in by_end.iter_mut().enumerate() {
            if self.nodes[i].timed().is_none() {
                continue;
            }
            let mut kids: Vec<(i64, i64, usize)> = self
                .timed_children(i)
                .into_iter()
                .filter_map(|c| self.nodes[c].timed().map(|(s, e)| (e, s, c)))
                .collect();
            kids.sort_unstable();
            for (k, &(_, _, c)) in kids.iter().enumerate() {
                pos_in_parent[c] = k;
                timed_parent[c] = Some(i);
            }
            *list = kids.into_iter().map(|(e, _, c)| (e, c)).collect();
        }
        let mut cursor: Vec<usize> = by_end.iter().map(Vec::len).collect();
        // Every timed node by (end, start, lowest index last), to start and to jump subtrees.
        let mut all: Vec<(i64, i64, std::cmp::Reverse<usize>)> = (0..self.nodes.len())
            .filter_map(|i| {
                self.nodes[i]
                    .timed()
                    .map(|(s, e)| (e, s, std::cmp::Reverse(i)))
            })
            .collect();
        all.sort_unstable();
        let Some(&(_, _, std::cmp::Reverse(last))) = all.last() else {
            return;
        };
        // A span the walk has left upwards is spent: `point` is then at or before its start and
        // never increases, so it has no child left to take and no time left on the path. Going
        // up skips spent spans (`up`, with path compression); climbing them one by one, a chain
        // of spans each ending before its parent started was climbed again after every jump
        // (quadratic in its depth).
        let mut spent = vec![false; self.nodes.len()];
        let mut up = timed_parent.clone();
        let mut cur = last;
        let mut point = self.nodes[last].timed().map_or(0, |(_, e)| e);
        loop {
            let (start, end) = self.nodes[cur].timed().unwrap_or((point, point));
            let point_here = point.min(end);
            // The child that ended last at or before `point_here`, not yet visited.
            let kids = &by_end[cur][..cursor[cur]];
            let k = kids.partition_point(|&(e, _)| e <= point_here);
            if k > 0 && kids[k - 1].0 > start {
                let (child_end, child) = kids[k - 1];
                cursor[cur] = k - 1;
                self.push_section(cur, child_end, point_here);
                cur = child;
                point = child_end;
                continue;
            }
            self.push_section(cur, start, point_here);
            cursor[cur] = 0;
            spent[cur] = true;
            // Walk up: the nearest timed ancestor that is not spent continues from where this
            // span started (untimed spans are transparent: `cur` is one of that ancestor's
            // candidate children; a spent one would take no child and add no section).
            match live_ancestor(&mut up, &spent, cur) {
                Some(p) => {
                    if timed_parent[cur] == Some(p) {
                        cursor[p] = cursor[p].min(pos_in_parent[cur]);
                    }
                    // `point` never increases: a child that starts before its parent's
                    // remaining point (clock anomalies) cannot send the walk forward again.
                    point = start.min(point_here);
                    cur = p;
                }
                // At a root (or below untimed spans only): the time before it belongs to
                // whatever ended last before it started, in any subtree (a missing parent or an
                // untraced hop becomes a gap). The limit strictly decreases from one jump to the
                // next, so this ends.
                None => {
                    let limit = start.min(point_here);
                    let k = all.partition_point(|&(e, _, _)| e <= limit);
                    let Some(&(e, _, std::cmp::Reverse(n))) = k.checked_sub(1).map(|k| &all[k])
                    else {
                        break;
                    };
                    cur = n;
                    point = e;
                }
            }
        }
    }

    fn push_section(&mut self, n: usize, from: i64, to: i64) {
        let from = from.max(self.nodes[n].start().unwrap_or(from));
        if to > from {
            self.nodes[n].critical.push((from, to));
        }
    }
}

/// The nearest ancestor of `n` along `up` (each node's nearest timed ancestor, or a later one)
/// that is not `spent`, pointing every node on the way straight at it (spent is for good).
fn live_ancestor(up: &mut [Option<usize>], spent: &[bool], n: usize) -> Option<usize> {
    let mut found = up[n];
    while let Some(a) = found.filter(|&a| spent[a]) {
        found = up[a];
    }
    let mut next = up[n];
    while let Some(a) = next.filter(|&a| Some(a) != found) {
        next = up[a];
        up[a] = found;
    }
    up[n] = found;
    found
}

/// Merges duplicate reports and decides which side of a shared id each span is.
fn dedupe(spans: Vec<SpanRecord>) -> (Vec<Node>, HashMap<Side, usize>, usize) {
    // Lenient B3 without the `shared` flag: with two reports of one id, one SERVER and one not,
    // from different services, the SERVER is the shared side. Per id, the service of its
    // reports that are neither shared nor SERVER, `None` once there are two different ones (then
    // every SERVER report of the id has one from another service): one pass, not one scan of
    // the id's reports per SERVER report (quadratic in the copies of one id).
    let mut others: HashMap<u64, Option<&str>> = HashMap::new();
    for s in &spans {
        if !s.shared && s.kind != Some(Kind::Server) {
            others
                .entry(s.id)
                .and_modify(|o| {
                    if *o != Some(s.service.as_str()) {
                        *o = None;
                    }
                })
                .or_insert(Some(s.service.as_str()));
        }
    }
    let side = |s: &SpanRecord| -> bool {
        s.shared
            || (s.kind == Some(Kind::Server)
                && match others.get(&s.id) {
                    Some(Some(service)) => *service != s.service,
                    Some(None) => true,
                    None => false,
                })
    };
    let sides: Vec<bool> = spans.iter().map(side).collect();
    let mut index: HashMap<Side, usize> = HashMap::new();
    let mut nodes: Vec<Node> = Vec::with_capacity(spans.len());
    let mut duplicates = 0;
    for (s, shared) in spans.into_iter().zip(sides) {
        let key = (s.id, shared);
        if let Some(&i) = index.get(&key) {
            merge(&mut nodes[i].span, s);
            duplicates += 1;
            continue;
        }
        index.insert(key, nodes.len());
        let mut s = s;
        s.shared = shared;
        nodes.push(Node {
            span: s,
            parent: None,
            children: Vec::new(),
            depth: 0,
            skew: 0,
            skew_adjusted: false,
            starts_before_parent: false,
            missing_parent: None,
            critical: Vec::new(),
        });
    }
    (nodes, index, duplicates)
}

fn merge(into: &mut SpanRecord, from: SpanRecord) {
    into.parent_id = into.parent_id.or(from.parent_id);
    into.kind = into.kind.or(from.kind);
    into.timestamp = into.timestamp.or(from.timestamp);
    into.duration = into.duration.or(from.duration);
    into.remote_service = into.remote_service.take().or(from.remote_service);
    into.error |= from.error;
    if into.name.is_empty() {
        into.name = from.name;
    }
    if into.service == super::parse::UNKNOWN_SERVICE {
        into.service = from.service;
    }
}
