//! Disclosure control through the real binary (#6): `pipelines/external.toml` with
//! complementary suppression and totals, differential privacy with thresholded and public
//! keys, filters; provenance in every file; the budget ledger (per audience, in the privacy
//! state directory: each run here gets one beside its output directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{
    EditedPipeline, bin, check_pipeline, key_value_metadata, ledger_records, privacy_state_beside,
    repo, report_rows,
};

struct ExternalRun {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    summary: serde_json::Value,
}

fn run_external(
    pipeline: &Path,
    out: Option<&Path>,
    extra: &[&str],
) -> (std::process::Output, ExternalRun) {
    let tmp = tempfile::tempdir().unwrap();
    let out = out.map_or_else(|| tmp.path().join("out"), Path::to_path_buf);
    let summary = tmp.path().join("summary.json");
    let mut cmd = bin();
    cmd.current_dir(repo())
        .arg("run")
        .arg(pipeline)
        .arg("--out")
        .arg(&out)
        .arg("--summary")
        .arg(&summary)
        .args(extra);
    if !extra.contains(&"--privacy-state") {
        cmd.arg("--privacy-state").arg(privacy_state_beside(&out));
    }
    let output = cmd.output().unwrap();
    let summary = std::fs::read(&summary)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        output,
        ExternalRun {
            _tmp: tmp,
            out,
            summary,
        },
    )
}

