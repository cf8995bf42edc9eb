//! Prints a trace report from Zipkin v2 JSON spans.
//!
//! ```text
//! cargo run -p tdist-examples --example trace_report -- PATH [--trace ID] [--top N] [--repeat N]
//! ```
//!
//! PATH holds JSON lines (tdist's file transport) or JSON arrays (Zipkin's
//! `GET /api/v2/trace/{id}` or `/api/v2/traces`). The report shows the tree of one trace (the
//! longest, or `--trace ID`), repeated calls, self-time contributors, critical-path time and
//! latency percentiles per operation. Malformed lines are listed and skipped.
//!
//! Other span sources plug in through `Report::from_messages`, which takes an iterator of JSON
//! byte messages (for example the records of a Zipkin Kafka topic).

use std::process::ExitCode;
use tdist_examples::report::{Report, ReportOptions};

const USAGE: &str = "usage: trace_report PATH [--trace ID] [--top N] [--repeat N]";

struct Args {
    path: String,
    opts: ReportOptions,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut path = None;
    let mut opts = ReportOptions::default();
    let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        v.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("{flag} {v:?} is not a positive number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--trace" => opts.trace_id = Some(it.next().ok_or("--trace needs a value")?),
            "--top" => opts.top = number("--top", it.next())?,
            "--repeat" => opts.repeat_threshold = number("--repeat", it.next())?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ if a.starts_with("--") => return Err(format!("unknown option {a}\n{USAGE}")),
            _ if path.is_none() => path = Some(a),
            _ => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        path: path.ok_or(USAGE)?,
        opts,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let report = match Report::from_path(&args.path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.path);
            return ExitCode::FAILURE;
        }
    };
    match report.render(&args.opts) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
