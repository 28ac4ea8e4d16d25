//! Helpers: locate the repo, run the binary, read Parquet files into comparable rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_logveil"));
    c.env("LOGVEIL_LOG", "info").env("NO_COLOR", "1");
    c
}

/// The result of one run: process output plus where it wrote.
pub struct Run {
    pub output: Output,
    pub out_dir: PathBuf,
    pub summary: serde_json::Value,
    pub _tmp: tempfile::TempDir,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// Runs `logveil run pipelines/daily.toml` with extra args into a fresh output directory.
pub fn run_daily(extra: &[&str]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let summary_path = tmp.path().join("summary.json");
    run_into(&out_dir, &summary_path, extra, tmp)
}

/// Runs `logveil run pipelines/daily.toml` into `out_dir`, with the privacy state (the
/// audiences' ledgers) beside it ([`privacy_state_beside`]) unless `extra` names one: runs
/// into the same output directory share their ledgers, as an operator's re-runs would.
pub fn run_into(
    out_dir: &Path,
    summary_path: &Path,
    extra: &[&str],
    tmp: tempfile::TempDir,
) -> Run {
    let mut cmd = bin();
    cmd.current_dir(repo())
        .args(["run", "pipelines/daily.toml", "--out"])
        .arg(out_dir)
        .arg("--summary")
        .arg(summary_path)
        .args(extra);
    if !extra.contains(&"--privacy-state") {
        cmd.arg("--privacy-state")
            .arg(privacy_state_beside(out_dir));
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "logveil run failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = serde_json::from_slice(&std::fs::read(summary_path).unwrap()).unwrap();
    Run {
        output,
        out_dir: out_dir.to_owned(),
        summary,
        _tmp: tmp,
    }
}

/// The privacy state directory a test gives the runs into `out`: `OUT.privacy-state`, beside
/// it (never under it: a run with external reports refuses that), so that tests never share
/// `pipelines/logveil-state/` and runs into the same output directory share their ledgers.
pub fn privacy_state_beside(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .expect("an output directory name")
        .to_owned();
    name.push(".privacy-state");
    out.with_file_name(name)
}

/// The records of an audience's ledger (`STATE/ledger/AUDIENCE.jsonl`), one JSON object a
/// line; none when the file does not exist.
pub fn ledger_records(state: &Path, audience: &str) -> Vec<serde_json::Value> {
    let path = state.join("ledger").join(format!("{audience}.jsonl"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

pub fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    reader.map(Result::unwrap).collect()
}

pub fn key_value_metadata(path: &Path) -> BTreeMap<String, String> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn civil(days: i64) -> (i64, i64, i64) {
    // Independent of the crate under test: Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn date_string(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// All rows of all Parquet files of one report, as JSON objects (dates and timestamps as
/// the ISO strings truth.json uses), sorted.
pub fn report_rows(out_dir: &Path, report: &str) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for file in files_under(&out_dir.join(report)) {
        for batch in read_batches(&out_dir.join(report).join(&file)) {
            rows.extend(batch_rows(&batch));
        }
    }
    rows.sort_by_key(std::string::ToString::to_string);
    rows
}

pub fn batch_rows(batch: &RecordBatch) -> Vec<serde_json::Value> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|i| {
            let mut row = serde_json::Map::new();
            for (f, col) in schema.fields().iter().zip(batch.columns()) {
                if col.is_null(i) {
                    // Only total rows have nulls: the dimensions they sum over.
                    assert!(f.is_nullable(), "null in {}", f.name());
                    row.insert(f.name().clone(), serde_json::Value::Null);
                    continue;
                }
                let v = match f.data_type() {
                    arrow_schema::DataType::Dictionary(_, _) => {
                        let dict = col.as_dictionary::<arrow_array::types::Int32Type>();
                        let key = dict.keys().value(i) as usize;
                        serde_json::json!(dict.values().as_string::<i32>().value(key))
                    }
                    arrow_schema::DataType::Int64 => {
                        serde_json::json!(col.as_primitive::<Int64Type>().value(i))
                    }
                    arrow_schema::DataType::Utf8 => {
                        serde_json::json!(col.as_string::<i32>().value(i))
                    }
                    arrow_schema::DataType::Date32 => serde_json::json!(date_string(i64::from(
                        col.as_primitive::<Date32Type>().value(i)
                    ))),
                    arrow_schema::DataType::Timestamp(_, _) => {
                        let micros = col.as_primitive::<TimestampMicrosecondType>().value(i);
                        let secs = micros / 1_000_000;
                        let (h, m, s) = (
                            secs.rem_euclid(86_400) / 3600,
                            secs.rem_euclid(3600) / 60,
                            secs.rem_euclid(60),
                        );
                        serde_json::json!(format!(
                            "{}T{h:02}:{m:02}:{s:02}Z",
                            date_string(secs.div_euclid(86_400))
                        ))
                    }
                    other => panic!("unexpected column type {other:?}"),
                };
                row.insert(f.name().clone(), v);
            }
            serde_json::Value::Object(row)
        })
        .collect()
}

pub fn truth() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(repo().join("sample-logs/truth.json")).unwrap()).unwrap()
}