fn external() -> ExternalRun {
    let (output, run) = run_external(Path::new("pipelines/external.toml"), None, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    run
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = crate::util::files_under(dir)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files
}

#[test]
fn every_file_states_its_protection() {
    let run = external();
    let files = parquet_files(&run.out);
    assert_eq!(files.len(), 8, "4 reports × 2 days: {files:?}");
    let mut digests = std::collections::BTreeSet::new();
    for file in &files {
        let kv = key_value_metadata(file);
        let report = kv["logveil.report"].as_str();
        let expected: [(&str, &str); 5] = match report {
            "demographics_totals_daily" => [
                ("logveil.legal_class", "statistics"),
                ("logveil.epsilon", "0"),
                ("logveil.delta", "0"),
                ("logveil.complementary_suppression", "true"),
                ("logveil.totals", "true"),
            ],
            "pages_daily_dp" => [
                ("logveil.legal_class", "statistics"),
                ("logveil.epsilon", "0.5"),
                ("logveil.delta", "0.0000001"),
                ("logveil.complementary_suppression", "false"),
                ("logveil.totals", "false"),
            ],
            // 24 hourly buckets, each at ε 0.5; public keys need no δ.
            "devices_hourly_dp" => [
                ("logveil.legal_class", "statistics"),
                ("logveil.epsilon", "12"),
                ("logveil.delta", "0"),
                ("logveil.complementary_suppression", "false"),
                ("logveil.totals", "false"),
            ],
            "not_found_daily" => [
                ("logveil.legal_class", "internal-pseudonymous"),
                ("logveil.epsilon", "0"),
                ("logveil.delta", "0"),
                ("logveil.complementary_suppression", "false"),
                ("logveil.totals", "false"),
            ],
            other => panic!("unexpected report {other}"),
        };
        for (key, value) in expected {
            assert_eq!(
                kv.get(key).map(String::as_str),
                Some(value),
                "{report}: {key}"
            );
        }
        let perturbation: serde_json::Value =
            serde_json::from_str(&kv["logveil.perturbation"]).unwrap();
        let method = match report {
            "demographics_totals_daily" => "cell_key",
            "not_found_daily" => "none",
            _ => "differential_privacy",
        };
        assert_eq!(perturbation["method"], method, "{report}: {perturbation}");
        assert!(kv["logveil.disclosure"].len() > 10);
        if report == "not_found_daily" {
            // Internal: the exact counts outside the cells stay, for staff.
            let _: u64 = kv["logveil.suppressed_cells"].parse().unwrap();
            digests.insert(kv["logveil.input_sha256"].clone());
            assert!(!kv.contains_key("logveil.release_id"), "{report}");
        } else {
            // External: no count that bypassed the cells' protection, and no release
            // identity (it would tell a re-run over changed withheld data from the first).
            for key in [
                "logveil.suppressed_cells",
                "logveil.input_sha256",
                "logveil.join_outcomes",
                "logveil.release_id",
            ] {
                assert!(!kv.contains_key(key), "{report}: {key} in an external file");
            }
        }
    }
    // The counts external files no longer carry are in the run summary, for the operator.
    let s = &run.summary["reports"]["demographics_totals_daily"];
    assert!(
        s["cells_suppressed"].as_u64().unwrap() > 0,
        "small demographic cells exist in the samples: {s}"
    );
    assert!(s["joins"]["joined"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(digests.len(), 1, "one input list per run");
    let digest = digests.into_iter().next().unwrap();
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn thresholds_totals_and_filters_hold_on_the_samples() {
    let run = external();
    // Partner (k = 10 on the true counts, then cell-key noise of at most ±max_noise): every
    // printed cell and total has ≥ 10 − max_noise visitors; totals are marked and leave the
    // dimensions they sum over null.
    let demo = report_rows(&run.out, "demographics_totals_daily");
    assert!(!demo.is_empty());
    let (max_noise, _) = crate::util::cell_key_parameters(
        &parquet_files(&run.out.join("demographics_totals_daily"))[0],
    );
    let mut totals = BTreeMap::new();
    for row in &demo {
        assert!(row["visitors"].as_u64().unwrap() + max_noise >= 10, "{row}");
        match row["total"].as_str() {
            None => assert!(
                row["age_band"].is_string() && row["gender"].is_string(),
                "{row}"
            ),
            Some("bucket") => {
                assert!(
                    row["age_band"].is_null() && row["gender"].is_null(),
                    "{row}"
                );
            }
            Some("first_dimension") => {
                assert!(
                    row["age_band"].is_string() && row["gender"].is_null(),
                    "{row}"
                );
            }
            Some(other) => panic!("total = {other}"),
        }
        *totals.entry(row["total"].to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        totals.get("\"bucket\""),
        Some(&2),
        "one bucket total per day: {totals:?}"
    );
    let s = &run.summary["reports"]["demographics_totals_daily"];
    assert!(s["cells_secondary"].as_u64().unwrap() > 0, "{s}");

    // DP with thresholded keys: only pages under the prefix, and k applies to the noisy count.
    let pages = report_rows(&run.out, "pages_daily_dp");
    assert!(!pages.is_empty());
    for row in &pages {
        assert!(row["page"].as_str().unwrap().starts_with("/en/"), "{row}");
        assert!(row["visitors"].as_u64().unwrap() >= 10, "{row}");
    }
    // DP with public keys: every device class in every hour of both days, data or not.
    let devices = report_rows(&run.out, "devices_hourly_dp");
    assert_eq!(
        devices.len(),
        2 * 24 * logveil_privacy::classify::DeviceClass::ALL.len(),
        "public keys are released for every bucket"
    );
    // Status filter: only 4xx requests.
    let not_found = report_rows(&run.out, "not_found_daily");
    assert!(!not_found.is_empty(), "the samples have 4xx requests");
}

#[test]
fn a_rerun_reproduces_the_release_and_spends_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = Path::new("pipelines/external.toml");
    let (first, run1) = run_external(pipeline, Some(&out), &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let rows1 = report_rows(&out, "pages_daily_dp");
    let devices1 = report_rows(&out, "devices_hourly_dp");
    let state = privacy_state_beside(&out);
    let ledger = state.join("ledger/public.jsonl");
    let ledger1 = std::fs::read(&ledger).unwrap();
    let spends = ledger_records(&state, "public");
    assert_eq!(spends.len(), 4, "2 DP reports × 2 days: {spends:?}");
    assert!(spends.iter().all(|r| r["kind"] == "spend"), "{spends:?}");
    assert_eq!(
        ledger_records(&state, "partner").len(),
        2,
        "the partner report's 2 days are recorded (cell key, no ε)"
    );
    assert_eq!(
        run1.summary["reports"]["devices_hourly_dp"]["epsilon"],
        "24"
    );

    let (second, _run2) = run_external(pipeline, Some(&out), &[]);
    assert!(second.status.success());
    assert_eq!(
        report_rows(&out, "pages_daily_dp"),
        rows1,
        "same noise on a re-run"
    );
    assert_eq!(report_rows(&out, "devices_hourly_dp"), devices1);
    assert_eq!(
        std::fs::read(&ledger).unwrap(),
        ledger1,
        "a re-run spends nothing"
    );

    // Other input (the first half of day 1 only): day 1's true state differs, so it is a
    // new release, charged again for both DP reports; day 2 is not released at all.
    let day1 = crate::util::sample("access-2026-11-01.log");
    let lines: Vec<&[u8]> = day1.split_inclusive(|b| *b == b'\n').collect();
    let half = tmp.path().join("access-2026-11-01-half.log");
    std::fs::write(&half, lines[..lines.len() / 2].concat()).unwrap();
    let (third, _run3) = run_external(pipeline, Some(&out), &["--input", half.to_str().unwrap()]);
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let spends = ledger_records(&state, "public");
    assert_eq!(spends.len(), 6, "2 more spends: {spends:?}");
    assert!(
        spends[4..]
            .iter()
            .all(|r| r["kind"] == "spend" && r["partition"] == "2026-11-01"),
        "{spends:?}"
    );
}

#[test]
fn a_run_past_the_budget_is_refused_and_writes_nothing() {
    let policy = EditedPipeline::of("policy.toml", "small-budget", |p| {
        p.replace("budget_epsilon = \"400\"", "budget_epsilon = \"20\"")
    });
    let policy_name = policy.file_name();
    let pipeline = EditedPipeline::of("external.toml", "small-budget-pipeline", |p| {
        p.replace(
            "file = \"policy.toml\"",
            &format!("file = \"{policy_name}\""),
        )
    });
    let (output, run) = run_external(&pipeline.0, None, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "needs 2 × (0.5 + 12) = 25 > 20");
    assert!(
        stderr.contains("privacy budget exceeded for audience `public`, period 2026-11"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(parquet_files(&run.out).is_empty(), "no report file at all");
    let state = privacy_state_beside(&run.out);
    for audience in ["public", "partner"] {
        assert!(
            ledger_records(&state, audience).is_empty(),
            "{audience}: nothing recorded"
        );
    }
}

#[test]
fn disclosure_settings_are_checked_naming_file_and_key() {
    let (ok, out) = check_pipeline(Path::new("pipelines/external.toml"));
    assert!(ok, "{out}");
    let policy = EditedPipeline::of("policy.toml", "bad-dp", |p| {
        p.replace("epsilon = \"0.5\"", "epsilon = \"-1\"")
            .replace("budget_period = \"month\"", "budget_period = \"year\"")
            .replace(
                "external = true   # complementary",
                "external = true\nlegal_class = \"anonymous\"   # complementary",
            )
    });
    let name = policy.file_name();
    let pipeline = EditedPipeline::of("external.toml", "bad-dp-pipeline", |p| {
        p.replace("file = \"policy.toml\"", &format!("file = \"{name}\""))
            .replace(
                "metrics = [\"visitors\"]\npublic_keys = true",
                "metrics = [\"visitors\", \"bytes\"]\npublic_keys = true\ntotals = true",
            )
            .replace("status = [\"4xx\"]", "status = [\"404\"]")
    });
    let (ok, out) = check_pipeline(&pipeline.0);
    assert!(!ok);
    for needle in [
        format!("{name}: audience.public.dp.epsilon"),
        format!(
            "{name}: audience.public.dp.budget_period: `year` is not allowed (allowed: day, month)"
        ),
        format!(
            "{name}: audience.partner.legal_class: `anonymous` is not allowed (allowed: internal-pseudonymous, statistics)"
        ),
        "(devices_hourly_dp).metrics: `bytes` is not supported under differential privacy"
            .to_owned(),
        "(devices_hourly_dp).totals: not with differential privacy".to_owned(),
        "(not_found_daily).status: `404` is not allowed (allowed: 1xx, 2xx, 3xx, 4xx, 5xx)"
            .to_owned(),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in:\n{out}");
    }
    // Public keys need dimensions with a public value list.
    let pipeline = EditedPipeline::of("external.toml", "bad-public-keys", |p| {
        p.replace(
            "dimensions = [\"device_class\"]\nmetrics = [\"visitors\"]\npublic_keys = true",
            "dimensions = [\"page\"]\nmetrics = [\"visitors\"]\npublic_keys = true",
        )
    });
    let (ok, out) = check_pipeline(&pipeline.0);
    assert!(!ok);
    assert!(
        out.contains("(devices_hourly_dp).public_keys: `page` has no public value list"),
        "{out}"
    );
}

/// `[audience.NAME.cell_key]` errors name the policy file, the key and what is allowed; a
/// ptable file that does not parse names its line.
#[test]
fn cell_key_settings_are_checked_naming_file_and_key() {
    let bad_table = repo().join("pipelines").join(format!(
        ".test-ptable-{}-{:?}.csv",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&bad_table, "count,noise,probability\n1,0,0.5\n").unwrap();
    let table_name = bad_table
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let cases: [(String, &str); 5] = [
        (
            "[audience.partner.cell_key]\nmax_noise = 0\n".to_owned(),
            "audience.partner.cell_key: ",
        ),
        (
            "[audience.partner.cell_key]\nvariance = \"lots\"\n".to_owned(),
            "audience.partner.cell_key.variance: `lots` is not a number",
        ),
        (
            "[audience.partner.cell_key]\nmagnitude = 2\n".to_owned(),
            "audience.partner.cell_key.magnitude: 2 is not allowed (allowed: 0 to 1",
        ),
        (
            format!("[audience.partner.cell_key]\nptable = \"{table_name}\"\nmax_noise = 3\n"),
            "audience.partner.cell_key: give either `ptable` or `max_noise`/`variance`, not both",
        ),
        (
            "[audience.public.cell_key]\nmax_noise = 2\n".to_owned(),
            "audience.public.cell_key: the audience has [dp]",
        ),
    ];
    for (extra, needle) in cases {
        let policy = EditedPipeline::of("policy.toml", "bad-cell-key", |p| format!("{p}\n{extra}"));
        let name = policy.file_name();
        let pipeline = EditedPipeline::of("external.toml", "bad-cell-key-pipeline", |p| {
            p.replace("file = \"policy.toml\"", &format!("file = \"{name}\""))
        });
        let (ok, out) = check_pipeline(&pipeline.0);
        assert!(!ok, "{extra}: accepted");
        assert!(
            out.contains(&format!("{name}: {needle}")),
            "missing {needle:?} in:\n{out}"
        );
    }
    let policy = EditedPipeline::of("policy.toml", "bad-ptable", |p| {
        format!("{p}\n[audience.partner.cell_key]\nptable = \"{table_name}\"\n")
    });
    let name = policy.file_name();
    let pipeline = EditedPipeline::of("external.toml", "bad-ptable-pipeline", |p| {
        p.replace("file = \"policy.toml\"", &format!("file = \"{name}\""))
    });
    let (ok, out) = check_pipeline(&pipeline.0);
    std::fs::remove_file(&bad_table).unwrap();
    assert!(!ok, "a ptable whose row does not sum to 1 was accepted");
    assert!(
        out.contains(&format!("{name}: audience.partner.cell_key.ptable:")) && out.contains("line"),
        "{out}"
    );
}
