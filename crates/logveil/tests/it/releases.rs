//! Releases to external audiences (issue #14): what an operator's ordinary actions do to
//! the numbers an external audience holds and to its ledger. A release's identity covers the
//! report definition, the noise key, the partition and the true aggregated state: the same
//! identity gives the same bytes and no new charge; anything else is a new release, charged
//! (DP) or recorded (cell key), or refused (a cell-key partition under another noise key).
//!
//! Every test works on `pipelines/external.toml` (partner cell-key report
//! `demographics_totals_daily`, public DP reports `pages_daily_dp` and `devices_hourly_dp`,
//! internal `not_found_daily`) written into a temporary directory with absolute paths, on
//! copies of the sample logs, with its own privacy state directory. Each prints the ledger
//! record counts before and after and the bytes of the files it compares.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    batch_rows, bin, files_under, key_value_metadata, ledger_records, read_batches, repo,
    report_rows, sample_lines,
};

/// The reports of `external.toml` that go to external audiences.
const EXTERNAL: [&str; 3] = [
    "demographics_totals_daily",
    "pages_daily_dp",
    "devices_hourly_dp",
];
const DP: [&str; 2] = ["pages_daily_dp", "devices_hourly_dp"];
const PARTNER: &str = "demographics_totals_daily";
const SAMPLES: [&str; 2] = ["access-2026-11-01.log", "access-2026-11-02.log"];
const DAYS: [&str; 2] = ["2026-11-01", "2026-11-02"];

/// `pipelines/external.toml` in a temporary directory: copies of the sample logs in
/// `logs/`, every path absolute, output `out/`, privacy state `privacy-state/`.
struct External {
    tmp: tempfile::TempDir,
    pipeline: PathBuf,
    state: PathBuf,
}

/// One `logveil` invocation.
struct Ran {
    output: Output,
    out: PathBuf,
    summary: serde_json::Value,
}

impl Ran {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn assert_ok(&self) -> &Self {
        assert!(
            self.output.status.success(),
            "logveil run failed:\n{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            self.stderr()
        );
        self
    }

    fn report(&self, name: &str) -> &serde_json::Value {
        &self.summary["reports"][name]
    }
}

/// Quoted for TOML (a basic string: paths here have no control characters).
fn toml_str(s: &Path) -> String {
    format!("{:?}", s.display().to_string())
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "pipelines/external.toml: `{from}` not found once"
    );
    text.replace(from, to)
}

impl External {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        for name in SAMPLES {
            std::fs::copy(repo().join("sample-logs").join(name), logs.join(name)).unwrap();
        }
        let pipeline = tmp.path().join("external.toml");
        let state = tmp.path().join("privacy-state");
        let fx = Self {
            tmp,
            pipeline,
            state,
        };
        let text = fx.pipeline_text(
            &repo().join("sample-logs/demo.key"),
            &format!(
                "sqlite:{}",
                repo().join("sample-logs/accounts.db").display()
            ),
        );
        std::fs::write(&fx.pipeline, text).unwrap();
        fx
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn logs(&self) -> PathBuf {
        self.path("logs")
    }

    /// `external.toml` with absolute paths, the key file `key` and the account source
    /// `accounts`.
    fn pipeline_text(&self, key: &Path, accounts: &str) -> String {
        let text = std::fs::read_to_string(repo().join("pipelines/external.toml")).unwrap();
        let text = replace_once(
            &text,
            r#"paths = ["../sample-logs/access-*.log"]"#,
            &format!("paths = [{}]", toml_str(&self.logs().join("access-*.log"))),
        );
        let text = replace_once(
            &text,
            r#"file = "../sample-logs/demo.key""#,
            &format!("file = {}", toml_str(key)),
        );
        let text = replace_once(
            &text,
            r#"file = "policy.toml""#,
            &format!("file = {}", toml_str(&repo().join("pipelines/policy.toml"))),
        );
        let text = replace_once(
            &text,
            r#"source = "sqlite:../sample-logs/accounts.db""#,
            &format!("source = {accounts:?}"),
        );
        replace_once(
            &text,
            r#"dir = "../out-external""#,
            &format!("dir = {}", toml_str(&self.path("out"))),
        )
    }

