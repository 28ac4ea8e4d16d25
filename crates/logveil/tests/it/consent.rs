//! Consent-gated joins, metamorphically (#5): the same logs with edited accounts. No
//! consent for research → `demographics_daily` has only `unknown` account dimensions; all
//! accounts deleted → the same; consent for advertising only → joined for an advertising
//! purpose, not for research; an account that withdraws consent contributes nothing when
//! the day is re-run. And the generalised dimensions (`area`, `occupation`, `industry`,
//! `interests`) end to end against the generator's truth.

use std::fmt::Write as _;
use std::path::Path;

use crate::util::{
    EditedPipeline, Run, bin, privacy_state_beside, project_like, repo, report_rows, sorted, truth,
};

/// Column index of each flag in `accounts.csv` counted from the end (the flags are the four
/// last columns and never quoted).
const CONSENT_RESEARCH: usize = 3;
const CONSENT_ADVERTISING: usize = 2;
const NEWSLETTER_OPT_OUT: usize = 1;
const DELETED: usize = 0;

/// `accounts.csv` with `edit(account_id, flags)` applied to every row; written to `dir`.
/// `flags` is `[deleted, newsletter_opt_out, consent_advertising, consent_research]`
/// (from the end of the row).
fn edited_accounts(dir: &Path, edit: impl Fn(&str, &mut [&str; 4])) -> String {
    let text = std::fs::read_to_string(repo().join("sample-logs/accounts.csv")).unwrap();
    let mut lines = text.lines();
    let mut out = String::from(lines.next().unwrap());
    out.push('\n');
    for line in lines {
        let mut parts = line.rsplitn(5, ',');
        let mut flags = [""; 4];
        for f in &mut flags {
            *f = parts.next().unwrap();
        }
        let rest = parts.next().unwrap();
        let account_id = rest.split(',').next().unwrap();
        edit(account_id, &mut flags);
        out.push_str(rest);
        for f in flags.iter().rev() {
            out.push(',');
            out.push_str(f);
        }
        out.push('\n');
    }
    let path = dir.join("accounts.csv");
    std::fs::write(&path, out).unwrap();
    format!("csv:{}", path.display())
}

/// Runs `pipeline` (default `pipelines/daily.toml`) with `extra` arguments into `out_dir`,
/// with the privacy state beside it (runs into the same directory share their ledgers).
pub fn run_pipeline(pipeline: Option<&Path>, out_dir: &Path, extra: &[&str]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let summary_path = tmp.path().join("summary.json");
    let pipeline = pipeline.map_or_else(|| repo().join("pipelines/daily.toml"), Path::to_owned);
    let output = bin()
        .current_dir(repo())
        .arg("run")
        .arg(&pipeline)
        .arg("--out")
        .arg(out_dir)
        .arg("--summary")
        .arg(&summary_path)
        .arg("--privacy-state")
        .arg(privacy_state_beside(out_dir))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "logveil run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    Run {
        output,
        out_dir: out_dir.to_owned(),
        summary,
        _tmp: tmp,
    }
}

fn joins(run: &Run, report: &str, outcome: &str) -> u64 {
    run.summary["reports"][report]["joins"][outcome]
        .as_u64()
        .unwrap_or_else(|| panic!("{report}: no join count `{outcome}`"))
}

/// Every row of `report` has `unknown` in each of `columns`.
fn only_unknown(run: &Run, report: &str, columns: &[&str]) -> bool {
    let rows = report_rows(&run.out_dir, report);
    assert!(!rows.is_empty(), "{report} has rows");
    rows.iter().all(|r| {
        columns
            .iter()
            .all(|c| r[*c].is_null() || r[*c] == "unknown")
    })
}

/// Whether some row of `report` has a known value in one of `columns`.
fn some_known(run: &Run, report: &str, columns: &[&str]) -> bool {
    report_rows(&run.out_dir, report).iter().any(|r| {
        columns
            .iter()
            .any(|c| r[*c].as_str().is_some_and(|v| v != "unknown"))
    })
}

