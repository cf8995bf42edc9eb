//! What a finished span holds: the Zipkin v2 model (kind, endpoints, tags, annotations).

use crate::clock::Stamp;
use crate::context::SpanContext;
use crate::id::{SpanId, TraceId};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::{Mutex, OnceLock};

/// The role of a span in an RPC or messaging exchange; `None` on a span means local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The caller side of an RPC.
    Client,
    /// The callee side of an RPC.
    Server,
    /// A message sent to a broker.
    Producer,
    /// A message received from a broker.
    Consumer,
}

impl Kind {
    /// The Zipkin JSON name (`CLIENT`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Client => "CLIENT",
            Kind::Server => "SERVER",
            Kind::Producer => "PRODUCER",
            Kind::Consumer => "CONSUMER",
        }
    }
}

/// A network endpoint: service name, address, port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    service_name: Option<Cow<'static, str>>,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: Option<NonZeroU16>,
}

impl Endpoint {
    /// An endpoint with only a service name (lower-cased, as Zipkin stores it).
    pub fn service(name: impl Into<Cow<'static, str>>) -> Endpoint {
        Endpoint::default().with_service_name(name)
    }

    /// An endpoint for a socket address.
    pub fn addr(addr: SocketAddr) -> Endpoint {
        Endpoint::default()
            .with_ip(addr.ip())
            .with_port(addr.port())
    }

    /// Sets the service name, lower-cased.
    pub fn with_service_name(mut self, name: impl Into<Cow<'static, str>>) -> Endpoint {
        let name = name.into();
        self.service_name = Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            name
        });
        self
    }

    /// Sets the address; an IPv4-mapped IPv6 address is stored as IPv4.
    pub fn with_ip(mut self, ip: IpAddr) -> Endpoint {
        match ip {
            IpAddr::V4(v4) => self.ipv4 = Some(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.ipv4 = Some(v4),
                None => self.ipv6 = Some(v6),
            },
        }
        self
    }

    /// Sets the port; 0 means unknown and is not stored.
    pub fn with_port(mut self, port: u16) -> Endpoint {
        self.port = NonZeroU16::new(port);
        self
    }

    /// The service name.
    pub fn service_name(&self) -> Option<&str> {
        self.service_name.as_deref()
    }

    /// The IPv4 address.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4
    }

    /// The IPv6 address.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }

    /// The port.
    pub fn port(&self) -> Option<u16> {
        self.port.map(NonZeroU16::get)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.service_name.is_none()
            && self.ipv4.is_none()
            && self.ipv6.is_none()
            && self.port.is_none()
    }
}

/// Interns a local endpoint so spans can point at it without reference counting. Tracers are
/// few and long-lived; each distinct endpoint is stored once for the life of the process.
pub(crate) fn intern_endpoint(e: Endpoint) -> &'static Endpoint {
    static TABLE: OnceLock<Mutex<Vec<&'static Endpoint>>> = OnceLock::new();
    let mut table = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(found) = table.iter().find(|have| ***have == e) {
        return found;
    }
    let leaked: &'static Endpoint = Box::leak(Box::new(e));
    table.push(leaked);
    leaked
}

/// A tag value. Zipkin tag values are strings; numbers and booleans are formatted only when the
/// span is encoded, off the request path.
///
/// Text borrowed for the request only (a path, a topic) goes in with [`TagValue::text`], which
/// keeps up to [`InlineStr::CAPACITY`] bytes inside the value: no allocation on the request
/// path, and no memory freed by the reporter thread that another thread allocated. Values
/// compare by their text, whichever way they are stored.
#[derive(Debug, Clone)]
pub enum TagValue {
    /// Text.
    Str(Cow<'static, str>),
    /// Short text kept inline.
    Inline(InlineStr),
    /// A signed integer.
    I64(i64),
    /// A boolean, written `true`/`false`.
    Bool(bool),
}

impl TagValue {
    /// `s` as a tag value: inline when it fits, else an owned copy.
    ///
    /// ```
    /// use tdist_core::TagValue;
    /// assert!(matches!(TagValue::text("/orders/42"), TagValue::Inline(_)));
    /// assert!(matches!(TagValue::text(&"x".repeat(100)), TagValue::Str(_)));
    /// assert_eq!(TagValue::text("/orders/42"), TagValue::from(String::from("/orders/42")));
    /// ```
    #[inline]
    pub fn text(s: &str) -> TagValue {
        match InlineStr::new(s) {
            Some(inline) => TagValue::Inline(inline),
            None => TagValue::Str(Cow::Owned(s.to_owned())),
        }
    }

