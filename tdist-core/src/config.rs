//! Configuration: a builder, and the environment variables users already know.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `OTEL_SERVICE_NAME` | local service name | `unknown_service` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,...`; its `service.name` is used when `OTEL_SERVICE_NAME` is unset | |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`, `ratelimited`, `parentbased_ratelimited` | `parentbased_always_on` |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio (0..=1) or traces per second | 1.0 |
//! | `OTEL_PROPAGATORS` | comma list of `b3`, `b3multi`, `tracecontext` to inject | `b3multi` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | spans the worker holds | 2048 |
//! | `OTEL_BSP_SCHEDULE_DELAY` | ms between exports | 5000 |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | spans per transport call | 512 |
//! | `OTEL_BSP_EXPORT_TIMEOUT` | ms per batch, retries included | 30000 |
//! | `TDIST_TRANSPORT` | `stdout`, `file` or `none`, or a name an adapter crate selects (`zipkin`, `kafka`) | `none` |
//! | `TDIST_FILE` | JSON-lines file for the `file` transport (setting it selects `file`) | |
//! | `TDIST_LOCAL_QUEUE_SIZE` | spans buffered per thread (376 bytes each) | 2048 |
//! | `TDIST_EXPORT_RETRIES` | retries of a retryable failure | 3 |
//! | `TDIST_SHUTDOWN_TIMEOUT` | ms a flush or shutdown may take | 5000 |
//! | `TDIST_TRUST_DEBUG` | honour inbound debug flags (`false` at a trust boundary) | `true` |
//! | `TDIST_TRACE_ID_128` | 128-bit trace ids for new traces | `true` |
//!
//! A value that is not valid Unicode is an error naming its variable (except in
//! `OTEL_RESOURCE_ATTRIBUTES`, which is then ignored with a warning, as a malformed one is).
//!
//! ```
//! use tdist_core::config::TracerBuilder;
//!
//! let env = |k: &str| match k {
//!     "OTEL_SERVICE_NAME" => Some("checkout".to_string()),
//!     "OTEL_BSP_MAX_QUEUE_SIZE" => Some("lots".to_string()),
//!     _ => None,
//! };
//! let err = TracerBuilder::from_lookup(env).unwrap_err();
//! assert_eq!(err.variable(), "OTEL_BSP_MAX_QUEUE_SIZE");
//! ```
//!
//! Spans are not dropped silently because of a setting nobody acted on: `build` fails when
//! `TDIST_TRANSPORT` names a transport no adapter selected (a misspelt name, or `zipkin`
//! without [`tdist_http`'s `ZipkinTransport::configure`]), and logs a warning when
//! `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set and no transport was chosen at all (a warning only:
//! that variable may be meant for other programs that share the environment, as may
//! `OTEL_RESOURCE_ATTRIBUTES`, which is ignored with a warning when it is malformed, as the
//! OpenTelemetry specification says).
//!
//! [`tdist_http`'s `ZipkinTransport::configure`]: https://docs.rs/tdist-http

use crate::export::{JsonLinesFile, NoopTransport, Reporter, ReporterConfig, Stdout, Transport};
use crate::propagation::Propagation;
use crate::record::Endpoint;
use crate::sampler::Sampler;
use crate::tracer::{Tracer, TracerGuard};
use std::borrow::Cow;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration value that could not be used, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    reason: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(
        variable: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            variable,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The variable (or builder setting) at fault.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TransportChoice {
    Unset,
    None,
    Stdout,
    File(PathBuf),
    /// A name core does not know (`zipkin`, `kafka`): the adapter crate that knows it selects
    /// its transport with [`TracerBuilder::select_transport`].
    Named(String),
}

/// Whether an adapter should select its transport (see [`TracerBuilder::wanted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// No: a transport was set in code, or `TDIST_TRANSPORT` names another.
    No,
    /// When the adapter's own variables describe one (`TDIST_TRANSPORT` is unset).
    IfConfigured,
    /// Yes: `TDIST_TRANSPORT` names this adapter's transport.
    Named,
}