/// `actual` rows reduced to the columns the `expected` rows have (truth.json has no `bytes`).
pub fn project_like(
    actual: &[serde_json::Value],
    expected: &[serde_json::Value],
) -> Vec<serde_json::Value> {
    let Some(keys) = expected.first().and_then(|e| e.as_object()) else {
        return actual.to_vec();
    };
    let projected: Vec<serde_json::Value> = actual
        .iter()
        .map(|row| {
            serde_json::Value::Object(keys.keys().map(|k| (k.clone(), row[k].clone())).collect())
        })
        .collect();
    sorted(&projected)
}

/// Checks a report of the daily pipeline against the generator's truth. Reports for
/// internal audiences must equal it, exactly. `demographics_daily` goes to the external
/// `partner` audience: cell-key perturbation (see [`assert_within_cell_key_noise`]) on the
/// cells that k (on true counts) and complementary suppression let through.
pub fn assert_matches_truth(out_dir: &Path, report: &str, what: &str) {
    let truth = truth();
    let expected = sorted(truth["reports"][report].as_array().unwrap());
    let actual = project_like(&report_rows(out_dir, report), &expected);
    if report != "demographics_daily" {
        assert_eq!(actual.len(), expected.len(), "{what}: {report}: row count");
        for (a, e) in actual.iter().zip(&expected) {
            assert_eq!(a, e, "{what}: {report}");
        }
        return;
    }
    assert_within_cell_key_noise(out_dir, report, &expected, what);
}

/// What a file's `logveil.perturbation` says of cell-key noise: `(max_noise, magnitude)`;
/// panics unless the method is `cell_key`.
pub fn cell_key_parameters(file: &Path) -> (u64, f64) {
    let kv = key_value_metadata(file);
    let json: serde_json::Value = serde_json::from_str(
        kv.get("logveil.perturbation")
            .unwrap_or_else(|| panic!("{}: no logveil.perturbation", file.display())),
    )
    .unwrap();
    assert_eq!(json["method"], "cell_key", "{}: {json}", file.display());
    (
        json["max_noise"].as_u64().expect("max_noise"),
        json["magnitude"].as_f64().expect("magnitude"),
    )
}

/// A partner report (cell-key perturbation) against the truth rows of the cells with at
/// least k true visitors (`expected`, projected like them): every printed row is a truth
/// cell, printed once; its `visitors` is within ±`max_noise` of the truth (from each file's
/// `logveil.perturbation`); its `views` within the magnitude noise's bound
/// `max(⌈magnitude·views⌉, largest visitor's views, max_noise)`, where the largest visitor's
/// views are at most `views − (visitors − 1)` (every other visitor has a view); and at
/// least one printed value differs from the truth (the noise is there at all).
pub fn assert_within_cell_key_noise(
    out_dir: &Path,
    report: &str,
    expected: &[serde_json::Value],
    what: &str,
) {
    let mut printed = Vec::new();
    for file in files_under(&out_dir.join(report)) {
        let path = out_dir.join(report).join(&file);
        let (max_noise, magnitude) = cell_key_parameters(&path);
        let rows: Vec<serde_json::Value> =
            read_batches(&path).iter().flat_map(batch_rows).collect();
        for row in project_like(&rows, expected) {
            printed.push((row, max_noise, magnitude));
        }
    }
    assert!(!printed.is_empty(), "{what}: {report}: no row printed");
    let key_of = |row: &serde_json::Value| -> serde_json::Value {
        let mut key = row.as_object().unwrap().clone();
        key.remove("views");
        key.remove("visitors");
        serde_json::Value::Object(key)
    };
    let mut seen = BTreeSet::new();
    let mut perturbed = 0;
    for (row, max_noise, magnitude) in &printed {
        let key = key_of(row);
        assert!(
            seen.insert(key.to_string()),
            "{what}: {report}: cell printed twice: {row}"
        );
        let truth_row = expected
            .iter()
            .find(|e| key_of(e) == key)
            .unwrap_or_else(|| {
                panic!(
                    "{what}: {report}: printed cell is not a truth cell with ≥ k visitors: {row}"
                )
            });
        let (tv, pv) = (
            truth_row["visitors"].as_i64().unwrap(),
            row["visitors"].as_i64().unwrap(),
        );
        assert!(
            (pv - tv).unsigned_abs() <= *max_noise,
            "{what}: {report}: visitors {pv}, true {tv}, max_noise {max_noise}: {row}"
        );
        if let (Some(tviews), Some(pviews)) = (truth_row["views"].as_i64(), row["views"].as_i64()) {
            let largest = tviews - (tv - 1);
            let bound = ((magnitude * tviews as f64).ceil() as i64)
                .max(largest)
                .max(*max_noise as i64);
            assert!(
                (pviews - tviews).abs() <= bound,
                "{what}: {report}: views {pviews}, true {tviews}, bound {bound}: {row}"
            );
            perturbed += usize::from(pviews != tviews);
        }
        perturbed += usize::from(pv != tv);
    }
    assert!(
        perturbed > 0,
        "{what}: {report}: {} cells printed, every one exactly true: no perturbation",
        printed.len()
    );
}