    /// The text of a text value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TagValue::Str(s) => Some(s),
            TagValue::Inline(s) => Some(s.as_str()),
            TagValue::I64(_) | TagValue::Bool(_) => None,
        }
    }
}

impl PartialEq for TagValue {
    fn eq(&self, other: &TagValue) -> bool {
        match (self, other) {
            (TagValue::I64(a), TagValue::I64(b)) => a == b,
            (TagValue::Bool(a), TagValue::Bool(b)) => a == b,
            _ => match (self.as_str(), other.as_str()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl Eq for TagValue {}

impl fmt::Display for TagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagValue::Str(s) => f.write_str(s),
            TagValue::Inline(s) => f.write_str(s.as_str()),
            TagValue::I64(v) => write!(f, "{v}"),
            TagValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// Text of at most [`CAPACITY`](Self::CAPACITY) bytes stored in place (see [`TagValue::text`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InlineStr {
    len: u8,
    bytes: [u8; InlineStr::CAPACITY],
}

impl InlineStr {
    /// The longest text kept inline, in bytes: most request paths and topic names fit, and a
    /// tag value stays 32 bytes (a `String` and its variant tag).
    pub const CAPACITY: usize = 22;

    /// `s` inline, or `None` when it is longer than [`CAPACITY`](Self::CAPACITY).
    #[inline]
    pub fn new(s: &str) -> Option<InlineStr> {
        if s.len() > Self::CAPACITY {
            return None;
        }
        let mut bytes = [0u8; Self::CAPACITY];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(InlineStr {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Always a whole `str` copied in `new`; checked here rather than trusted (no unsafe).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for InlineStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&'static str> for TagValue {
    fn from(v: &'static str) -> TagValue {
        TagValue::Str(Cow::Borrowed(v))
    }
}
impl From<String> for TagValue {
    fn from(v: String) -> TagValue {
        TagValue::Str(Cow::Owned(v))
    }
}
impl From<Cow<'static, str>> for TagValue {
    fn from(v: Cow<'static, str>) -> TagValue {
        TagValue::Str(v)
    }
}
impl From<bool> for TagValue {
    fn from(v: bool) -> TagValue {
        TagValue::Bool(v)
    }
}
macro_rules! int_tag {
    ($($t:ty),*) => {$(
        impl From<$t> for TagValue {
            fn from(v: $t) -> TagValue {
                TagValue::I64(i64::from(v))
            }
        }
    )*};
}
int_tag!(i8, i16, i32, i64, u8, u16, u32);

/// A timestamped event on a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Epoch microseconds.
    pub timestamp_us: u64,
    /// What happened.
    pub value: Cow<'static, str>,
}

pub(crate) type Tags = SmallVec<[(Cow<'static, str>, TagValue); 4]>;

/// A finished, sampled span as the pipeline carries it to a transport.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    pub(crate) context: SpanContext,
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: Option<Kind>,
    /// When the span started and ended, as read on the request path (converted to epoch time
    /// by [`timestamp_us`](Self::timestamp_us) and [`duration_us`](Self::duration_us)).
    pub(crate) start: Stamp,
    pub(crate) end: Stamp,
    pub(crate) local: &'static Endpoint,
    pub(crate) remote: Option<Box<Endpoint>>,
    pub(crate) tags: Tags,
    pub(crate) annotations: Vec<Annotation>,
}

impl FinishedSpan {
    /// A record being started at `start`.
    pub(crate) fn started(
        context: SpanContext,
        name: Cow<'static, str>,
        local: &'static Endpoint,
        start: Stamp,
    ) -> FinishedSpan {
        FinishedSpan {
            context,
            name,
            kind: None,
            start,
            end: start,
            local,
            remote: None,
            tags: Tags::new(),
            annotations: Vec::new(),
        }
    }

    /// Starts a new record in place of this one (a recycled, emptied record box), writing only
    /// what a new record needs rather than building one and copying it in.
    #[inline]
    pub(crate) fn restart(
        &mut self,
        context: SpanContext,
        name: Cow<'static, str>,
        local: &'static Endpoint,
        start: Stamp,
    ) {
        self.context = context;
        self.name = name;
        self.kind = None;
        self.start = start;
        self.end = start;
        self.local = local;
        self.remote = None;
        self.tags.clear();
        self.annotations.clear();
    }

    /// Moves the record out, leaving an empty one that owns no heap memory; only the fields
    /// that own memory are written back.
    #[inline]
    pub(crate) fn take(&mut self) -> FinishedSpan {
        FinishedSpan {
            context: self.context,
            name: std::mem::replace(&mut self.name, Cow::Borrowed("")),
            kind: self.kind,
            start: self.start,
            end: self.end,
            local: self.local,
            remote: self.remote.take(),
            tags: std::mem::take(&mut self.tags),
            annotations: std::mem::take(&mut self.annotations),
        }
    }

    /// A record with placeholder ids that owns no heap memory, for tests.
    #[cfg(test)]
    pub(crate) fn empty() -> FinishedSpan {
        static NO_ENDPOINT: Endpoint = Endpoint {
            service_name: None,
            ipv4: None,
            ipv6: None,
            port: None,
        };
        FinishedSpan::started(
            SpanContext::new(
                TraceId::new(0, 1).expect("non-zero"),
                SpanId::new(1).expect("non-zero"),
            ),
            Cow::Borrowed(""),
            &NO_ENDPOINT,
            Stamp::UnixNs(0),
        )
    }

    /// The span's context (ids, sampling, shared).
    pub fn context(&self) -> &SpanContext {
        &self.context
    }
    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.context.trace_id()
    }
    /// The span id.
    pub fn id(&self) -> SpanId {
        self.context.span_id()
    }
    /// The parent id.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.context.parent_id()
    }
    /// The operation name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The kind; `None` for a local span.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }
    /// Start, epoch microseconds.
    pub fn timestamp_us(&self) -> u64 {
        self.start.unix_ns() / 1_000
    }
    /// Duration in microseconds, at least 1.
    pub fn duration_us(&self) -> u64 {
        (self.end.ns_since(self.start) / 1_000).max(1)
    }
    /// The recording service.
    pub fn local_endpoint(&self) -> &Endpoint {
        self.local
    }
    /// The peer, if known.
    pub fn remote_endpoint(&self) -> Option<&Endpoint> {
        self.remote.as_deref()
    }
    /// Tags in the order set, every value of a key set twice included (the encoders report the
    /// last, as [`tag`](Self::tag) returns it).
    pub fn tags(&self) -> impl Iterator<Item = (&str, &TagValue)> {
        self.tags.iter().map(|(k, v)| (k.as_ref(), v))
    }
    /// The tags as they are reported: each key once, with its last value, in the order those
    /// last values were set.
    pub fn reported_tags(&self) -> impl Iterator<Item = (&str, &TagValue)> {
        let tags = &self.tags;
        // A few tags (the usual) are compared pairwise; a long list goes through a map of each
        // key's last position, so a span tagged in a loop costs linear time, not quadratic.
        let last: Option<std::collections::HashMap<&str, usize>> = (tags.len() > 16).then(|| {
            tags.iter()
                .enumerate()
                .map(|(i, (k, _))| (k.as_ref(), i))
                .collect()
        });
        tags.iter()
            .enumerate()
            .filter(move |(i, (k, _))| match &last {
                Some(last) => last.get(k.as_ref()) == Some(i),
                None => !tags[i + 1..].iter().any(|(later, _)| later == k),
            })
            .map(|(_, (k, v))| (k.as_ref(), v))
    }
    /// The value of one tag: the last one set, when it was set more than once.
    pub fn tag(&self, key: &str) -> Option<&TagValue> {
        self.tags
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    /// Annotations in time order.
    pub fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }
    /// Whether the trace is flagged debug.
    pub fn debug(&self) -> bool {
        self.context.sampling() == crate::SamplingState::Debug
    }
    /// Whether the span id is shared with the remote side.
    pub fn shared(&self) -> bool {
        self.context.shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_text_up_to_capacity_and_by_whole_characters() {
        let fits = "a".repeat(InlineStr::CAPACITY);
        assert!(matches!(TagValue::text(&fits), TagValue::Inline(_)));
        let too_long = "a".repeat(InlineStr::CAPACITY + 1);
        assert!(matches!(TagValue::text(&too_long), TagValue::Str(_)));
        for s in ["", "/", "/é/ü/🦀", &fits, &too_long] {
            let v = TagValue::text(s);
            assert_eq!(v.as_str(), Some(s));
            assert_eq!(v.to_string(), s);
            assert_eq!(v, TagValue::from(s.to_owned()));
        }
        assert_ne!(TagValue::text("1"), TagValue::I64(1));
        assert_eq!(
            format!("{:?}", InlineStr::new("x\"y").unwrap()),
            "\"x\\\"y\""
        );
    }

    /// The sizes the documentation gives (README, `ReporterConfig::local_queue_size`, the
    /// architecture notes), which decide what each thread's ring holds.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn record_and_tag_sizes_are_what_the_docs_say() {
        assert_eq!(std::mem::size_of::<FinishedSpan>(), 376);
        assert_eq!(std::mem::size_of::<TagValue>(), 32);
    }
}