/// `TDIST_TRANSPORT` as `lookup` gives it: trimmed, `None` when unset or blank.
fn transport_name(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let name = lookup("TDIST_TRANSPORT")?;
    Some(name.trim().to_owned()).filter(|n| !n.is_empty())
}

/// The variable a Zipkin collector is named by; read here only to refuse a configuration in
/// which it is set and nothing would send to it.
const ZIPKIN_ENDPOINT_VAR: &str = "OTEL_EXPORTER_ZIPKIN_ENDPOINT";

/// Builds a [`Tracer`].
pub struct TracerBuilder {
    local: Endpoint,
    sampler: Sampler,
    propagation: Propagation,
    reporter: ReporterConfig,
    transport: Option<Box<dyn Transport>>,
    choice: TransportChoice,
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT` was set when the environment was read.
    zipkin_endpoint_set: bool,
    trace_id_128: bool,
}

impl std::fmt::Debug for TracerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracerBuilder")
            .field("local", &self.local)
            .field("sampler", &self.sampler.describe())
            .field("propagation", &self.propagation)
            .field("reporter", &self.reporter)
            .field("transport", &self.transport.is_some())
            .finish()
    }
}

impl Default for TracerBuilder {
    fn default() -> TracerBuilder {
        TracerBuilder {
            local: Endpoint::service("unknown_service"),
            sampler: Sampler::default(),
            propagation: Propagation::default(),
            reporter: ReporterConfig::default(),
            transport: None,
            choice: TransportChoice::Unset,
            zipkin_endpoint_set: false,
            trace_id_128: true,
        }
    }
}

/// The process environment as `from_env` reads it, core's and the adapters': a lookup for
/// their `from_lookup`, which notes a variable it was asked for whose value is not valid Unicode
/// (`std::env::var(k).ok()` would read it as unset, and a transport would be left out, or a
/// proxy skipped, without a word). Only the variables actually read count, so a variable of
/// another program, or of a transport not selected, is no one's error.
///
/// ```
/// use tdist_core::{ConfigError, EnvReader};
///
/// fn from_env() -> Result<Option<String>, ConfigError> {
///     let env = EnvReader::new();
///     let endpoint = env.get("MY_ADAPTER_ENDPOINT");
///     env.finish(Ok(endpoint))
/// }
/// assert!(from_env().is_ok());
/// ```
#[derive(Debug, Default)]
pub struct EnvReader {
    bad: std::cell::Cell<Option<&'static str>>,
}

impl EnvReader {
    /// A reader of the process environment.
    pub fn new() -> EnvReader {
        EnvReader::default()
    }

    /// The value of `name`; `None` when unset or not valid Unicode (noted for
    /// [`finish`](Self::finish)).
    pub fn get(&self, name: &str) -> Option<String> {
        match std::env::var(name) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                if self.bad.get().is_none() {
                    // A few bytes kept for the process, once, on an error that stops the
                    // configuration.
                    self.bad
                        .set(Some(Box::leak(name.to_owned().into_boxed_str())));
                }
                None
            }
        }
    }

    /// `result`, unless a variable read was not valid Unicode: then an error naming it.
    pub fn finish<T>(self, result: Result<T, ConfigError>) -> Result<T, ConfigError> {
        match self.bad.get() {
            None => result,
            Some(name) => {
                let value = std::env::var_os(name).unwrap_or_default();
                Err(ConfigError::new(
                    name,
                    value.to_string_lossy(),
                    "not valid Unicode",
                ))
            }
        }
    }
}