/// A report for the advertising purpose (`personalisation` joins on
/// `consent_advertising`), for the internal audience.
const ADS_REPORT: &str = r#"
[[report]]
name = "ads_demographics_daily"
audience = "internal"
purpose = "personalisation"
bucket = "day"
dimensions = ["age_band", "gender"]
metrics = ["views", "visitors"]
"#;

#[test]
fn no_research_consent_means_only_unknown_demographics() {
    let tmp = tempfile::tempdir().unwrap();
    let baseline = run_pipeline(None, &tmp.path().join("base"), &[]);
    assert!(some_known(
        &baseline,
        "demographics_daily",
        &["age_band", "gender"]
    ));
    assert!(joins(&baseline, "demographics_daily", "joined") > 0);

    let accounts = edited_accounts(tmp.path(), |_, f| f[CONSENT_RESEARCH] = "0");
    let run = run_pipeline(None, &tmp.path().join("out"), &["--accounts", &accounts]);
    assert!(only_unknown(
        &run,
        "demographics_daily",
        &["age_band", "gender"]
    ));
    assert_eq!(joins(&run, "demographics_daily", "joined"), 0);
    // Deleted accounts still count as deleted; every other joinable view is no_consent.
    assert_eq!(
        joins(&run, "demographics_daily", "no_consent")
            + joins(&run, "demographics_daily", "deleted"),
        joins(&baseline, "demographics_daily", "joined")
            + joins(&baseline, "demographics_daily", "no_consent")
            + joins(&baseline, "demographics_daily", "deleted")
    );
    // The same views, only regrouped.
    let views = |r: &Run| -> u64 {
        report_rows(&r.out_dir, "visitors_daily")
            .iter()
            .map(|row| row["views"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(views(&run), views(&baseline));
}

#[test]
fn all_deleted_means_only_unknown_demographics() {
    let tmp = tempfile::tempdir().unwrap();
    let accounts = edited_accounts(tmp.path(), |_, f| {
        f[DELETED] = "1";
        f[CONSENT_RESEARCH] = "1";
        f[CONSENT_ADVERTISING] = "1";
    });
    let pipeline = EditedPipeline::new("consent-deleted", |p| format!("{p}{ADS_REPORT}"));
    let run = run_pipeline(
        Some(&pipeline.0),
        &tmp.path().join("out"),
        &["--accounts", &accounts],
    );
    for report in ["demographics_daily", "ads_demographics_daily"] {
        assert!(
            only_unknown(&run, report, &["age_band", "gender"]),
            "{report}"
        );
        assert_eq!(joins(&run, report, "joined"), 0, "{report}");
        assert_eq!(joins(&run, report, "no_consent"), 0, "{report}");
        assert!(joins(&run, report, "deleted") > 0, "{report}");
    }
}

#[test]
fn advertising_consent_joins_for_advertising_only() {
    let tmp = tempfile::tempdir().unwrap();
    let accounts = edited_accounts(tmp.path(), |_, f| {
        f[CONSENT_RESEARCH] = "0";
        f[CONSENT_ADVERTISING] = "1";
        f[NEWSLETTER_OPT_OUT] = "1"; // matters for contact purposes only
        f[DELETED] = "0";
    });
    let pipeline = EditedPipeline::new("consent-ads", |p| format!("{p}{ADS_REPORT}"));
    let run = run_pipeline(
        Some(&pipeline.0),
        &tmp.path().join("out"),
        &["--accounts", &accounts],
    );
    // Research: nobody joins.
    assert!(only_unknown(
        &run,
        "demographics_daily",
        &["age_band", "gender"]
    ));
    assert_eq!(joins(&run, "demographics_daily", "joined"), 0);
    assert_eq!(joins(&run, "demographics_daily", "deleted"), 0);
    let linked = joins(&run, "demographics_daily", "no_consent");
    assert!(linked > 0);
    // Advertising: every view of a linked cookie joins.
    assert_eq!(joins(&run, "ads_demographics_daily", "joined"), linked);
    assert_eq!(joins(&run, "ads_demographics_daily", "no_consent"), 0);
    assert!(some_known(
        &run,
        "ads_demographics_daily",
        &["age_band", "gender"]
    ));
    assert_eq!(
        joins(&run, "ads_demographics_daily", "no_account"),
        joins(&run, "demographics_daily", "no_account")
    );
}

/// A report of distinct joined accounts per day.
const ACCOUNTS_REPORT: &str = r#"
[[report]]
name = "joined_accounts_daily"
audience = "internal"
purpose = "anonymous_reporting"
bucket = "day"
dimensions = ["gender"]
metrics = ["views", "accounts"]
"#;

#[test]
fn withdrawn_consent_is_honoured_when_the_day_is_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = EditedPipeline::new("consent-withdraw", |p| format!("{p}{ACCOUNTS_REPORT}"));
    let day = ["--input", "sample-logs/access-2026-11-01.log"];
    // The first account of the sample (a pinned one: research consent, visits every day).
    let first = std::fs::read_to_string(repo().join("sample-logs/accounts.csv"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let before_dir = tmp.path().join("before");
    std::fs::create_dir(&before_dir).unwrap();
    let before_accounts = edited_accounts(&before_dir, |_, _| {});
    let after_dir = tmp.path().join("after");
    std::fs::create_dir(&after_dir).unwrap();
    let after_accounts = edited_accounts(&after_dir, |id, f| {
        if id == first {
            f[CONSENT_RESEARCH] = "0";
        }
    });
    let accounts_total = |run: &Run| -> u64 {
        report_rows(&run.out_dir, "joined_accounts_daily")
            .iter()
            .map(|r| r["accounts"].as_u64().unwrap())
            .sum()
    };
    let mut args = day.to_vec();
    args.extend(["--accounts", &before_accounts]);
    let before = run_pipeline(Some(&pipeline.0), &out, &args);
    // Read now: the second run replaces the partition in the same directory.
    let accounts_before = accounts_total(&before);
    let mut args = day.to_vec();
    args.extend(["--accounts", &after_accounts]);
    let after = run_pipeline(Some(&pipeline.0), &out, &args);

    let report = "joined_accounts_daily";
    let lost = joins(&before, report, "joined") - joins(&after, report, "joined");
    assert!(lost > 0, "the withdrawn account had views that day");
    assert_eq!(
        joins(&after, report, "no_consent") - joins(&before, report, "no_consent"),
        lost,
        "exactly its views moved from joined to no_consent"
    );
    // The partition was rewritten: one account fewer behind the day.
    assert_eq!(accounts_total(&after) + 1, accounts_before);
    assert_eq!(
        joins(&after, "demographics_daily", "joined") + lost,
        joins(&before, "demographics_daily", "joined")
    );
}

/// The policy plus an audience that may see sensitive dimensions.
const RESEARCH_AUDIENCE: &str = r#"
[audience.research]
description = "Test only: in-house research, may see sensitive dimensions"
k_min = 1
classes = ["public", "quasi_identifier", "sensitive"]
purposes = ["anonymous_reporting"]
"#;

#[test]
fn generalised_account_dimensions_match_generator_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    let shipped = std::fs::read_to_string(repo().join("pipelines/policy.toml")).unwrap();
    std::fs::write(&policy, format!("{shipped}{RESEARCH_AUDIENCE}")).unwrap();
    let mut reports = String::new();
    for dim in ["area", "occupation", "industry", "interests"] {
        let _ = write!(
            reports,
            "\n[[report]]\nname = \"{dim}_daily\"\naudience = \"research\"\npurpose = \"anonymous_reporting\"\nbucket = \"day\"\ndimensions = [\"{dim}\"]\nmetrics = [\"views\", \"visitors\"]\n"
        );
    }
    let pipeline = EditedPipeline::new("account-dims", |p| {
        assert!(p.contains("file = \"policy.toml\""));
        format!(
            "{}{reports}",
            p.replace(
                "file = \"policy.toml\"",
                &format!("file = {:?}", policy.display().to_string())
            )
        )
    });
    let truth = truth();
    for source in [
        "csv:sample-logs/accounts.csv",
        "sqlite:sample-logs/accounts.db",
        "parquet:sample-logs/accounts.parquet",
    ] {
        let run = run_pipeline(
            Some(&pipeline.0),
            &tmp.path().join(source.split(':').next().unwrap()),
            &["--accounts", source],
        );
        for dim in ["area", "occupation", "industry", "interests"] {
            let report = format!("{dim}_daily");
            let expected = sorted(truth["reports"][&report].as_array().unwrap());
            assert!(expected.len() > 4, "{report}: truth has rows");
            let actual = project_like(&report_rows(&run.out_dir, &report), &expected);
            assert_eq!(actual.len(), expected.len(), "{source} {report}: row count");
            for (a, e) in actual.iter().zip(&expected) {
                assert_eq!(a, e, "{source} {report}");
            }
        }
        // Interests: a view counts once per interest, so the interest cells add up to more
        // views than there are; every other dimension partitions the views.
        let views = |report: &str| -> u64 {
            report_rows(&run.out_dir, report)
                .iter()
                .map(|r| r["views"].as_u64().unwrap())
                .sum()
        };
        assert_eq!(views("area_daily"), views("visitors_daily"));
        assert_eq!(views("industry_daily"), views("visitors_daily"));
        assert!(views("interests_daily") > views("visitors_daily"));
    }
}

#[test]
fn interests_need_an_audience_that_allows_sensitive_dimensions() {
    let pipeline = EditedPipeline::new("interests-internal", |p| {
        format!(
            "{p}\n[[report]]\nname = \"interests_daily\"\naudience = \"internal\"\npurpose = \"anonymous_reporting\"\nbucket = \"day\"\ndimensions = [\"interests\"]\nmetrics = [\"views\"]\n"
        )
    });
    let out = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`interests` (sensitive) is not allowed"),
        "{err}"
    );
    // Area, occupation and industry are quasi-identifiers: internal may see them.
    let pipeline = EditedPipeline::new("area-internal", |p| {
        format!(
            "{p}\n[[report]]\nname = \"area_daily\"\naudience = \"internal\"\npurpose = \"anonymous_reporting\"\nbucket = \"day\"\ndimensions = [\"area\", \"occupation\", \"industry\"]\nmetrics = [\"views\"]\n"
        )
    });
    let out = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The example pipeline is valid.
    let out = bin()
        .arg("check")
        .arg(repo().join("pipelines/accounts-demo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // …but never for a purpose that does not join accounts.
    let pipeline = EditedPipeline::new("area-nojoin", |p| {
        format!(
            "{p}\n[[report]]\nname = \"area_daily\"\naudience = \"internal\"\npurpose = \"improve_services\"\nbucket = \"day\"\ndimensions = [\"area\"]\nmetrics = [\"views\"]\n"
        )
    });
    let out = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`area` comes from accounts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `accounts.csv` with each account's `gender` replaced by `gender(account_id, stored)`;
/// written to `dir/name`.
fn with_genders(dir: &Path, name: &str, gender: impl Fn(&str, &str) -> String) -> String {
    let text = std::fs::read_to_string(repo().join("sample-logs/accounts.csv")).unwrap();
    let mut lines = text.lines();
    let mut out = String::from(lines.next().unwrap());
    assert!(out.starts_with("account_id,cookie_id,email,birth_date,gender,"));
    out.push('\n');
    for line in lines {
        // account_id, cookie_id, email, birth_date, gender: never quoted.
        let cols: Vec<&str> = line.splitn(6, ',').collect();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            gender(cols[0], cols[4]),
            cols[5]
        );
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    format!("csv:{}", path.display())
}

/// Free text in `gender` never becomes a dimension value: an e-mail address and a phone
/// number are `unknown` (and counted in the summary), `Woman` is `female` and `M` is
/// `male`: the reports are exactly those of the same accounts with the two free-text
/// genders empty and the usual spellings.
#[test]
fn free_text_gender_is_unknown_counted_and_never_written() {
    const EMAIL: &str = "Alice@example.com";
    const PHONE: &str = "+81 90-1234-5678";
    let tmp = tempfile::tempdir().unwrap();
    // Two pinned accounts (research consent, views on both days).
    let (a, b) = ("A000102", "A000105");
    let normal = |stored: &str| -> &'static str {
        match stored.trim().to_lowercase().as_str() {
            "female" | "f" | "woman" => "female",
            "male" | "m" | "man" => "male",
            "other" | "non-binary" | "x" => "other",
            _ => "",
        }
    };
    let edited = with_genders(tmp.path(), "edited.csv", |id, stored| {
        match (id, normal(stored)) {
            (id, _) if id == a => EMAIL,
            (id, _) if id == b => PHONE,
            (_, "female") => "Woman",
            (_, "male") => "M",
            (_, other) => other,
        }
        .to_owned()
    });
    let plain = with_genders(tmp.path(), "plain.csv", |id, stored| {
        if id == a || id == b || normal(stored).is_empty() {
            String::new()
        } else {
            stored.to_owned()
        }
    });
    let accounts = std::fs::read_to_string(tmp.path().join("edited.csv")).unwrap();
    assert!(accounts.contains(&format!("{a},")) && accounts.contains(EMAIL));
    assert!(accounts.contains(",Woman,") && accounts.contains(",M,"));

    let pipeline = EditedPipeline::new("free-text-gender", |p| format!("{p}{ACCOUNTS_REPORT}"));
    let run = run_pipeline(
        Some(&pipeline.0),
        &tmp.path().join("edited"),
        &["--accounts", &edited],
    );
    let baseline = run_pipeline(
        Some(&pipeline.0),
        &tmp.path().join("plain"),
        &["--accounts", &plain],
    );

    // Counted, per column.
    assert_eq!(
        run.summary["accounts"]["account_values_unrecognised"],
        serde_json::json!({"gender": 2}),
        "{}",
        run.summary
    );
    assert_eq!(
        baseline.summary["accounts"]["account_values_unrecognised"],
        serde_json::json!({})
    );
    let human = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        human.contains(
            "accounts: 600 loaded, 879 cookie links; unrecognised values (unknown/other): 2 gender"
        ),
        "{human}"
    );
    assert!(!format!("{}{}", baseline.stdout(), baseline.stderr()).contains("unrecognised"));

    // Only the closed vocabulary, `Woman` as `female`; the same cells as the plain accounts.
    let report = "joined_accounts_daily";
    let rows = report_rows(&run.out_dir, report);
    for row in &rows {
        let g = row["gender"].as_str().unwrap_or("unknown");
        assert!(["female", "male", "other", "unknown"].contains(&g), "{row}");
    }
    assert!(
        rows.iter()
            .any(|r| r["gender"] == "female" && r["accounts"].as_u64().unwrap() > 10)
    );
    for report in [report, "demographics_daily"] {
        assert_eq!(
            report_rows(&run.out_dir, report),
            report_rows(&baseline.out_dir, report),
            "{report}"
        );
    }

    // Nothing written or printed holds the e-mail or the phone number, in any case.
    let needles = [
        "alice@example.com",
        "alice%40example.com",
        "+81 90",
        "90-1234-5678",
        "9012345678",
        "1234-5678",
    ];
    let mut haystacks = vec![
        ("stdout".to_owned(), run.stdout()),
        ("stderr".to_owned(), run.stderr()),
        ("summary".to_owned(), run.summary.to_string()),
    ];
    for dir in [run.out_dir.clone(), privacy_state_beside(&run.out_dir)] {
        for file in crate::util::files_under(&dir) {
            let path = dir.join(&file);
            let bytes = std::fs::read(&path).unwrap();
            haystacks.push((file.clone(), String::from_utf8_lossy(&bytes).into_owned()));
            if file.ends_with(".parquet") {
                for batch in crate::util::read_batches(&path) {
                    for row in crate::util::batch_rows(&batch) {
                        haystacks.push((file.clone(), row.to_string()));
                    }
                }
            }
        }
    }
    assert!(haystacks.len() > 5);
    for (name, text) in &haystacks {
        let text = text.to_lowercase();
        for needle in needles {
            assert!(!text.contains(needle), "{name} contains {needle:?}");
        }
    }
}