    fn write_pipeline(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `logveil run PIPELINE --out OUT --privacy-state STATE --summary … EXTRA` (`out`
    /// relative to the temporary directory; `None`: the pipeline's own output directory).
    fn run_with(&self, pipeline: &Path, out: Option<&str>, extra: &[&str]) -> Ran {
        let state = (!extra.contains(&"--privacy-state")).then_some(self.state.as_path());
        self.run_in_state(pipeline, out, state, extra)
    }

    /// [`Self::run_with`] with `--privacy-state state`, or none (the pipeline's default:
    /// `logveil-state/` beside the pipeline file).
    fn run_in_state(
        &self,
        pipeline: &Path,
        out: Option<&str>,
        state: Option<&Path>,
        extra: &[&str],
    ) -> Ran {
        let out_dir = self.path(out.unwrap_or("out"));
        let summary = self.path(&format!("summary-{}.json", out.unwrap_or("default")));
        let _ = std::fs::remove_file(&summary);
        let mut cmd = bin();
        cmd.current_dir(repo()).arg("run").arg(pipeline);
        if out.is_some() {
            cmd.arg("--out").arg(&out_dir);
        }
        if let Some(state) = state {
            cmd.arg("--privacy-state").arg(state);
        }
        let output = cmd
            .arg("--summary")
            .arg(&summary)
            .args(extra)
            .output()
            .unwrap();
        let summary = std::fs::read(&summary)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        Ran {
            output,
            out: out_dir,
            summary,
        }
    }

    fn run(&self, out: &str) -> Ran {
        self.run_with(&self.pipeline, Some(out), &[])
    }

    /// The records of both external audiences' ledgers.
    fn ledger(&self) -> Ledger {
        Ledger {
            partner: ledger_records(&self.state, "partner"),
            public: ledger_records(&self.state, "public"),
        }
    }

    /// `logveil ledger ACTION self.pipeline --privacy-state STATE ARGS`.
    fn ledger_command(&self, action: &str, args: &[&str]) -> Output {
        bin()
            .args(["ledger", action])
            .arg(&self.pipeline)
            .arg("--privacy-state")
            .arg(&self.state)
            .args(args)
            .output()
            .unwrap()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Ledger {
    partner: Vec<serde_json::Value>,
    public: Vec<serde_json::Value>,
}

impl Ledger {
    fn counts(&self) -> String {
        format!(
            "partner {}, public {}",
            self.partner.len(),
            self.public.len()
        )
    }

    /// Records added since `before` (the ledgers only grow).
    fn added_since(&self, before: &Self) -> Vec<serde_json::Value> {
        assert!(
            self.partner.starts_with(&before.partner) && self.public.starts_with(&before.public),
            "a ledger lost or changed records:\nbefore {before:#?}\nafter {self:#?}"
        );
        self.partner[before.partner.len()..]
            .iter()
            .chain(&self.public[before.public.len()..])
            .cloned()
            .collect()
    }
}

/// Every Parquet file of `reports` under `out`, relative, with its bytes.
fn parquet(out: &Path, reports: &[&str]) -> BTreeMap<String, Vec<u8>> {
    files_under(out)
        .into_iter()
        .filter(|f| {
            f.ends_with(".parquet") && reports.iter().any(|r| f.starts_with(&format!("{r}/")))
        })
        .map(|f| {
            let bytes = std::fs::read(out.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn total_bytes(files: &BTreeMap<String, Vec<u8>>) -> usize {
    files.values().map(Vec::len).sum()
}

/// The partition file of `report` for `day`.
fn part(report: &str, day: &str) -> String {
    format!("{report}/date={day}/part-00000.parquet")
}

/// The release identity lives in the ledger only: an external file never carries it.
fn assert_no_release_id(out: &Path, report: &str, day: &str) {
    assert!(
        !key_value_metadata(&out.join(part(report, day))).contains_key("logveil.release_id"),
        "{report} {day}: an external file carries logveil.release_id"
    );
}

fn assert_identical(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: the same files"
    );
    let differ: Vec<&String> = before
        .iter()
        .filter(|(f, bytes)| after[*f] != **bytes)
        .map(|(f, _)| f)
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: files not byte-identical: {differ:?}"
    );
}

/// The line of `lines` that matches every needle, with its index.
fn find_line(lines: &[String], needles: &[&str]) -> usize {
    lines
        .iter()
        .position(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no sample line with {needles:?}"))
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

/// 1. A re-run into a new output directory with the same privacy state: the same releases,
///    byte for byte, and nothing charged or recorded. The same without `--privacy-state`:
///    the default state directory is beside the pipeline file, not derived from `--out`.
#[test]
fn rerun_into_new_out_is_free_and_identical() {
    let fx = External::new();
    let first = fx.run("out1");
    first.assert_ok();
    let after_first = fx.ledger();
    assert_eq!(
        (after_first.partner.len(), after_first.public.len()),
        (2, 4),
        "first run: 2 partner releases, 2 DP reports × 2 days spent"
    );
    assert_eq!(first.report("devices_hourly_dp")["epsilon"], "24");
    let ledger_bytes = std::fs::read(fx.state.join("ledger/public.jsonl")).unwrap();

    let second = fx.run("out2");
    second.assert_ok();
    let after_second = fx.ledger();
    let (a, b) = (
        parquet(&first.out, &EXTERNAL),
        parquet(&second.out, &EXTERNAL),
    );
    assert_eq!(a.len(), 6, "3 external reports × 2 days");
    assert_identical(&a, &b, "re-run into a new --out");
    assert_eq!(after_second, after_first, "no new ledger record");
    assert_eq!(
        std::fs::read(fx.state.join("ledger/public.jsonl")).unwrap(),
        ledger_bytes
    );
    for report in DP {
        assert_eq!(second.report(report)["epsilon"], "0", "{report}");
        assert_eq!(second.report(report)["delta"], "0", "{report}");
    }
    for report in EXTERNAL {
        assert_eq!(second.report(report)["new_releases"], 0, "{report}");
    }

    // The pipeline's default state directory: `logveil-state/` beside the pipeline file.
    let default_state = fx.path("logveil-state");
    let third = fx.run_in_state(&fx.pipeline, Some("out3"), None, &[]);
    third.assert_ok();
    let records = |state: &Path| {
        (
            ledger_records(state, "partner").len(),
            ledger_records(state, "public").len(),
        )
    };
    assert_eq!(
        records(&default_state),
        (2, 4),
        "charged to the default ledger"
    );
    let fourth = fx.run_in_state(&fx.pipeline, Some("out4"), None, &[]);
    fourth.assert_ok();
    assert_eq!(records(&default_state), (2, 4), "a new --out: nothing new");
    assert!(!fx.path("out4").join("logveil-state").exists());
    assert_identical(
        &parquet(&third.out, &EXTERNAL),
        &parquet(&fourth.out, &EXTERNAL),
        "default state, new --out",
    );
    assert_identical(
        &a,
        &parquet(&fourth.out, &EXTERNAL),
        "same noise in any state",
    );
    eprintln!(
        "rerun into new out: ledger {} → {}; {} external files, {} bytes, identical; default state dir: ledger (2, 4) → {:?}",
        after_first.counts(),
        after_second.counts(),
        b.len(),
        total_bytes(&b),
        records(&default_state)
    );
}

/// 2. Renaming an input (the glob still matches) and touching another change no line: the
///    same releases, byte for byte, nothing new in the ledger.
#[test]
fn renamed_input_and_touch_are_free_and_identical() {
    let fx = External::new();
    let first = fx.run("out1");
    first.assert_ok();
    let before = fx.ledger();

    let logs = fx.logs();
    std::fs::rename(
        logs.join("access-2026-11-01.log"),
        logs.join("access-renamed-2026-11-01.log"),
    )
    .unwrap();
    let touched = std::fs::OpenOptions::new()
        .write(true)
        .open(logs.join("access-2026-11-02.log"))
        .unwrap();
    let later = std::time::SystemTime::now() + Duration::from_hours(1);
    touched.set_modified(later).unwrap();
    drop(touched);
    assert!(
        std::fs::metadata(logs.join("access-2026-11-02.log"))
            .unwrap()
            .modified()
            .unwrap()
            >= later - Duration::from_secs(1)
    );

    let second = fx.run("out2");
    second.assert_ok();
    assert_eq!(
        second.summary["lines_read"], first.summary["lines_read"],
        "the renamed file is still read"
    );
    let after = fx.ledger();
    let (a, b) = (
        parquet(&first.out, &EXTERNAL),
        parquet(&second.out, &EXTERNAL),
    );
    assert_identical(&a, &b, "renamed and touched inputs");
    assert_eq!(after, before, "no new ledger record");
    eprintln!(
        "renamed input + touch: ledger {} → {}; {} external files, {} bytes, identical",
        before.counts(),
        after.counts(),
        b.len(),
        total_bytes(&b)
    );
}

/// For each external report and day: a new release (a new ledger record for that partition,
/// and a new release id in the file) or the same one (no record, identical bytes), never a
/// mix. Returns the (report, day) pairs that were new releases.
fn classify_releases(
    before_files: &BTreeMap<String, Vec<u8>>,
    after_files: &BTreeMap<String, Vec<u8>>,
    added: &[serde_json::Value],
    before_out: &Path,
    after_out: &Path,
    what: &str,
) -> Vec<(String, String)> {
    let mut new = Vec::new();
    for report in EXTERNAL {
        for day in DAYS {
            let file = part(report, day);
            let records: Vec<&serde_json::Value> = added
                .iter()
                .filter(|r| r["report"] == report && r["partition"] == day)
                .collect();
            let same_bytes = before_files.get(&file) == after_files.get(&file);
            assert_no_release_id(before_out, report, day);
            assert_no_release_id(after_out, report, day);
            if records.is_empty() {
                assert!(
                    same_bytes,
                    "{what}: {report} {day}: no ledger record, yet the file changed"
                );
            } else {
                assert!(
                    !same_bytes,
                    "{what}: {report} {day}: recorded as a new release, yet the same bytes"
                );
                assert_eq!(records.len(), 1, "{what}: {report} {day}: {records:?}");
                let kind = if report == PARTNER {
                    "release"
                } else {
                    "spend"
                };
                assert_eq!(records[0]["kind"], kind, "{what}: {report} {day}");
                assert!(
                    records[0]["release_id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("lvr1-")),
                    "{what}: {report} {day}: the record names its release"
                );
                new.push((report.to_owned(), day.to_owned()));
            }
        }
    }
    new
}

/// 3. Same-size edits of an input. A status `200` → `201` (still a 2xx view; no report
///    counts statuses) leaves every true state unchanged: identical bytes, nothing recorded.
///    One character of a visitor's cookie (the visitor changes) changes day 1 of every
///    external report that counts the line: each is a new release, charged (DP) or recorded
///    (partner); day 2 is untouched.
#[test]
fn same_size_edit_is_charged() {
    let fx = External::new();
    let day1 = fx.logs().join("access-2026-11-01.log");
    let size = std::fs::metadata(&day1).unwrap().len();
    let first = fx.run("out1");
    first.assert_ok();
    let before = fx.ledger();
    let files1 = parquet(&first.out, &EXTERNAL);

    // Edit A: a status digit.
    let mut lines = read_lines(&day1);
    let i = find_line(
        &lines,
        &["\"GET /en/", " HTTP/1.1\" 200 ", "jt_uid=u-", "Mozilla/5.0"],
    );
    lines[i] = lines[i].replacen("\" 200 ", "\" 201 ", 1);
    std::fs::write(&day1, lines.concat()).unwrap();
    assert_eq!(std::fs::metadata(&day1).unwrap().len(), size);
    let second = fx.run("out2");
    second.assert_ok();
    let after_status = fx.ledger();
    let files2 = parquet(&second.out, &EXTERNAL);
    let new = classify_releases(
        &files1,
        &files2,
        &after_status.added_since(&before),
        &first.out,
        &second.out,
        "status 200 → 201",
    );
    assert!(
        new.is_empty(),
        "status 200 → 201 changes no true state: {new:?}"
    );

    // Edit B: the last character of the line's `jt_uid` cookie value (same length).
    let line = lines[i].clone();
    let at = line.find("jt_uid=u-").unwrap() + "jt_uid=u-".len() + 15;
    let old = line.as_bytes()[at];
    let replacement = if old == b'0' { "1" } else { "0" };
    lines[i] = format!("{}{replacement}{}", &line[..at], &line[at + 1..]);
    std::fs::write(&day1, lines.concat()).unwrap();
    assert_eq!(std::fs::metadata(&day1).unwrap().len(), size);
    let third = fx.run("out3");
    third.assert_ok();
    let after_cookie = fx.ledger();
    let files3 = parquet(&third.out, &EXTERNAL);
    let mut new = classify_releases(
        &files2,
        &files3,
        &after_cookie.added_since(&after_status),
        &second.out,
        &third.out,
        "cookie character",
    );
    new.sort();
    let mut want: Vec<(String, String)> = EXTERNAL
        .iter()
        .map(|r| ((*r).to_owned(), DAYS[0].to_owned()))
        .collect();
    want.sort();
    assert_eq!(
        new, want,
        "a /en/ 200 view by a changed visitor: day 1 of every external report is a new release"
    );
    for report in DP {
        assert_ne!(third.report(report)["epsilon"], "0", "{report} charged");
    }
    eprintln!(
        "same-size edits of {size} bytes: status 200→201: ledger {} → {} (files {} bytes identical); cookie char: ledger → {}, new releases {new:?}, {} bytes",
        before.counts(),
        after_status.counts(),
        total_bytes(&files2),
        after_cookie.counts(),
        total_bytes(&files3)
    );
}

/// A new key file from `logveil keygen`; returns its path and key id.
fn keygen(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("site.key");
    let out = bin()
        .args(["keygen"])
        .arg(&key)
        .args(["--not-before", "2026-01-01"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = bin().args(["keys", "list"]).arg(&key).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    let id = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split('\t').next())
        .unwrap_or_else(|| panic!("keys list: {listed}"))
        .to_owned();
    (key, id)
}

/// Removes the `[[report]]` block named `name` from a pipeline text.
fn without_report(text: &str, name: &str) -> String {
    let blocks: Vec<&str> = text.split("\n[[report]]").collect();
    let kept: Vec<&str> = blocks
        .iter()
        .enumerate()
        .filter(|(i, b)| *i == 0 || !b.contains(&format!("name = \"{name}\"")))
        .map(|(_, b)| *b)
        .collect();
    assert_eq!(kept.len() + 1, blocks.len(), "report {name} not found once");
    kept.join("\n[[report]]")
}

/// 4. Another key file: the partner's cell-key partitions were released under the demo
///    key, so the run is refused naming the noise key (all or nothing: no file changes,
///    nothing recorded); the DP reports alone under the new key are new releases, charged
///    again with the new key's id.
#[test]
fn key_swap_is_charged() {
    let fx = External::new();
    let first = fx.run("out");
    first.assert_ok();
    let before = fx.ledger();
    let files = parquet(&first.out, &EXTERNAL);
    let (key, key_id) = keygen(fx.tmp.path());
    assert_ne!(key_id, "demo-2026");
    let accounts = format!(
        "sqlite:{}",
        repo().join("sample-logs/accounts.db").display()
    );
    let swapped = fx.write_pipeline("swapped.toml", &fx.pipeline_text(&key, &accounts));

    let refused = fx.run_with(&swapped, Some("out"), &[]);
    assert!(
        !refused.output.status.success(),
        "a key swap under the partner's releases"
    );
    assert!(
        refused.stderr().contains("noise key"),
        "{}",
        refused.stderr()
    );
    assert!(refused.stderr().contains(PARTNER), "{}", refused.stderr());
    let after_refusal = fx.ledger();
    assert_eq!(after_refusal, before, "a refused run records nothing");
    assert_identical(&files, &parquet(&first.out, &EXTERNAL), "refused key swap");
    assert_eq!(
        parquet(&first.out, &["not_found_daily"]).len(),
        2,
        "the internal report's files are still there"
    );

    // The DP reports alone under the new key.
    let dp_only = fx.write_pipeline(
        "swapped-dp.toml",
        &without_report(&fx.pipeline_text(&key, &accounts), PARTNER),
    );
    let charged = fx.run_with(&dp_only, Some("out-dp"), &[]);
    charged.assert_ok();
    let after = fx.ledger();
    let added = after.added_since(&before);
    assert_eq!(
        added.len(),
        4,
        "2 DP reports × 2 days charged again: {added:?}"
    );
    for r in &added {
        assert_eq!(r["kind"], "spend", "{r}");
        assert_eq!(r["key_id"], key_id.as_str(), "{r}");
        assert!(
            !before
                .public
                .iter()
                .any(|b| b["release_id"] == r["release_id"]),
            "a new release id: {r}"
        );
    }
    assert_eq!(charged.report("devices_hourly_dp")["epsilon"], "24");
    let dp_files = parquet(&charged.out, &DP);
    for (f, bytes) in &dp_files {
        assert_ne!(&files[f], bytes, "{f}: another key, another release");
    }
    eprintln!(
        "key swap: refused run ledger {} → {} ({} external bytes unchanged); DP-only run ledger → {} ({} new spends under {key_id})",
        before.counts(),
        after_refusal.counts(),
        total_bytes(&files),
        after.counts(),
        added.len()
    );
}

/// `sample-logs/accounts.csv` with research consent withdrawn for `account` (`None`: as
/// it is), written to `dir`; returns the account source (`csv:PATH`).
fn accounts_without_consent(dir: &Path, account: Option<&str>) -> String {
    let text = std::fs::read_to_string(repo().join("sample-logs/accounts.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let cols: Vec<&str> = header.split(',').collect();
    let research = cols.iter().position(|c| *c == "consent_research").unwrap();
    assert_eq!(
        cols.len() - research,
        4,
        "the flags are the last four columns"
    );
    let mut out = format!("{header}\n");
    for line in lines {
        let mut parts: Vec<&str> = line.rsplitn(5, ',').collect();
        parts.reverse(); // [rest, consent_research, consent_advertising, opt_out, deleted]
        if account.is_some_and(|a| parts[0].starts_with(&format!("{a},"))) {
            assert_eq!(parts[1], "1", "{line}: had research consent");
            parts[1] = "0";
        }
        out.push_str(&parts.join(","));
        out.push('\n');
    }
    let path = dir.join(format!("accounts-{}.csv", account.unwrap_or("all")));
    std::fs::write(&path, out).unwrap();
    format!("csv:{}", path.display())
}

/// An internal twin of the partner report: the exact counts behind its cells.
const TRUTH_TWIN: &str = r#"
[[report]]
name = "demographics_truth_daily"
audience = "internal"
purpose = "anonymous_reporting"
bucket = "day"
dimensions = ["age_band", "gender"]
metrics = ["views", "visitors"]
totals = true
"#;

/// The key of a demographics row (date, dimensions, total), as a string.
fn cell_key(row: &serde_json::Value) -> String {
    let mut key = row.as_object().unwrap().clone();
    key.remove("views");
    key.remove("visitors");
    serde_json::Value::Object(key).to_string()
}

/// Every published partner cell is within ±`max_noise` visitors of the internal twin's exact
/// count; returns the published visitors by cell.
fn assert_partner_within_noise(out: &Path, what: &str) -> BTreeMap<String, i64> {
    let max_noise = files_under(&out.join(PARTNER))
        .iter()
        .map(|f| crate::util::cell_key_parameters(&out.join(PARTNER).join(f)).0)
        .max()
        .unwrap();
    let truth: BTreeMap<String, i64> = report_rows(out, "demographics_truth_daily")
        .iter()
        .map(|r| (cell_key(r), r["visitors"].as_i64().unwrap()))
        .collect();
    let mut published = BTreeMap::new();
    for row in report_rows(out, PARTNER) {
        let key = cell_key(&row);
        let v = row["visitors"].as_i64().unwrap();
        let t = *truth
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: no true count for {row}"));
        assert!(
            (v - t).unsigned_abs() <= max_noise,
            "{what}: {row}: published {v}, true {t}, max_noise {max_noise}"
        );
        published.insert(key, v);
    }
    published
}

/// 5. One account withdraws research consent: the partner partitions that person was in are
///    new releases (recorded), published within ±`max_noise` of the new truth; the DP reports,
///    which join no accounts, are the same releases, free and byte-identical.
#[test]
fn accounts_change_is_charged() {
    let fx = External::new();
    // The first account of the sample: pinned, research consent, visits every day.
    let first_account = std::fs::read_to_string(repo().join("sample-logs/accounts.csv"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let pipeline_with = |name: &str, accounts: &str| {
        fx.write_pipeline(
            name,
            &format!(
                "{}{TRUTH_TWIN}",
                fx.pipeline_text(&repo().join("sample-logs/demo.key"), accounts)
            ),
        )
    };
    let before_p = pipeline_with(
        "before.toml",
        &accounts_without_consent(fx.tmp.path(), None),
    );
    let after_p = pipeline_with(
        "after.toml",
        &accounts_without_consent(fx.tmp.path(), Some(&first_account)),
    );

    let first = fx.run_with(&before_p, Some("out1"), &[]);
    first.assert_ok();
    let before = fx.ledger();
    let published1 = assert_partner_within_noise(&first.out, "before");
    let second = fx.run_with(&after_p, Some("out2"), &[]);
    second.assert_ok();
    let after = fx.ledger();
    let published2 = assert_partner_within_noise(&second.out, "after the withdrawal");

    let lost = first.report(PARTNER)["joins"]["joined"].as_u64().unwrap()
        - second.report(PARTNER)["joins"]["joined"].as_u64().unwrap();
    assert!(lost > 0, "the withdrawn account had views");
    let added = after.added_since(&before);
    let (f1, f2) = (
        parquet(&first.out, &EXTERNAL),
        parquet(&second.out, &EXTERNAL),
    );
    let new = classify_releases(&f1, &f2, &added, &first.out, &second.out, "withdrawal");
    assert!(
        !new.is_empty() && new.iter().all(|(r, _)| r == PARTNER),
        "the partner partitions with that person, and only they, are new releases: {new:?}"
    );
    // The visitor, present on both days, joined on both: both days are new releases.
    assert_eq!(new.len(), 2, "{new:?}");
    for report in DP {
        assert_eq!(second.report(report)["epsilon"], "0", "{report}: free");
    }
    let changed = published1
        .iter()
        .filter(|(k, v)| published2.get(*k) != Some(v))
        .count();
    eprintln!(
        "accounts change ({first_account} withdraws, {lost} views): ledger {} → {}; new releases {new:?}; {changed} of {} published partner cells changed; DP files {} bytes identical",
        before.counts(),
        after.counts(),
        published1.len(),
        total_bytes(&parquet(&second.out, &DP))
    );
}

/// Parameters an external file may state as numbers: protection settings, never counts.
const ALLOWED_NUMBERS: [&str; 11] = [
    "k_min",
    "epsilon",
    "delta",
    "max_noise",
    "variance",
    "magnitude",
    "buckets",
    "release_threshold",
    "max_cells_per_visitor",
    "max_views_per_cell",
    "version",
];

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Every number in a metadata value, with the name it stands under: the key itself for a
/// bare number, members of JSON values, `name=number` in free text.
fn numbers_in(name: &str, value: &str, found: &mut Vec<(String, String)>) {
    if is_number(value.trim()) {
        found.push((name.to_owned(), value.to_owned()));
        return;
    }
    if let Ok(json @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) =
        serde_json::from_str::<serde_json::Value>(value)
    {
        fn walk(name: &str, v: &serde_json::Value, found: &mut Vec<(String, String)>) {
            match v {
                serde_json::Value::Number(n) => found.push((name.to_owned(), n.to_string())),
                serde_json::Value::String(s) => numbers_in(name, s, found),
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(name, x, found)),
                serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| walk(k, x, found)),
                _ => {}
            }
        }
        walk(name, &json, found);
        return;
    }
    for token in value.split(|c: char| c.is_whitespace() || ";,()[]".contains(c)) {
        match token.split_once('=') {
            Some((k, v)) if is_number(v) => found.push((k.to_owned(), v.to_owned())),
            None if is_number(token) => found.push((name.to_owned(), token.to_owned())),
            _ => {}
        }
    }
}

/// 6. External files carry no count outside their protected cells: no join outcomes,
///    suppressed-cell counts, input digests or DP diagnostics, and every number in their
///    metadata is a protection parameter. Internal files keep their exact counts.
#[test]
fn external_files_carry_no_counts_outside_cells() {
    // The scan itself: counts are found, in every form the metadata uses.
    for (key, value) in [
        ("join_outcomes", r#"{"joined":6266,"no_account":7818}"#),
        ("suppressed_cells", "67"),
        ("dp", r#"{"buckets":1,"dropped_pairs":12}"#),
        ("disclosure", "k_threshold(k_min=10) rows=44"),
    ] {
        let mut found = Vec::new();
        numbers_in(key, value, &mut found);
        assert!(
            found
                .iter()
                .any(|(n, _)| !ALLOWED_NUMBERS.contains(&n.as_str())),
            "{key} = {value}: {found:?}"
        );
    }
    let fx = External::new();
    let run = fx.run("out");
    run.assert_ok();
    let mut external_files = 0;
    let mut internal_files = 0;
    for f in files_under(&run.out) {
        let kv = key_value_metadata(&run.out.join(&f));
        let audience = kv["logveil.audience"].as_str();
        if audience == "internal" {
            internal_files += 1;
            let _: u64 = kv["logveil.suppressed_cells"]
                .parse()
                .unwrap_or_else(|e| panic!("{f}: internal files keep suppressed_cells: {e}"));
            assert!(kv.contains_key("logveil.input_sha256"), "{f}");
            continue;
        }
        assert!(
            ["partner", "public"].contains(&audience),
            "{f}: audience {audience}"
        );
        external_files += 1;
        for key in kv.keys() {
            assert!(
                !(key == "logveil.join_outcomes"
                    || key.starts_with("logveil.joins")
                    || key == "logveil.suppressed_cells"
                    || key == "logveil.input_sha256"),
                "{f}: {key} in an external file"
            );
        }
        if let Some(dp) = kv.get("logveil.dp") {
            let dp: serde_json::Value = serde_json::from_str(dp).unwrap();
            for diag in ["dropped_pairs", "clamped_views"] {
                assert!(dp.get(diag).is_none(), "{f}: logveil.dp has {diag}: {dp}");
            }
        }
        let mut numbers = Vec::new();
        for (key, value) in &kv {
            if key == "ARROW:schema" {
                continue;
            }
            numbers_in(
                key.strip_prefix("logveil.").unwrap_or(key),
                value,
                &mut numbers,
            );
        }
        let counts: Vec<&(String, String)> = numbers
            .iter()
            .filter(|(name, _)| !ALLOWED_NUMBERS.contains(&name.as_str()))
            .collect();
        assert!(
            counts.is_empty(),
            "{f}: numbers in the metadata that are not protection parameters: {counts:?}"
        );
        assert!(
            numbers.iter().any(|(n, _)| n == "k_min"),
            "{f}: the scan sees the parameters: {numbers:?}"
        );
    }
    assert_eq!((external_files, internal_files), (6, 2));
}

const LEGACY: &str = r#"{"version":1,"spends":[{"audience":"public","period":"2026-11","report":"pages_daily_dp","partition":"2026-11-01","input_digest":"abc","epsilon":"390","delta":"0"}]}"#;

/// 7. A ledger of the old layout in the pipeline's output directory is migrated into the
///    state directory (renamed `.migrated`, a `migrated` record) and its spends count: 390 +
///    25 > 400, so the run is refused, and again without the legacy file.
#[test]
fn migrated_legacy_ledger_keeps_its_spends() {
    let fx = External::new();
    let out = fx.path("out"); // the pipeline's `[output] dir`
    std::fs::create_dir_all(&out).unwrap();
    let legacy = out.join("privacy-ledger.json");
    std::fs::write(&legacy, LEGACY).unwrap();

    let refused = fx.run_with(&fx.pipeline, None, &[]);
    assert!(!refused.output.status.success(), "390 + 25 > 400");
    assert!(
        refused.stderr().contains("privacy budget exceeded"),
        "{}",
        refused.stderr()
    );
    assert!(!legacy.exists(), "the legacy file was renamed");
    assert_eq!(
        std::fs::read_to_string(out.join("privacy-ledger.json.migrated")).unwrap(),
        LEGACY
    );
    let after = fx.ledger();
    let migrated: Vec<&serde_json::Value> = after
        .public
        .iter()
        .filter(|r| r["kind"] == "migrated")
        .collect();
    assert_eq!(migrated.len(), 1, "{:?}", after.public);
    assert_eq!(migrated[0]["epsilon"], "390");
    assert_eq!(migrated[0]["report"], "pages_daily_dp");
    assert_eq!(
        after.public.len(),
        1,
        "nothing but the migrated spend: {after:?}"
    );
    assert!(after.partner.is_empty(), "{after:?}");
    assert_eq!(
        parquet(&out, &EXTERNAL).len() + parquet(&out, &["not_found_daily"]).len(),
        0,
        "nothing written"
    );

    let again = fx.run_with(&fx.pipeline, None, &[]);
    assert!(
        !again.output.status.success(),
        "the migrated spend still counts"
    );
    assert!(
        again.stderr().contains("privacy budget exceeded"),
        "{}",
        again.stderr()
    );
    assert_eq!(fx.ledger(), after, "not migrated twice, nothing charged");
    eprintln!(
        "legacy ledger: ledger partner 0, public 0 → {} (migrated ε 390), both runs refused",
        after.counts()
    );
}

/// 7b. The old default ledger was `privacy-ledger.json` in the run's output directory,
///     `--out` included. A run with `--out DIR` where `DIR` holds one must migrate it or refuse;
///     never ignore it.
#[test]
fn legacy_ledger_in_an_out_override_is_not_ignored() {
    let fx = External::new();
    let out = fx.path("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    let legacy = out.join("privacy-ledger.json");
    std::fs::write(&legacy, LEGACY).unwrap();
    let ran = fx.run("elsewhere");
    let public = fx.ledger().public;
    let migrated = public.iter().any(|r| r["kind"] == "migrated");
    assert!(
        !ran.output.status.success() || migrated,
        "the legacy ledger {} (ε 390 spent) was ignored: the run succeeded, the public ledger has {} record(s), none migrated, and the legacy file is {}",
        legacy.display(),
        public.len(),
        if legacy.exists() {
            "still there, unrenamed"
        } else {
            "gone"
        }
    );
}

/// 8. A privacy state directory under the output directory is refused before anything is
///    written.
#[test]
fn state_dir_under_output_is_refused() {
    let fx = External::new();
    let out = fx.path("out");
    let state = out.join("state");
    let ran = fx.run_with(
        &fx.pipeline,
        Some("out"),
        &["--privacy-state", state.to_str().unwrap()],
    );
    assert_eq!(ran.output.status.code(), Some(1), "{}", ran.stderr());
    assert!(
        ran.stderr().contains("is under the output directory"),
        "{}",
        ran.stderr()
    );
    assert!(
        files_under(&out).is_empty(),
        "nothing written: {:?}",
        files_under(&out)
    );
    assert!(!state.exists());
}

/// 9. `logveil ledger show` lists the releases; `ledger verify` passes and prints a head
///    hash that passes as `--anchor`; one flipped byte fails verification naming the line.
#[test]
fn ledger_show_and_verify() {
    let fx = External::new();
    fx.run("out").assert_ok();
    let ledger = fx.ledger();

    let show = fx.ledger_command("show", &[]);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(text.contains("audience partner: 2 record(s)"), "{text}");
    assert!(text.contains("audience public: 4 record(s)"), "{text}");
    for r in ledger.partner.iter().chain(&ledger.public) {
        assert!(
            text.contains(r["release_id"].as_str().unwrap()),
            "{r} in {text}"
        );
    }
    assert!(
        text.contains("spent in 2026-11: ε 25 δ 0.0000002"),
        "{text}"
    );

    let verify = fx.ledger_command("verify", &[]);
    let out = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let head = out
        .lines()
        .find(|l| l.starts_with("audience public:"))
        .and_then(|l| l.split("head ").nth(1))
        .and_then(|h| h.split_whitespace().next())
        .unwrap_or_else(|| panic!("no head hash for public in {out}"))
        .to_owned();
    assert_eq!(head.len(), 64, "{head}");
    assert_eq!(head, ledger.public[3]["hash"].as_str().unwrap());
    let anchored = fx.ledger_command("verify", &["--audience", "public", "--anchor", &head]);
    assert!(
        anchored.status.success(),
        "{}",
        String::from_utf8_lossy(&anchored.stderr)
    );
    assert!(
        String::from_utf8_lossy(&anchored.stdout).contains("anchor: record 4, unchanged"),
        "{}",
        String::from_utf8_lossy(&anchored.stdout)
    );

    // Flip one byte of record 2: ε 0.5 → 0.7.
    let path = fx.state.join("ledger/public.jsonl");
    let mut bytes = std::fs::read(&path).unwrap();
    let line2 = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let at = line2
        + bytes[line2..]
            .windows(15)
            .position(|w| w == b"\"epsilon\":\"0.5\"")
            .unwrap()
        + 13;
    assert_eq!(bytes[at], b'5');
    bytes[at] = b'7';
    std::fs::write(&path, &bytes).unwrap();
    let broken = fx.ledger_command("verify", &[]);
    let stderr = String::from_utf8_lossy(&broken.stderr).into_owned();
    assert_eq!(broken.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("public") && stderr.contains("line 2"),
        "{stderr}"
    );
    let anchored = fx.ledger_command("verify", &["--audience", "public", "--anchor", &head]);
    assert!(
        !anchored.status.success(),
        "a tampered ledger fails with its anchor too"
    );
    eprintln!(
        "ledger show/verify: ledger {}; head {head}; tampered line 2: {}",
        ledger.counts(),
        stderr.trim()
    );
}

// ---------------------------------------------------------------------------------------
// The daemon: a DP report that joins accounts, replayed after a restart.
// ---------------------------------------------------------------------------------------

/// A DP report that joins accounts (age bands are a public list), and the partner report.
const DAEMON_REPORTS: &str = r#"
[[report]]
name = "ages_daily_dp"
audience = "public"
purpose = "anonymous_reporting"
bucket = "day"
dimensions = ["age_band"]
metrics = ["visitors"]
public_keys = true

[[report]]
name = "demographics_daily"
audience = "partner"
purpose = "anonymous_reporting"
bucket = "day"
dimensions = ["age_band", "gender"]
metrics = ["views", "visitors"]

[daemon]
poll_interval = "20ms"
checkpoint_interval = "100ms"
"#;
const DAEMON_EXTERNAL: [&str; 2] = ["ages_daily_dp", "demographics_daily"];

/// A pipeline for the daemon: the external pipeline's sources, the two reports above.
fn daemon_pipeline(fx: &External) -> PathBuf {
    let text = fx.pipeline_text(
        &repo().join("sample-logs/demo.key"),
        &format!(
            "sqlite:{}",
            repo().join("sample-logs/accounts.db").display()
        ),
    );
    let head = text.split("\n[[report]]").next().unwrap();
    let path = fx.write_pipeline("daemon.toml", &format!("{head}\n{DAEMON_REPORTS}"));
    let check = bin().arg("check").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    path
}

/// One daemon: `--input DIR/access.log* --out OUT --state STATE --privacy-state`.
struct DaemonRun<'a> {
    fx: &'a External,
    pipeline: PathBuf,
    logs: PathBuf,
    out: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl DaemonRun<'_> {
    fn start(&self, extra: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        bin()
            .current_dir(repo())
            .arg("daemon")
            .arg(&self.pipeline)
            .arg("--input")
            .arg(self.logs.join("access.log*"))
            .arg("--out")
            .arg(&self.out)
            .arg("--state")
            .arg(&self.state)
            .arg("--privacy-state")
            .arg(&self.fx.state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs with `--idle-exit 1` until it exits; it must exit 0.
    fn drain(&self) {
        let mut child = self.start(&["--idle-exit", "1"]);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "daemon exited {status}:\n{}", self.logs());
                return;
            }
            if start.elapsed() > Duration::from_mins(2) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not exit:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wipes the daemon's output and checkpoint state (not the privacy state): a restart
    /// that has lost its record of what it published.
    fn wipe(&self) {
        for dir in [&self.out, &self.state] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).unwrap();
            }
        }
    }
}

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// 10. A daemon publishes both days of a DP report that joins accounts; its output and
///     checkpoint are wiped and the same input replayed (a restart that re-publishes the
///     window): byte-identical files, no new ledger record. Then once more with a SIGKILL
///     mid-way and a restart: the same again.
#[test]
fn daemon_replay_is_free_and_identical() {
    let fx = External::new();
    let d = DaemonRun {
        fx: &fx,
        pipeline: daemon_pipeline(&fx),
        logs: fx.path("live"),
        out: fx.path("daemon-out"),
        state: fx.path("daemon-state"),
        log: fx.path("daemon.log"),
    };
    std::fs::create_dir(&d.logs).unwrap();
    let all: Vec<u8> = sample_lines().concat();
    let live = d.logs.join("access.log");
    append(&live, &all);
    d.drain();
    let first = parquet(&d.out, &DAEMON_EXTERNAL);
    assert_eq!(first.len(), 4, "2 reports × 2 days: {:?}", first.keys());
    let ledger1 = fx.ledger();
    assert_eq!(
        ledger1
            .public
            .iter()
            .filter(|r| r["kind"] == "spend" && r["report"] == "ages_daily_dp")
            .count(),
        2,
        "{ledger1:?}"
    );

    // Replay: out and checkpoint gone, privacy state kept.
    d.wipe();
    d.drain();
    let replayed = parquet(&d.out, &DAEMON_EXTERNAL);
    let ledger2 = fx.ledger();
    assert_eq!(
        ledger2, ledger1,
        "a replay is the same release: nothing charged"
    );
    assert_identical(&first, &replayed, "daemon replay");

    // Replay with a SIGKILL mid-way: the first half of the lines, killed, then the rest.
    d.wipe();
    std::fs::remove_file(&live).unwrap();
    let lines = sample_lines();
    let half = lines.len() / 2;
    append(&live, &lines[..half].concat());
    let mark = d.logs().len();
    let mut child = d.start(&[]);
    let start = Instant::now();
    while !d.logs().contains("following new file") && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Long enough to read, publish what closed and checkpoint; the rest is mid-window.
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        child.try_wait().unwrap().is_none(),
        "daemon exited:\n{}",
        d.logs()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = d.logs().len();
    let written_before_kill = d.logs()[mark..].matches("window written").count();
    append(&live, &lines[half..].concat());
    d.drain();
    let killed = parquet(&d.out, &DAEMON_EXTERNAL);
    let ledger3 = fx.ledger();
    assert_eq!(ledger3, ledger1, "kill and restart: nothing charged");
    assert_identical(&first, &killed, "daemon killed mid-window");
    let logs = d.logs()[killed_at..].to_owned();
    assert!(
        logs.contains("resuming from checkpoint"),
        "the restart resumed from the killed daemon's checkpoint:\n{logs}"
    );
    eprintln!(
        "daemon replay: ledger {} → {} → {}; {} external files, {} bytes, identical after a wiped replay and after a SIGKILL ({} windows written before the kill)",
        ledger1.counts(),
        ledger2.counts(),
        ledger3.counts(),
        first.len(),
        total_bytes(&first),
        written_before_kill
    );
}

/// 10b. `logveil run` over the daemon's input gives the daemon's releases: the same
///      identity for every window (nothing new in the ledger), identical bytes.
#[test]
fn daemon_and_run_release_identity_agree() {
    let fx = External::new();
    let d = DaemonRun {
        fx: &fx,
        pipeline: daemon_pipeline(&fx),
        logs: fx.path("live"),
        out: fx.path("daemon-out"),
        state: fx.path("daemon-state"),
        log: fx.path("daemon.log"),
    };
    std::fs::create_dir(&d.logs).unwrap();
    append(&d.logs.join("access.log"), &sample_lines().concat());
    d.drain();
    let daemon_files = parquet(&d.out, &DAEMON_EXTERNAL);
    let before = fx.ledger();

    let ran = fx.run_with(
        &d.pipeline,
        Some("run-out"),
        &["--input", d.logs.join("access.log").to_str().unwrap()],
    );
    ran.assert_ok();
    let after = fx.ledger();
    for report in DAEMON_EXTERNAL {
        for day in DAYS {
            // Same identity: the run records nothing new (asserted below).
            assert_no_release_id(&d.out, report, day);
            assert_no_release_id(&ran.out, report, day);
        }
    }
    let run_files = parquet(&ran.out, &DAEMON_EXTERNAL);
    assert_identical(&daemon_files, &run_files, "daemon vs run");
    assert_eq!(
        after, before,
        "run of the daemon's windows: nothing charged"
    );
    let rows = |out: &Path| -> Vec<String> {
        let mut rows: Vec<String> = files_under(&out.join("ages_daily_dp"))
            .iter()
            .flat_map(|f| read_batches(&out.join("ages_daily_dp").join(f)))
            .flat_map(|b| batch_rows(&b))
            .map(|r| r.to_string())
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(rows(&d.out), rows(&ran.out));
    eprintln!(
        "daemon vs run: ledger {} → {}; {} external files, {} bytes, identical",
        before.counts(),
        after.counts(),
        run_files.len(),
        total_bytes(&run_files)
    );
}

/// The perturbation (and DP noise) is a function of the contributor set and the release
/// identity, not of how the input was split: one thread and two threads give the same
/// bytes, the same release ids, and the second run charges nothing.
#[test]
fn thread_count_changes_no_release() {
    let fx = External::new();
    let one = fx.run_with(&fx.pipeline, Some("threads1"), &["--threads", "1"]);
    one.assert_ok();
    let before = fx.ledger();
    let two = fx.run_with(&fx.pipeline, Some("threads2"), &["--threads", "2"]);
    two.assert_ok();
    assert_identical(
        &parquet(&one.out, &EXTERNAL),
        &parquet(&two.out, &EXTERNAL),
        "1 vs 2 threads",
    );
    for report in EXTERNAL {
        assert_no_release_id(&two.out, report, "2026-11-01");
    }
    assert_eq!(
        fx.ledger(),
        before,
        "no new ledger record: the same identities"
    );
}

/// A month released to the partner before a key rotation and re-released after it (the
/// month now holds lines pseudonymized with both keys) keeps its visitors' record keys —
/// those come from the key in force on the partition's first day, which a rotation (always
/// dated later) does not change — so the re-release is allowed and recorded, not refused.
/// Replacing that key, by contrast, is refused.
#[test]
fn a_month_rereleased_after_a_rotation_keeps_its_record_keys() {
    let fx = External::new();
    let (key, first_id) = keygen(fx.tmp.path());
    let text = fx.pipeline_text(
        &key,
        &format!(
            "sqlite:{}",
            repo().join("sample-logs/accounts.db").display()
        ),
    );
    let text = without_report(&text, "pages_daily_dp");
    let text = without_report(&text, "devices_hourly_dp");
    let text = replace_once(
        &text,
        "name = \"demographics_totals_daily\"",
        "name = \"demographics_monthly\"",
    );
    let text = replace_once(
        &text,
        "bucket = \"day\"\ndimensions = [\"age_band\", \"gender\"]",
        "bucket = \"month\"\ndimensions = [\"age_band\", \"gender\"]",
    );
    let pipeline = fx.write_pipeline("monthly.toml", &text);
    // Day 1 alone, under the first key.
    let day1 = fx.logs().join(SAMPLES[0]);
    let first = fx.run_with(&pipeline, Some("m1"), &["--input", day1.to_str().unwrap()]);
    first.assert_ok();
    assert_eq!(ledger_records(&fx.state, "partner").len(), 1);
    // A rotation in force from day 2; the whole month re-released.
    let rotated = bin()
        .args(["keys", "rotate"])
        .arg(&key)
        .args(["--not-before", "2026-11-02"])
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let second = fx.run_with(&pipeline, Some("m2"), &[]);
    second.assert_ok();
    let records = ledger_records(&fx.state, "partner");
    assert_eq!(
        records.len(),
        2,
        "the grown month is a new release, recorded"
    );
    assert!(
        records.iter().all(|r| r["key_id"] == first_id.as_str()),
        "record keys from the key in force on the month's first day: {records:?}"
    );
    // A replaced key file (another secret for the same days) is refused.
    std::fs::remove_file(&key).unwrap();
    let (_, other_id) = keygen(fx.tmp.path());
    assert_ne!(other_id, first_id);
    let third = fx.run_with(&pipeline, Some("m3"), &[]);
    assert!(
        !third.output.status.success(),
        "a re-release under another key was accepted"
    );
    assert!(third.stderr().contains("noise key"), "{}", third.stderr());
}