impl TracerBuilder {
    /// Reads the process environment. A value that is not valid Unicode is an error naming
    /// its variable, not a variable left unset.
    pub fn from_env() -> Result<TracerBuilder, ConfigError> {
        let env = EnvReader::new();
        let result = TracerBuilder::from_lookup(|k| match k {
            // Shared with other programs: the endpoint only counts as set or not here, and
            // resource attributes that are not text are ignored, as malformed ones are.
            ZIPKIN_ENDPOINT_VAR => std::env::var(k).ok(),
            "OTEL_RESOURCE_ATTRIBUTES" => std::env::var(k)
                .inspect_err(|e| {
                    if matches!(e, std::env::VarError::NotUnicode(_)) {
                        tracing::warn!(target: "tdist", "ignored: {k} is not valid Unicode");
                    }
                })
                .ok(),
            _ => env.get(k),
        });
        env.finish(result)
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<TracerBuilder, ConfigError> {
        let mut b = TracerBuilder::default();
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            b.local = b.local.with_service_name(v.trim().to_owned());
        } else if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            match resource_service_name(&v) {
                Ok(Some(name)) => b.local = b.local.with_service_name(name),
                Ok(None) => {}
                // Other tools read this variable too: a bad value is theirs to refuse.
                Err(e) => tracing::warn!(target: "tdist", "ignored: {e}"),
            }
        }
        b.sampler = parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?;
        if let Some(v) = get("OTEL_PROPAGATORS") {
            b.propagation = Propagation::from_otel_list(&v).map_err(|bad| {
                ConfigError::new(
                    "OTEL_PROPAGATORS",
                    v.clone(),
                    format!("unknown propagator {bad:?} (use b3, b3multi, tracecontext)"),
                )
            })?;
        }
        let r = &mut b.reporter;
        if let Some(v) = get("OTEL_BSP_MAX_QUEUE_SIZE") {
            r.max_queue_size = positive("OTEL_BSP_MAX_QUEUE_SIZE", &v)?;
        }
        if let Some(v) = get("OTEL_BSP_SCHEDULE_DELAY") {
            r.schedule_delay = millis("OTEL_BSP_SCHEDULE_DELAY", &v)?;
        }
        if let Some(v) = get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            r.max_export_batch_size = positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v)?;
        }
        if let Some(v) = get("OTEL_BSP_EXPORT_TIMEOUT") {
            r.export_timeout = millis("OTEL_BSP_EXPORT_TIMEOUT", &v)?;
        }
        if let Some(v) = get("TDIST_LOCAL_QUEUE_SIZE") {
            r.local_queue_size = positive("TDIST_LOCAL_QUEUE_SIZE", &v)?;
        }
        if let Some(v) = get("TDIST_EXPORT_RETRIES") {
            r.max_retries = v.trim().parse().map_err(|_| {
                ConfigError::new("TDIST_EXPORT_RETRIES", v.clone(), "expected a whole number")
            })?;
        }
        if let Some(v) = get("TDIST_SHUTDOWN_TIMEOUT") {
            r.shutdown_timeout = millis("TDIST_SHUTDOWN_TIMEOUT", &v)?;
        }
        if r.max_export_batch_size > r.max_queue_size {
            return Err(ConfigError::new(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                r.max_export_batch_size.to_string(),
                format!(
                    "must not exceed OTEL_BSP_MAX_QUEUE_SIZE ({})",
                    r.max_queue_size
                ),
            ));
        }
        if let Some(v) = get("TDIST_TRUST_DEBUG") {
            let trust = boolean("TDIST_TRUST_DEBUG", &v)?;
            b.sampler = b.sampler.trust_inbound_debug(trust);
        }
        if let Some(v) = get("TDIST_TRACE_ID_128") {
            b.trace_id_128 = boolean("TDIST_TRACE_ID_128", &v)?;
        }
        let file = get("TDIST_FILE");
        b.choice = match (transport_name(&lookup).as_deref(), file) {
            (None, None) => TransportChoice::Unset,
            (None | Some("file"), Some(path)) => TransportChoice::File(path.into()),
            (Some("file"), None) => {
                return Err(ConfigError::new(
                    "TDIST_FILE",
                    "",
                    "TDIST_TRANSPORT=file needs TDIST_FILE",
                ))
            }
            (Some("stdout"), _) => TransportChoice::Stdout,
            (Some("none"), _) => TransportChoice::None,
            // Other names belong to adapter crates (zipkin, kafka); they read their own variables.
            (Some(name), _) => TransportChoice::Named(name.to_owned()),
        };
        b.zipkin_endpoint_set = get(ZIPKIN_ENDPOINT_VAR).is_some();
        Ok(b)
    }

    /// The local service name (lower-cased when reported).
    pub fn service_name(mut self, name: impl Into<Cow<'static, str>>) -> TracerBuilder {
        self.local = self.local.with_service_name(name);
        self
    }

    /// The local address and port reported in `localEndpoint`.
    pub fn local_address(mut self, ip: IpAddr, port: u16) -> TracerBuilder {
        self.local = self.local.with_ip(ip).with_port(port);
        self
    }

    /// The sampler.
    pub fn sampler(mut self, sampler: Sampler) -> TracerBuilder {
        self.sampler = sampler;
        self
    }

    /// The formats to inject.
    pub fn propagation(mut self, propagation: Propagation) -> TracerBuilder {
        self.propagation = propagation;
        self
    }

    /// Pipeline sizes and timings.
    pub fn reporter_config(mut self, config: ReporterConfig) -> TracerBuilder {
        self.reporter = config;
        self
    }

    /// Changes the pipeline settings in place.
    pub fn configure_reporter(mut self, f: impl FnOnce(&mut ReporterConfig)) -> TracerBuilder {
        f(&mut self.reporter);
        self
    }

    /// Where spans go. Overrides `TDIST_TRANSPORT`.
    pub fn transport(mut self, transport: impl Transport) -> TracerBuilder {
        self.transport = Some(Box::new(transport));
        self
    }

    /// Sets `transport` unless one was chosen in code or `TDIST_TRANSPORT`/`TDIST_FILE` are set
    /// at all. A transport with a name users can give in `TDIST_TRANSPORT` is added with
    /// [`select_transport`](Self::select_transport) instead.
    pub fn transport_if_unset(self, transport: impl Transport) -> TracerBuilder {
        if self.transport.is_none() && self.choice == TransportChoice::Unset {
            self.transport(transport)
        } else {
            self
        }
    }

    /// Whether the adapter whose transport is called `name` may select it: no transport was
    /// set in code, and `TDIST_TRANSPORT` is unset or says `name` (not `stdout`, `file`,
    /// `none`, `TDIST_FILE`, or another adapter's name).
    pub fn may_select(&self, name: &str) -> bool {
        self.transport.is_none()
            && match &self.choice {
                TransportChoice::Unset => true,
                TransportChoice::Named(n) => n == name,
                _ => false,
            }
    }

    /// Whether the adapter whose transport is called `name` should select it, with `lookup`
    /// reading the environment (the adapter's, which need not be the one this builder was read
    /// from): [`Wanted::No`] unless [`may_select`](Self::may_select) allows it and
    /// `TDIST_TRANSPORT` there is unset or says `name`.
    pub fn wanted(&self, name: &str, lookup: impl Fn(&str) -> Option<String>) -> Wanted {
        match transport_name(lookup) {
            _ if !self.may_select(name) => Wanted::No,
            None => Wanted::IfConfigured,
            Some(n) if n == name => Wanted::Named,
            Some(_) => Wanted::No,
        }
    }

    /// Sets `transport`, called `name`, when [`may_select`](Self::may_select) allows it: how
    /// adapter crates add theirs from their own variables, whatever order they are asked in.
    pub fn select_transport(self, name: &str, transport: impl Transport) -> TracerBuilder {
        if self.may_select(name) {
            self.transport(transport)
        } else {
            self
        }
    }

    /// The transport name `TDIST_TRANSPORT` gave that no transport has been selected for yet
    /// (`zipkin`, `kafka`, or a misspelling), if any: [`build`](Self::build) refuses it.
    pub fn pending_transport(&self) -> Option<&str> {
        match (&self.transport, &self.choice) {
            (None, TransportChoice::Named(n)) => Some(n),
            _ => None,
        }
    }

    /// Whether `build` has a transport to use: one set in code, or `stdout`, `file` or `none`
    /// chosen by the environment. A name only an adapter knows does not count until the
    /// adapter selects its transport.
    pub fn has_transport(&self) -> bool {
        self.transport.is_some()
            || !matches!(
                self.choice,
                TransportChoice::Unset | TransportChoice::Named(_)
            )
    }

    /// 128-bit (default) or 64-bit trace ids for new traces.
    pub fn trace_id_128(mut self, on: bool) -> TracerBuilder {
        self.trace_id_128 = on;
        self
    }

    /// Starts the reporter and returns the tracer.
    ///
    /// Fails when `TDIST_TRANSPORT` names a transport no adapter selected (see
    /// [`pending_transport`](Self::pending_transport)): spans would otherwise be dropped without
    /// a word. Logs a warning when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set and no transport was
    /// chosen, in code or by the environment.
    pub fn build(self) -> Result<Tracer, ConfigError> {
        if let Some(name) = self.pending_transport() {
            let reason = match name {
                "zipkin" => "no Zipkin transport was selected: pass the builder through \
                             tdist_http::zipkin::ZipkinTransport::configure"
                    .to_owned(),
                "kafka" => "no Kafka transport was selected: pass the builder through \
                            tdist_kafka::KafkaTransport::configure"
                    .to_owned(),
                _ => format!(
                    "no transport named {name:?} was selected (core has stdout, file and \
                     none, tdist-http zipkin, tdist-kafka kafka; another adapter selects its \
                     own with TracerBuilder::select_transport)"
                ),
            };
            return Err(ConfigError::new("TDIST_TRANSPORT", name, reason));
        }
        if self.transport.is_none()
            && self.choice == TransportChoice::Unset
            && self.zipkin_endpoint_set
        {
            tracing::warn!(
                target: "tdist",
                "{ZIPKIN_ENDPOINT_VAR} is set, but no transport sends to it: pass the builder \
                 through tdist_http::zipkin::ZipkinTransport::configure (or set \
                 TDIST_TRANSPORT=none); spans go nowhere"
            );
        }
        let transport: Box<dyn Transport> = match (self.transport, self.choice) {
            (Some(t), _) => t,
            (None, TransportChoice::Stdout) => Box::new(Stdout),
            (None, TransportChoice::File(path)) => {
                Box::new(JsonLinesFile::create(&path).map_err(|e| {
                    ConfigError::new("TDIST_FILE", path.display().to_string(), e.to_string())
                })?)
            }
            (None, TransportChoice::None | TransportChoice::Unset | TransportChoice::Named(_)) => {
                Box::new(NoopTransport)
            }
        };
        let shutdown = self.reporter.shutdown_timeout;
        let reporter = Reporter::new(transport, self.reporter);
        Ok(Tracer::from_parts(
            self.local,
            self.sampler,
            self.propagation,
            Some(reporter),
            self.trace_id_128,
            shutdown,
        ))
    }

    /// Builds the tracer and makes it the global one until the guard drops.
    pub fn install(self) -> Result<TracerGuard, ConfigError> {
        Ok(TracerGuard::new(self.build()?))
    }
}

