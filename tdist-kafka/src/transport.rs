//! [`KafkaTransport`]: finished spans to the topic Zipkin's Kafka collector reads.
//!
//! Each Kafka message is one list of spans, as the collector expects: a JSON list of Zipkin
//! v2 spans (every span carries `localEndpoint`, which the collector needs to tell v2 from v1)
//! or a proto3 `ListOfSpans`. Batches larger than the maximum message size are split into
//! several messages; a single span larger than it is dropped and counted as failed, alone.
//! When some messages of a batch are acknowledged and others are not, the failure is partial
//! and the reporter's retry (`Transport::resend`) sends only the spans of the others; a message
//! the broker refuses for good (too large, not authorized, its policy) loses its spans and is
//! not retried. A message whose acknowledgement does not come within the timeout is sent again
//! (at least once: it may have been written).
//! The record key is null and no header is written.
//!
//! The transport runs on the reporter's background thread. It uses a `BaseProducer` of its
//! own, waits for the broker's acknowledgements with a deadline, and never creates spans or
//! writes trace headers: the tracer does not trace itself.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TDIST_KAFKA_BOOTSTRAP_SERVERS` | brokers; setting it selects this transport | |
//! | `TDIST_KAFKA_TOPIC` | topic | `zipkin` |
//! | `TDIST_KAFKA_ENCODING` | `json` or `proto3` | `json` |
//! | `TDIST_KAFKA_MAX_MESSAGE_BYTES` | largest message written | 500000 |
//! | `TDIST_KAFKA_TIMEOUT` | ms to wait for acknowledgements of one batch | 10000 |
//!
//! ```no_run
//! use tdist_core::Tracer;
//! use tdist_kafka::KafkaTransport;
//!
//! let transport = KafkaTransport::builder("127.0.0.1:9092").topic("zipkin").build().unwrap();
//! let tracer = Tracer::builder().service_name("api").transport(transport).build().unwrap();
//! # drop(tracer);
//! ```

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tdist_core::config::{ConfigError, TracerBuilder, Wanted};
use tdist_core::encode::{proto3_list, write_json_span};
use tdist_core::export::{Transport, TransportError};
use tdist_core::FinishedSpan;

/// The collector's default topic.
pub const DEFAULT_TOPIC: &str = "zipkin";
/// The default largest message, as Zipkin's reference Kafka sender.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 500_000;
/// The smallest largest message a transport is built with.
const MIN_MESSAGE_BYTES: usize = 1024;

/// How spans are encoded in each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// A JSON list of Zipkin v2 spans (every collector version reads it).
    #[default]
    Json,
    /// A proto3 `zipkin.proto3.ListOfSpans` (Zipkin 2.8+).
    Proto3,
}

/// Settings for a [`KafkaTransport`].
#[derive(Debug, Clone)]
pub struct KafkaTransportBuilder {
    bootstrap: String,
    topic: String,
    encoding: Encoding,
    max_message_bytes: usize,
    timeout: Duration,
    extra: Vec<(String, String)>,
}

impl KafkaTransportBuilder {
    /// The topic (default `zipkin`).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// The encoding (default JSON).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The largest message written (default 500 000 bytes, at least 1024); larger batches are
    /// split.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// How long one batch may take to be acknowledged (default 10 s; at least 1 ms, at most
    /// librdkafka's longest, about 24 days).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Any other librdkafka producer property (`acks`, `compression.type`, security...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// Creates the producer (it connects lazily).
    pub fn build(self) -> Result<KafkaTransport, KafkaError> {
        let mut config = ClientConfig::new();
        // librdkafka's message timeout is an i32 of ms; the batch's deadline uses the same
        // (a longer one, up to `Duration::MAX`, overflowed the clock in every send).
        let timeout =
            Duration::from_millis(self.timeout.as_millis().clamp(1, i32::MAX as u128) as u64);
        let timeout_ms = timeout.as_millis().to_string();
        let max = self.max_message_bytes.max(MIN_MESSAGE_BYTES);
        // librdkafka wants its linger shorter than the message timeout.
        let linger_ms = timeout.as_millis().saturating_sub(1).min(5).to_string();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "1")
            .set("linger.ms", &linger_ms)
            .set("message.timeout.ms", &timeout_ms)
            .set("message.max.bytes", max.saturating_add(1024).to_string());
        for (k, v) in &self.extra {
            config.set(k, v);
        }
        let producer = config.create_with_context(Deliveries::default())?;
        Ok(KafkaTransport {
            producer,
            topic: self.topic,
            encoding: self.encoding,
            max_message_bytes: max,
            timeout,
            sending: Mutex::new(()),
        })
    }
}

