//! OpenTelemetry bridge.
