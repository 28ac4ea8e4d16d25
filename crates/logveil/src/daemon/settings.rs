//! The pipeline's `[daemon]` section: only `logveil daemon` uses it; `run` and `check`
//! validate it like the rest of the file.
//!
//! ```toml
//! [daemon]
//! state_dir = "../state"            # checkpoint and lock (or --state); relative to the pipeline file
//! allowed_lateness = "5m"           # watermark = latest event time − this
//! poll_interval = "250ms"           # how often the globs and files are looked at when idle
//! metrics_addr = "127.0.0.1:9464"   # /metrics and /healthz; loopback only; none: no listener
//! accounts_refresh = "15m"          # reload the account snapshot and the key ring
//! checkpoint_interval = "5s"        # at most this much work is redone after a crash
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[daemon]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    allowed_lateness: Option<String>,
    #[serde(default)]
    poll_interval: Option<String>,
    #[serde(default)]
    metrics_addr: Option<String>,
    #[serde(default)]
    accounts_refresh: Option<String>,
    #[serde(default)]
    checkpoint_interval: Option<String>,
}

/// `[daemon]` validated, with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Resolved against the pipeline file's directory; `--state` overrides it.
    pub state_dir: Option<PathBuf>,
    pub allowed_lateness: Duration,
    pub poll_interval: Duration,
    /// Loopback only; `None`: no HTTP listener.
    pub metrics_addr: Option<SocketAddr>,
    pub accounts_refresh: Duration,
    pub checkpoint_interval: Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            state_dir: None,
            allowed_lateness: Duration::from_mins(5),
            poll_interval: Duration::from_millis(250),
            metrics_addr: None,
            accounts_refresh: Duration::from_mins(15),
            checkpoint_interval: Duration::from_secs(5),
        }
    }
}

const DURATION_RULE: &str =
    "a whole number followed by ms, s, m, h or d, such as \"250ms\" or \"5m\"";

/// `250ms`, `5s`, `5m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(ms)?))
}

/// One duration key of a section (`key` in full: `daemon.poll_interval`), with its
/// default when absent; a bad or out-of-range value goes to `errors` naming the file, the
/// key and what is allowed (`range.2`).
pub fn duration_key(
    errors: &mut Vec<String>,
    shown: &str,
    key: &str,
    value: Option<&String>,
    default: Duration,
    range: (Duration, Duration, &str),
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    match parse_duration(value) {
        Some(d) if d >= range.0 && d <= range.1 => d,
        Some(_) => {
            errors.push(format!(
                "{shown}: {key}: `{value}` is out of range (allowed: {})",
                range.2
            ));
            default
        }
        None => {
            errors.push(format!(
                "{shown}: {key}: `{value}` is not a duration (allowed: {DURATION_RULE})"
            ));
            default
        }
    }
}

impl DaemonSettings {
    /// Validates `[daemon]`; each problem goes to `errors` naming the file, the key and
    /// what is allowed.
    pub fn from_section(
        section: Option<DaemonSection>,
        shown: &str,
        base: &Path,
        errors: &mut Vec<String>,
    ) -> Self {
        let defaults = Self::default();
        let Some(section) = section else {
            return defaults;
        };
        let mut duration = |key: &str,
                            value: Option<&String>,
                            default: Duration,
                            range: (Duration, Duration, &str)| {
            duration_key(
                errors,
                shown,
                &format!("daemon.{key}"),
                value,
                default,
                range,
            )
        };
        let allowed_lateness = duration(
            "allowed_lateness",
            section.allowed_lateness.as_ref(),
            defaults.allowed_lateness,
            (Duration::ZERO, Duration::from_hours(7 * 24), "0s to 7d"),
        );
        let poll_interval = duration(
            "poll_interval",
            section.poll_interval.as_ref(),
            defaults.poll_interval,
            (
                Duration::from_millis(10),
                Duration::from_mins(1),
                "10ms to 60s",
            ),
        );
        let accounts_refresh = duration(
            "accounts_refresh",
            section.accounts_refresh.as_ref(),
            defaults.accounts_refresh,
            (
                Duration::from_secs(1),
                Duration::from_hours(7 * 24),
                "1s to 7d",
            ),
        );
        let checkpoint_interval = duration(
            "checkpoint_interval",
            section.checkpoint_interval.as_ref(),
            defaults.checkpoint_interval,
            (
                Duration::from_millis(100),
                Duration::from_hours(1),
                "100ms to 1h",
            ),
        );
        let metrics_addr =
            section
                .metrics_addr
                .as_deref()
                .and_then(|text| match check_metrics_addr(text) {
                    Ok(addr) => Some(addr),
                    Err(e) => {
                        errors.push(format!("{shown}: daemon.metrics_addr: {e}"));
                        None
                    }
                });
        Self {
            state_dir: section
                .state_dir
                .map(|dir| logveil_ingest::normalize_path(&base.join(dir))),
            allowed_lateness,
            poll_interval,
            metrics_addr,
            accounts_refresh,
            checkpoint_interval,
        }
    }
}

/// A socket address on a loopback interface (`127.0.0.1:9464`, `[::1]:9464`; port 0 picks one).
pub fn check_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("`{text}` is not an address and port (allowed: a loopback address and port, such as 127.0.0.1:9464 or [::1]:9464)")
    })?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "`{text}` is not a loopback address (allowed: 127.0.0.0/8 or ::1; the metrics name files and reports, so expose them through a proxy if needed)"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_mins(5)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_hours(24)));
        for bad in [
            "",
            "5",
            "m",
            "5 minutes",
            "-1s",
            "1.5s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn section_errors_name_file_key_and_what_is_allowed() {
        let section: DaemonSection = toml::from_str(
            "allowed_lateness = \"5 minutes\"\npoll_interval = \"2h\"\nmetrics_addr = \"0.0.0.0:9464\"",
        )
        .unwrap();
        let mut errors = Vec::new();
        let s = DaemonSettings::from_section(Some(section), "p.toml", Path::new("."), &mut errors);
        assert_eq!(s.allowed_lateness, Duration::from_mins(5));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with(
            "p.toml: daemon.allowed_lateness: `5 minutes` is not a duration (allowed: "
        ));
        assert!(
            errors[1].contains("daemon.poll_interval: `2h` is out of range (allowed: 10ms to 60s)")
        );
        assert!(
            errors[2].contains("daemon.metrics_addr: `0.0.0.0:9464` is not a loopback address")
        );
        let ok: DaemonSection =
            toml::from_str("metrics_addr = \"[::1]:0\"\nstate_dir = \"../state\"").unwrap();
        let mut errors = Vec::new();
        let s =
            DaemonSettings::from_section(Some(ok), "p.toml", Path::new("pipelines"), &mut errors);
        assert!(errors.is_empty());
        assert_eq!(s.state_dir, Some(PathBuf::from("state")));
        assert!(s.metrics_addr.unwrap().ip().is_loopback());
    }
}