/// `service.name` from `OTEL_RESOURCE_ATTRIBUTES` (`key=value` members separated by commas,
/// values percent-encoded as in W3C baggage). A member without `=` or with a bad escape makes
/// the whole value unusable, as the OpenTelemetry specification says.
fn resource_service_name(v: &str) -> Result<Option<String>, ConfigError> {
    const VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let mut name = None;
    for member in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let Some((key, value)) = member.split_once('=') else {
            let why = format!("member {member:?} is not key=value");
            return Err(ConfigError::new(VAR, v, why));
        };
        let value = percent_decode(value.trim()).ok_or_else(|| {
            ConfigError::new(VAR, v, format!("bad percent-encoding in {member:?}"))
        })?;
        if key.trim() == "service.name" && !value.trim().is_empty() {
            name = Some(value.trim().to_owned());
        }
    }
    Ok(name)
}

/// `%XX` escapes decoded; `None` for a truncated or non-hex escape or a result that is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(digit(hex[0]) << 4 | digit(hex[1]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_sampler(name: Option<String>, arg: Option<String>) -> Result<Sampler, ConfigError> {
    // The OpenTelemetry specification reads enum values case-insensitively.
    let lowered = name.as_deref().map(|n| n.trim().to_ascii_lowercase());
    let name = lowered.as_deref().unwrap_or("parentbased_always_on");
    let (parent_based, root) = match name.strip_prefix("parentbased_") {
        Some(root) => (true, root),
        None => (false, name),
    };
    let ratio = || -> Result<f64, ConfigError> {
        match &arg {
            None => Ok(1.0),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    ConfigError::new(
                        "OTEL_TRACES_SAMPLER_ARG",
                        v.clone(),
                        "expected a ratio between 0 and 1",
                    )
                }),
        }
    };
    let sampler = match root {
        "always_on" => Sampler::always(),
        "always_off" => Sampler::never(),
        "traceidratio" => Sampler::ratio(ratio()?),
        "ratelimited" => {
            let v = arg.clone().unwrap_or_else(|| "100".into());
            let n = v
                .trim()
                .parse::<u32>()
                .map_err(|_| ConfigError::new("OTEL_TRACES_SAMPLER_ARG", v.clone(), "expected traces per second"))?;
            Sampler::rate_limited(n)
        }
        _ => {
            return Err(ConfigError::new(
                "OTEL_TRACES_SAMPLER",
                name,
                "expected always_on, always_off, traceidratio, ratelimited, or parentbased_ one of those",
            ))
        }
    };
    Ok(sampler.parent_based(parent_based))
}