pub fn sorted(rows: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(std::string::ToString::to_string);
    rows
}

/// Every identifier in the sample inputs: client addresses, every cookie value, e-mails
/// (from query strings and the accounts), account and cookie IDs, birth dates and postal
/// codes from the accounts (those with a hyphen or not in ASCII: a bare 7-digit code could
/// match a byte count by chance).
pub fn raw_identifiers() -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for name in ["access-2026-11-01.log", "access-2026-11-02.log"] {
        let text =
            String::from_utf8_lossy(&std::fs::read(repo().join("sample-logs").join(name)).unwrap())
                .into_owned();
        for line in text.lines() {
            if let Some(ip) = line
                .split(' ')
                .next()
                .filter(|ip| ip.contains('.') || ip.contains(':'))
            {
                ids.insert(ip.to_owned());
            }
            // The cookie header is the last quoted field.
            if let Some(cookie) = line.rsplit('"').nth(1).filter(|c| c.contains('=')) {
                for pair in cookie.split(';') {
                    if let Some((_, v)) = pair.split_once('=')
                        && v.trim().len() >= 6
                    {
                        ids.insert(v.trim().to_owned());
                    }
                }
            }
            if let Some(q) = line.find("email=") {
                let email: String = line[q + 6..]
                    .chars()
                    .take_while(|c| !matches!(c, ' ' | '&' | '"'))
                    .collect();
                ids.insert(email.replace("%40", "@"));
                ids.insert(email);
            }
        }
    }
    let accounts = std::fs::read_to_string(repo().join("sample-logs/accounts.csv")).unwrap();
    let (mut birth_dates, mut zip_codes) = (0, 0);
    for line in accounts.lines().skip(1) {
        // account_id, cookie_id, email, birth_date, gender, zip_code: never quoted.
        let cols: Vec<&str> = line.split(',').collect();
        ids.extend(cols[..3].iter().map(|s| (*s).to_owned()));
        if !cols[3].is_empty() {
            ids.insert(cols[3].to_owned());
            birth_dates += 1;
        }
        if cols[5].len() >= 6 && (cols[5].contains('-') || !cols[5].is_ascii()) {
            ids.insert(cols[5].to_owned());
            zip_codes += 1;
        }
    }
    assert!(
        birth_dates > 100 && zip_codes > 100,
        "birth dates and postal codes are searched for"
    );
    ids.retain(|s| s.len() >= 6);
    assert!(
        ids.len() > 2000,
        "expected many identifiers, found {}",
        ids.len()
    );
    ids
}

/// A copy of `pipelines/daily.toml`, edited, written beside it (so its relative paths
/// resolve) and removed when dropped, also when the test fails.
pub struct EditedPipeline(pub PathBuf);

impl EditedPipeline {
    pub fn new(tag: &str, edit: impl FnOnce(String) -> String) -> Self {
        Self::of("daily.toml", tag, edit)
    }

    /// An edited copy of `pipelines/NAME` (a pipeline or a policy).
    pub fn of(name: &str, tag: &str, edit: impl FnOnce(String) -> String) -> Self {
        let original = std::fs::read_to_string(repo().join("pipelines").join(name)).unwrap();
        let path = repo().join("pipelines").join(format!(
            ".test-{tag}-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, edit(original)).unwrap();
        Self(path)
    }

    /// The file name, for another edited file to refer to.
    pub fn file_name(&self) -> String {
        self.0.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for EditedPipeline {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `logveil check PIPELINE`: whether it passed, and everything it printed.
pub fn check_pipeline(pipeline: &Path) -> (bool, String) {
    let out = bin()
        .current_dir(repo())
        .arg("check")
        .arg(pipeline)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs the binary in the repository with `args`, feeding `stdin` to it.
pub fn run_with_stdin(args: &[&std::ffi::OsStr], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = bin()
        .current_dir(repo())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // Written from a thread: the child may stop reading (and exit) before the end.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// The bytes of a sample log.
pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("sample-logs").join(name)).unwrap()
}

/// The lines of a dead-letter file, parsed.
pub fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every line of both sample days, in time order, each with its newline.
pub fn sample_lines() -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for day in ["access-2026-11-01.log", "access-2026-11-02.log"] {
        let bytes = sample(day);
        lines.extend(bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec));
    }
    lines
}

/// `logveil run PIPELINE --input …` into `out` (privacy state beside it, see
/// [`privacy_state_beside`]), which must succeed; returns its JSON summary.
pub fn batch_run(
    pipeline: &Path,
    inputs: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
    out: &Path,
) -> serde_json::Value {
    let summary = out.with_extension("summary.json");
    let mut cmd = bin();
    cmd.current_dir(repo())
        .arg("run")
        .arg(pipeline)
        .arg("--out")
        .arg(out)
        .arg("--summary")
        .arg(&summary)
        .arg("--privacy-state")
        .arg(privacy_state_beside(out));
    for input in inputs {
        cmd.arg("--input").arg(input);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "logveil run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap()
}
