//! Logging through `tracing` to standard error, at a level set by `-v`/`-q` or `STRATA_LOG`,
//! as text lines or JSON objects (`--log-format`, `STRATA_LOG_FORMAT`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::{Global, LogFormat};

/// Installs the subscriber. `STRATA_LOG` (an `EnvFilter` directive such as `debug` or
/// `strata_kv=trace`) wins over the flags.
pub(crate) fn init(global: &Global, default: tracing::Level) {
    let level = adjust(default, i16::from(global.verbose) - i16::from(global.quiet));
    let filter = EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| EnvFilter::new(level.as_str().to_ascii_lowercase()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match global.log_format {
        LogFormat::Text => {
            builder.with_target(false).with_ansi(std::io::stderr().is_terminal()).try_init()
        }
        // The target (the module that logged) helps a collector filter; no colour codes.
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

fn adjust(level: tracing::Level, steps: i16) -> tracing::Level {
    use tracing::Level;
    const ORDER: [Level; 5] = [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE];
    let at = ORDER.iter().position(|l| *l == level).unwrap_or(2) as i16;
    ORDER[(at + steps).clamp(0, 4) as usize]
}