fn positive(var: &'static str, v: &str) -> Result<usize, ConfigError> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ConfigError::new(var, v, "expected a positive integer"))
}

fn millis(var: &'static str, v: &str) -> Result<Duration, ConfigError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ConfigError::new(var, v, "expected milliseconds as a whole number"))
}

fn boolean(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(var, v, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<TracerBuilder, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TracerBuilder::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn standard_variables() {
        let b = from(&[
            ("OTEL_SERVICE_NAME", "Checkout"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_PROPAGATORS", "b3,tracecontext"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
            ("TDIST_TRUST_DEBUG", "false"),
        ])
        .unwrap();
        assert_eq!(b.local.service_name(), Some("checkout"));
        assert_eq!(b.sampler.describe(), "parentbased_traceidratio(0.25)");
        assert!(!b.sampler.trusts_inbound_debug());
        assert_eq!(b.reporter.max_queue_size, 100);
        assert_eq!(b.reporter.schedule_delay, Duration::from_millis(250));
        assert_eq!(b.propagation.formats().count(), 2);
    }

    /// Enum values are read case-insensitively, as the OpenTelemetry specification asks.
    #[test]
    fn sampler_and_propagator_names_ignore_case() {
        let b = from(&[
            ("OTEL_TRACES_SAMPLER", " ParentBased_TraceIdRatio "),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ("OTEL_PROPAGATORS", "B3Multi,TraceContext"),
        ])
        .unwrap();
        assert_eq!(b.sampler.describe(), "parentbased_traceidratio(0.5)");
        assert_eq!(b.propagation.formats().count(), 2);
        assert!(from(&[("OTEL_TRACES_SAMPLER", "ALWAYS_OFF")]).is_ok());
        assert!(from(&[("OTEL_PROPAGATORS", "NONE")]).is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_PROPAGATORS", "xray"),
            ("TDIST_TRUST_DEBUG", "maybe"),
        ] {
            let e = from(&[(k, v)]).unwrap_err();
            assert_eq!(e.variable(), k);
            assert!(e.to_string().contains(k));
        }
        let e = from(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .unwrap_err();
        assert_eq!(e.variable(), "OTEL_TRACES_SAMPLER_ARG");
        let e = from(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
        ])
        .unwrap_err();
        assert_eq!(e.variable(), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
    }

    #[test]
    fn transport_choice() {
        assert!(!from(&[]).unwrap().has_transport());
        assert!(from(&[("TDIST_TRANSPORT", "stdout")])
            .unwrap()
            .has_transport());
        assert_eq!(
            from(&[("TDIST_TRANSPORT", "file")]).unwrap_err().variable(),
            "TDIST_FILE"
        );
    }

    #[test]
    fn adapter_names_wait_for_their_adapter_and_are_refused_if_it_never_comes() {
        let zipkin = from(&[("TDIST_TRANSPORT", " zipkin ")]).unwrap();
        assert!(!zipkin.has_transport());
        assert_eq!(zipkin.pending_transport(), Some("zipkin"));
        assert!(zipkin.may_select("zipkin"));
        assert!(!zipkin.may_select("kafka"));
        let e = zipkin.build().unwrap_err();
        assert_eq!(e.variable(), "TDIST_TRANSPORT");
        assert!(e.to_string().contains("ZipkinTransport::configure"), "{e}");

        // The named adapter selects its transport whatever order adapters are asked in.
        let b = from(&[("TDIST_TRANSPORT", "kafka")])
            .unwrap()
            .select_transport("zipkin", NoopTransport);
        assert!(!b.has_transport());
        let b = b.select_transport("kafka", NoopTransport);
        assert!(b.has_transport());
        assert_eq!(b.pending_transport(), None);
        b.build().unwrap().shutdown().unwrap();

        let e = from(&[("TDIST_TRANSPORT", "zipkn")])
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            e.to_string().contains("no transport named \"zipkn\""),
            "{e}"
        );
        assert!(e.to_string().contains("select_transport"), "{e}");
        // Another crate's transport, selected under its own name.
        let b = from(&[("TDIST_TRANSPORT", "otlp")])
            .unwrap()
            .select_transport("otlp", NoopTransport);
        b.build().unwrap().shutdown().unwrap();

        // A transport set in code is used whatever the environment names.
        let b = from(&[("TDIST_TRANSPORT", "zipkn")]).unwrap();
        b.transport(NoopTransport)
            .build()
            .unwrap()
            .shutdown()
            .unwrap();

        // Core's own choices leave adapters out.
        for (k, v) in [("TDIST_TRANSPORT", "none"), ("TDIST_TRANSPORT", "stdout")] {
            let b = from(&[(k, v)]).unwrap();
            assert!(!b.may_select("zipkin"));
            assert_eq!(b.pending_transport(), None);
        }
        let nothing = from(&[]).unwrap();
        assert!(nothing.may_select("zipkin") && nothing.may_select("kafka"));
        nothing.build().unwrap().shutdown().unwrap();
    }

    /// A Zipkin endpoint nothing sends to is only a warning (another program sharing the
    /// environment may be its reader), and the tracer still builds.
    #[test]
    fn a_zipkin_endpoint_nothing_sends_to_builds_with_a_warning() {
        let endpoint = (
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            "http://127.0.0.1:9411/api/v2/spans",
        );
        let b = from(&[endpoint]).unwrap();
        assert!(b.zipkin_endpoint_set && !b.has_transport());
        b.build().unwrap().shutdown().unwrap();
        let b = from(&[endpoint]).unwrap().transport(NoopTransport);
        b.build().unwrap().shutdown().unwrap();
    }

    #[test]
    fn service_name_from_resource_attributes() {
        let name = |pairs: &[(&str, &str)]| {
            let b = from(pairs).unwrap();
            b.local.service_name().map(str::to_owned)
        };
        let attrs = "deployment.environment=prod, service.name=Order%20Service ,team=a";
        let with = |v| [("OTEL_RESOURCE_ATTRIBUTES", v)];
        assert_eq!(name(&with(attrs)).as_deref(), Some("order service"));
        assert_eq!(name(&with("team=a")).as_deref(), Some("unknown_service"));
        assert_eq!(
            name(&with("service.name=")).as_deref(),
            Some("unknown_service")
        );
        // OTEL_SERVICE_NAME wins, as the specification says.
        let both = [
            ("OTEL_RESOURCE_ATTRIBUTES", attrs),
            ("OTEL_SERVICE_NAME", "billing"),
        ];
        assert_eq!(name(&both).as_deref(), Some("billing"));
        // A malformed value is ignored whole, as the specification says (other tools read it).
        for bad in [
            "service.name",
            "service.name=a%2",
            "service.name=a%zz",
            "service.name=a%+1",
            "service.name=%ff",
            "service.name=ok,note=50%",
        ] {
            let e = resource_service_name(bad).unwrap_err();
            assert_eq!(e.variable(), "OTEL_RESOURCE_ATTRIBUTES", "{bad}");
            assert_eq!(
                name(&with(bad)).as_deref(),
                Some("unknown_service"),
                "{bad}"
            );
        }
    }
}
