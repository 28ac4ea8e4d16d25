//! The pipeline's `[scaleout]` section, used by `logveil edge`, `aggregate` and `merge`;
//! `run` and `check` validate it like the rest of the file.
//!
//! ```toml
//! [scaleout]
//! site = "www"                 # subjects logveil.<site>.<partition>, stream LOGVEIL_<SITE>
//! partitions = 8               # fixed for the life of the stream: a visitor's partition is its pseudonym mod this
//! partials = "../partials"     # where aggregators write partials (a directory or s3://bucket/prefix); default <output dir>-partials (beside it, never inside)
//! hll_lg_k = 12                # optional: a DataSketches HLL column in partials (4–21)
//! lateness = "5m"              # an edge's watermark = latest event time − this
//! duplicate_window = "20m"     # how long `JetStream` remembers message ids (replays after a crash)
//! retention = "7d"             # how long the stream keeps messages
//! commit_interval = "2s"       # an aggregator commits (writes partials, acks) at least this often
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::daemon::settings::duration_key;

/// `[scaleout]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleoutSection {
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    partitions: Option<u32>,
    #[serde(default)]
    partials: Option<String>,
    #[serde(default)]
    hll_lg_k: Option<u8>,
    #[serde(default)]
    lateness: Option<String>,
    #[serde(default)]
    duplicate_window: Option<String>,
    #[serde(default)]
    retention: Option<String>,
    #[serde(default)]
    commit_interval: Option<String>,
}

/// `[scaleout]` validated, with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleoutSettings {
    /// Empty when the section is missing (the scale-out commands then refuse to start).
    pub site: String,
    pub partitions: u32,
    /// A directory (resolved against the pipeline file) or `s3://…`; `None`: `<output dir>-partials`.
    pub partials: Option<String>,
    pub hll_lg_k: Option<u8>,
    pub lateness: Duration,
    pub duplicate_window: Duration,
    pub retention: Duration,
    pub commit_interval: Duration,
}

impl Default for ScaleoutSettings {
    fn default() -> Self {
        Self {
            site: String::new(),
            partitions: 8,
            partials: None,
            hll_lg_k: None,
            lateness: Duration::from_mins(5),
            duplicate_window: Duration::from_mins(20),
            retention: Duration::from_hours(7 * 24),
            commit_interval: Duration::from_secs(2),
        }
    }
}

fn valid_site(site: &str) -> bool {
    !site.is_empty()
        && site.len() <= 64
        && site
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl ScaleoutSettings {
    /// Validates `[scaleout]`; each problem goes to `errors` naming the file, the key and
    /// what is allowed.
    pub fn from_section(
        section: Option<ScaleoutSection>,
        shown: &str,
        base: &Path,
        errors: &mut Vec<String>,
    ) -> Self {
        let defaults = Self::default();
        let Some(section) = section else {
            return defaults;
        };
        let mut duration = |key: &str, value: Option<&String>, default: Duration, max: Duration| {
            let rule = format!("0s to {}d", max.as_secs() / 86_400);
            duration_key(
                errors,
                shown,
                &format!("scaleout.{key}"),
                value,
                default,
                (Duration::ZERO, max, &rule),
            )
        };
        let lateness = duration(
            "lateness",
            section.lateness.as_ref(),
            defaults.lateness,
            Duration::from_hours(7 * 24),
        );
        let duplicate_window = duration(
            "duplicate_window",
            section.duplicate_window.as_ref(),
            defaults.duplicate_window,
            Duration::from_hours(7 * 24),
        );
        let retention = duration(
            "retention",
            section.retention.as_ref(),
            defaults.retention,
            Duration::from_hours(365 * 24),
        );
        let commit_interval = duration(
            "commit_interval",
            section.commit_interval.as_ref(),
            defaults.commit_interval,
            Duration::from_hours(24),
        );
        let site = section.site.unwrap_or_default();
        if !valid_site(&site) {
            errors.push(format!(
                "{shown}: scaleout.site: `{site}` is not a site name (allowed: 1 to 64 lower-case letters, digits, `-` and `_`)"
            ));
        }
        let partitions = section.partitions.unwrap_or(defaults.partitions);
        if !(1..=4096).contains(&partitions) {
            errors.push(format!(
                "{shown}: scaleout.partitions: {partitions} is out of range (allowed: 1 to 4096)"
            ));
        }
        if let Some(k) = section.hll_lg_k
            && !(4..=21).contains(&k)
        {
            errors.push(format!(
                "{shown}: scaleout.hll_lg_k: {k} is out of range (allowed: 4 to 21)"
            ));
        }
        if duplicate_window > retention {
            errors.push(format!(
                "{shown}: scaleout.duplicate_window: longer than scaleout.retention (allowed: at most the retention)"
            ));
        }
        let partials = section.partials.map(|p| {
            if p.contains("://") {
                p
            } else {
                logveil_ingest::normalize_path(&base.join(p))
                    .display()
                    .to_string()
            }
        });
        Self {
            site,
            partitions: partitions.clamp(1, 4096),
            partials,
            hll_lg_k: section.hll_lg_k,
            lateness,
            duplicate_window,
            retention,
            commit_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> ScaleoutSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_and_paths() {
        let mut errors = Vec::new();
        let s = ScaleoutSettings::from_section(
            Some(section("site = \"www\"\npartials = \"parts\"")),
            "p.toml",
            Path::new("/etc/logveil"),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.partitions, 8);
        assert_eq!(s.partials.as_deref(), Some("/etc/logveil/parts"));
        let s = ScaleoutSettings::from_section(
            Some(section("site = \"www\"\npartials = \"s3://b/p\"")),
            "p.toml",
            Path::new("/etc"),
            &mut errors,
        );
        assert_eq!(s.partials.as_deref(), Some("s3://b/p"));
    }

    #[test]
    fn errors_name_file_key_and_what_is_allowed() {
        let mut errors = Vec::new();
        ScaleoutSettings::from_section(
            Some(section(
                "site = \"W W\"\npartitions = 0\nhll_lg_k = 30\nlateness = \"soon\"",
            )),
            "p.toml",
            Path::new("."),
            &mut errors,
        );
        let all = errors.join("\n");
        for needle in [
            "p.toml: scaleout.site: `W W`",
            "scaleout.partitions: 0 is out of range (allowed: 1 to 4096)",
            "scaleout.hll_lg_k: 30",
            "scaleout.lateness: `soon` is not a duration",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }
}