/// What the broker said of each message of the batch being sent, by its index (the delivery
/// opaque); reports of an earlier, abandoned batch carry another generation and are ignored.
#[derive(Debug, Default)]
struct Deliveries {
    batch: Mutex<Outcomes>,
}

#[derive(Debug, Default)]
struct Outcomes {
    generation: usize,
    /// `None` until the message's delivery report arrives.
    of: Vec<Option<Result<(), Failure>>>,
}

/// Why a message was not delivered, and whether sending it again may help.
#[derive(Debug, Clone)]
struct Failure {
    why: String,
    retryable: bool,
}

impl Failure {
    fn of(e: &KafkaError) -> Failure {
        Failure {
            why: e.to_string(),
            retryable: e.rdkafka_error_code().is_none_or(|c| !permanent(c)),
        }
    }
}

/// Errors sending the message again cannot fix: it is too large for the broker, the topic is
/// not ours to write, or the broker refuses it by configuration. (An unknown topic stays
/// retryable: the collector's topic may be being created.)
fn permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidTopic
            | C::InvalidRequiredAcks
            | C::PolicyViolation
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::InvalidArgument
            | C::Fatal
    )
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Tag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<Tag>) {
        let Tag { generation, index } = *tag;
        let Ok(mut batch) = self.batch.lock() else {
            return;
        };
        if batch.generation != generation {
            return;
        }
        if let Some(slot) = batch.of.get_mut(index) {
            *slot = Some(match result {
                Ok(_) => Ok(()),
                Err((e, _)) => Err(Failure::of(e)),
            });
        }
    }
}

/// Publishes finished spans to a Kafka topic for Zipkin's Kafka collector.
pub struct KafkaTransport {
    producer: BaseProducer<Deliveries>,
    topic: String,
    encoding: Encoding,
    max_message_bytes: usize,
    timeout: Duration,
    sending: Mutex<()>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("topic", &self.topic)
            .field("encoding", &self.encoding)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// Settings with defaults: topic `zipkin`, JSON, 500 000-byte messages, 10 s timeout.
    pub fn builder(bootstrap_servers: impl Into<String>) -> KafkaTransportBuilder {
        KafkaTransportBuilder {
            bootstrap: bootstrap_servers.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            encoding: Encoding::Json,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            timeout: Duration::from_secs(10),
            extra: Vec::new(),
        }
    }

    /// A transport from `TDIST_KAFKA_*` (see the module docs); `None` when
    /// `TDIST_KAFKA_BOOTSTRAP_SERVERS` is unset.
    pub fn from_env() -> Result<Option<KafkaTransport>, ConfigError> {
        let env = tdist_core::EnvReader::new();
        let result = Self::from_lookup(|k| env.get(k));
        env.finish(result)
    }

