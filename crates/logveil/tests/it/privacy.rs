//! No raw IP, cookie value, e-mail, birth date or postal code from the input reaches any
//! output cell, file metadata, log line or the summary.

use crate::util::{
    EditedPipeline, Run, files_under, key_value_metadata, raw_identifiers, read_batches, repo,
    run_daily,
};

#[test]
fn no_raw_identifier_in_cells_metadata_logs_or_summary() {
    assert_no_raw_identifier(&run_daily(&[]));
}

/// With reports that read every optional account column (`zip_code`, `occupation`,
/// `industry`, `interests`), from each file source.
#[test]
fn no_raw_account_attribute_in_outputs_when_reports_read_them() {
    let pipeline = EditedPipeline::new("privacy-account-dims", |p| {
        format!(
            "{p}\n[[report]]\nname = \"account_dims_daily\"\naudience = \"internal\"\npurpose = \"anonymous_reporting\"\nbucket = \"day\"\ndimensions = [\"area\", \"occupation\", \"industry\", \"age_band\"]\nmetrics = [\"views\", \"visitors\", \"accounts\"]\n"
        )
    });
    for source in [
        "csv:sample-logs/accounts.csv",
        "sqlite:sample-logs/accounts.db",
        "parquet:sample-logs/accounts.parquet",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let run = crate::consent::run_pipeline(
            Some(&pipeline.0),
            &tmp.path().join("out"),
            &["--accounts", source],
        );
        assert!(
            crate::util::report_rows(&run.out_dir, "account_dims_daily")
                .iter()
                .any(|r| r["area"] == "tokyo"),
            "{source}: the report has area values"
        );
        assert_no_raw_identifier(&run);
    }
}

fn assert_no_raw_identifier(run: &Run) {
    let ids = raw_identifiers();
    let mut haystacks = vec![
        ("stdout".to_owned(), run.stdout()),
        ("stderr".to_owned(), run.stderr()),
        ("summary".to_owned(), run.summary.to_string()),
    ];
    for file in files_under(&run.out_dir) {
        let path = run.out_dir.join(&file);
        let mut text = String::new();
        for batch in read_batches(&path) {
            for row in crate::util::batch_rows(&batch) {
                text.push_str(&row.to_string());
                text.push('\n');
            }
        }
        for (k, v) in key_value_metadata(&path) {
            text.push_str(&k);
            text.push('=');
            text.push_str(&v);
            text.push('\n');
        }
        // Raw bytes too (dictionary pages, statistics), in case something escaped the columns.
        text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        haystacks.push((file, text));
    }
    assert!(haystacks.len() > 3);
    for (name, text) in &haystacks {
        for id in &ids {
            assert!(
                !text.contains(id.as_str()),
                "a raw identifier ({} chars) leaked into {name}",
                id.len()
            );
        }
        assert!(
            !text.contains("@example."),
            "an e-mail address leaked into {name}"
        );
    }
}

#[test]
fn check_and_errors_do_not_echo_key_material() {
    let key = std::fs::read_to_string(repo().join("sample-logs/demo.key")).unwrap();
    let secret = key
        .lines()
        .find_map(|l| l.strip_prefix("secret = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    // A broken key file: the error must not quote it.
    let tmp = tempfile::tempdir().unwrap();
    let bad_key = tmp.path().join("bad.key");
    std::fs::write(&bad_key, key.replace("not_before", "not_before_typo")).unwrap();
    let pipeline = std::fs::read_to_string(repo().join("pipelines/daily.toml")).unwrap();
    let pipeline_path = repo()
        .join("pipelines")
        .join(format!(".test-badkey-{}.toml", std::process::id()));
    std::fs::write(
        &pipeline_path,
        pipeline.replace("../sample-logs/demo.key", bad_key.to_str().unwrap()),
    )
    .unwrap();
    let out = crate::util::bin()
        .arg("run")
        .arg(&pipeline_path)
        .arg("--out")
        .arg(tmp.path().join("o"))
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    std::fs::remove_file(&pipeline_path).unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("bad.key"), "error names the key file: {all}");
    assert!(
        !all.contains(&secret) && !all.contains(&secret[..16]),
        "key material leaked: {all}"
    );
}