    /// [`from_env`](Self::from_env) with a custom variable lookup.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<KafkaTransport>, ConfigError> {
        match Self::builder_from_lookup(get)? {
            None => Ok(None),
            Some(b) => b
                .build()
                .map(Some)
                .map_err(|e| ConfigError::new("TDIST_KAFKA_BOOTSTRAP_SERVERS", "", e.to_string())),
        }
    }

    /// The builder `TDIST_KAFKA_*` describe, without creating the producer.
    pub fn builder_from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<KafkaTransportBuilder>, ConfigError> {
        let Some(servers) = get("TDIST_KAFKA_BOOTSTRAP_SERVERS").filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let mut b = KafkaTransport::builder(servers.trim());
        if let Some(t) = get("TDIST_KAFKA_TOPIC").filter(|t| !t.trim().is_empty()) {
            b = b.topic(t.trim());
        }
        if let Some(e) = get("TDIST_KAFKA_ENCODING") {
            b = b.encoding(match e.trim().to_ascii_lowercase().as_str() {
                "json" => Encoding::Json,
                "proto3" | "proto" => Encoding::Proto3,
                _ => {
                    return Err(ConfigError::new(
                        "TDIST_KAFKA_ENCODING",
                        e,
                        "expected json or proto3",
                    ))
                }
            });
        }
        if let Some(v) = get("TDIST_KAFKA_MAX_MESSAGE_BYTES") {
            let n = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= MIN_MESSAGE_BYTES)
                .ok_or_else(|| {
                    ConfigError::new(
                        "TDIST_KAFKA_MAX_MESSAGE_BYTES",
                        v.clone(),
                        "expected bytes ≥ 1024",
                    )
                })?;
            b = b.max_message_bytes(n);
        }
        if let Some(v) = get("TDIST_KAFKA_TIMEOUT") {
            let ms = v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ConfigError::new(
                        "TDIST_KAFKA_TIMEOUT",
                        v.clone(),
                        "expected milliseconds > 0",
                    )
                })?;
            b = b.timeout(Duration::from_millis(ms));
        }
        Ok(Some(b))
    }

    /// Selects this transport on `builder` when `TDIST_KAFKA_BOOTSTRAP_SERVERS` is set, unless a
    /// transport was set in code or `TDIST_TRANSPORT` names another (`zipkin`, `stdout`, ...);
    /// `TDIST_TRANSPORT=kafka` without it is an error. Adapters may be asked in any order:
    /// `TDIST_TRANSPORT` decides.
    pub fn configure(builder: TracerBuilder) -> Result<TracerBuilder, ConfigError> {
        let env = tdist_core::EnvReader::new();
        let result = Self::configure_with(builder, |k| env.get(k));
        env.finish(result)
    }

    /// [`configure`](Self::configure) with a custom variable lookup.
    pub fn configure_with(
        builder: TracerBuilder,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<TracerBuilder, ConfigError> {
        const NAME: &str = "kafka";
        let wanted = builder.wanted(NAME, &get);
        if wanted == Wanted::No {
            return Ok(builder);
        }
        match Self::from_lookup(&get)? {
            Some(t) => Ok(builder.select_transport(NAME, t)),
            None if wanted == Wanted::Named => Err(ConfigError::new(
                "TDIST_KAFKA_BOOTSTRAP_SERVERS",
                "",
                "TDIST_TRANSPORT=kafka needs TDIST_KAFKA_BOOTSTRAP_SERVERS",
            )),
            None => Ok(builder),
        }
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Encodes `spans` into messages no larger than the maximum; the second value counts
    /// spans that alone exceed it (dropped).
    pub fn messages(&self, spans: &[FinishedSpan]) -> (Vec<Vec<u8>>, usize) {
        split_messages(spans, self.encoding, self.max_message_bytes)
    }

    /// Hands one message to librdkafka, waiting (until `deadline`) while its queue is full.
    fn enqueue(&self, msg: &[u8], tag: Tag, deadline: Instant) -> Result<(), Failure> {
        let mut record =
            BaseRecord::<(), [u8], Box<Tag>>::with_opaque_to(&self.topic, tag.into()).payload(msg);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(Failure::of(&e)),
            }
        }
    }

    /// Sends the spans of `spans` at `indices` (the whole batch, or what a partial failure
    /// left), `lost` of the batch's spans being lost for good already, and waits for the
    /// broker's acknowledgements until the timeout. Fails partially when some messages got
    /// through: the failure holds the spans of the others for [`Transport::resend`].
    fn deliver(
        &self,
        spans: &[FinishedSpan],
        indices: &[usize],
        mut lost: usize,
    ) -> Result<(), TransportError> {
        // One batch at a time: the delivery reports are matched to the batch being sent (two
        // reporters sharing this transport would otherwise discard each other's).
        let _one_at_a_time = lock(&self.sending);
        let deadline = Instant::now() + self.timeout;
        let picked = indices.iter().filter_map(|&i| Some((i, spans.get(i)?)));
        let (messages, oversized) = split_indexed(picked, self.encoding, self.max_message_bytes);
        lost += oversized;
        let ctx = self.producer.context();
        let generation = {
            let mut batch = lock(&ctx.batch);
            batch.generation = batch.generation.wrapping_add(1);
            batch.of = vec![None; messages.len()];
            batch.generation
        };
        for (index, (payload, _)) in messages.iter().enumerate() {
            if let Err(f) = self.enqueue(payload, Tag { generation, index }, deadline) {
                // This message failed as `f` says; those after it were never handed over, and
                // may still get through (a permanent refusal of one, say a size limit set in
                // the producer's config, is not theirs).
                let not_sent = Failure {
                    why: format!("not handed over after: {}", f.why),
                    retryable: true,
                };
                let mut batch = lock(&ctx.batch);
                batch.of[index] = Some(Err(f));
                batch.of[index + 1..].fill(Some(Err(not_sent)));
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.producer.flush(left).is_err() {
            self.abandon();
        }
        let outcomes = std::mem::take(&mut lock(&ctx.batch).of);
        let mut retry = Vec::new();
        let (mut failed, mut why) = (0, None);
        for ((_, covered), outcome) in messages.iter().zip(outcomes) {
            let failure = match outcome {
                Some(Ok(())) => continue,
                Some(Err(f)) => f,
                None => Failure {
                    why: format!("not acknowledged within {:?}", self.timeout),
                    retryable: true,
                },
            };
            failed += 1;
            if failure.retryable {
                retry.extend_from_slice(covered);
            } else {
                lost += covered.len();
            }
            why.get_or_insert(failure.why);
        }
        if failed == 0 && lost == 0 {
            return Ok(());
        }
        let mut message = format!("kafka: {failed} of {} messages failed", messages.len());
        if let Some(why) = why {
            message = format!("{message}: {why}");
        }
        if oversized > 0 {
            let max = self.max_message_bytes;
            message = format!("{message}; {oversized} spans larger than {max} bytes dropped");
        }
        let undelivered = retry.len() + lost;
        let error = match retry.is_empty() {
            true => TransportError::fatal(message),
            false => TransportError::retryable(message),
        };
        Err(error.partial(undelivered, KafkaLeft { retry, lost }))
    }
}

/// What a partly failed batch left for [`Transport::resend`]: the spans (indices into the
/// batch) whose messages may still get through, and how many spans were lost for good.
struct KafkaLeft {
    retry: Vec<usize>,
    lost: usize,
}

/// A message's delivery opaque: the batch it belongs to and its index there.
struct Tag {
    generation: usize,
    index: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KafkaTransport {
    /// Messages handed to librdkafka and not yet acknowledged or failed (zero between
    /// batches: a batch that times out is purged, so a dead broker never grows memory).
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Purges what is queued or in flight and serves the purged messages' delivery reports
    /// now, not in the next batch. (A message purged in flight may still have been written;
    /// it is sent again with the rest: at least once, never lost.)
    fn abandon(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let until = Instant::now() + Duration::from_millis(500);
        while self.producer.in_flight_count() > 0 && Instant::now() < until {
            self.producer.poll(Duration::from_millis(10));
        }
    }
}

impl Transport for KafkaTransport {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let all: Vec<usize> = (0..spans.len()).collect();
        self.deliver(spans, &all, 0)
    }

    /// Sends only the spans whose messages failed retryably (the others were acknowledged,
    /// or are lost for good: too large, or refused for a reason sending again cannot fix).
    fn resend(
        &self,
        spans: &[FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        match failure.resume::<KafkaLeft>() {
            Some(left) => self.deliver(spans, &left.retry, left.lost),
            None => self.send(spans),
        }
    }
}

/// Encodes `spans` as lists of at most `max` bytes each. Returns the messages and how many
/// spans were dropped because alone they do not fit.
pub fn split_messages(
    spans: &[FinishedSpan],
    encoding: Encoding,
    max: usize,
) -> (Vec<Vec<u8>>, usize) {
    let (messages, dropped) = split_indexed(spans.iter().enumerate(), encoding, max);
    (messages.into_iter().map(|(m, _)| m).collect(), dropped)
}

/// An encoded message, and the indices (in the batch) of the spans it holds.
type Message = (Vec<u8>, Vec<usize>);

/// [`split_messages`] for spans given with their indices in the batch: each message comes with
/// the indices of the spans it holds.
fn split_indexed<'a>(
    spans: impl Iterator<Item = (usize, &'a FinishedSpan)>,
    encoding: Encoding,
    max: usize,
) -> (Vec<Message>, usize) {
    let mut out = Vec::new();
    let mut dropped = 0;
    let mut one = Vec::with_capacity(512);
    let (open, sep, close): (&[u8], &[u8], &[u8]) = match encoding {
        Encoding::Json => (b"[", b",", b"]"),
        Encoding::Proto3 => (b"", b"", b""),
    };
    let mut cur: Vec<u8> = Vec::new();
    let mut held: Vec<usize> = Vec::new();
    for (index, s) in spans {
        one.clear();
        match encoding {
            Encoding::Json => write_json_span(s, &mut one),
            Encoding::Proto3 => one = proto3_list(std::slice::from_ref(s)),
        }
        if open.len() + one.len() + close.len() > max {
            dropped += 1;
            continue;
        }
        let empty = cur.is_empty();
        let need = if empty { open.len() } else { sep.len() } + one.len() + close.len();
        if !empty && cur.len() + need > max {
            cur.extend_from_slice(close);
            out.push((std::mem::take(&mut cur), std::mem::take(&mut held)));
        }
        if cur.is_empty() {
            cur.reserve(max.min(64 * 1024));
            cur.extend_from_slice(open);
        } else {
            cur.extend_from_slice(sep);
        }
        cur.extend_from_slice(&one);
        held.push(index);
    }
    if !cur.is_empty() {
        cur.extend_from_slice(close);
        out.push((cur, held));
    }
    (out, dropped)
}
