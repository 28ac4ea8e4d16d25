//! `logveil check`: good pipelines pass; bad ones fail naming file, key and what is allowed.

use crate::util::{bin, repo};

fn check_variant(edit: impl Fn(&str) -> String) -> (bool, String) {
    let original = std::fs::read_to_string(repo().join("pipelines/daily.toml")).unwrap();
    // Written beside the original so its relative paths still resolve.
    let path = repo().join("pipelines").join(format!(
        ".test-check-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, edit(&original)).unwrap();
    let result = crate::util::check_pipeline(&path);
    std::fs::remove_file(&path).unwrap();
    result
}

#[test]
fn shipped_pipeline_passes_check() {
    let out = bin()
        .current_dir(repo())
        .args(["check", "pipelines/daily.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (4 report(s)"));
}

#[test]
fn every_shipped_pipeline_passes_check() {
    for name in [
        "daily.toml",
        "external.toml",
        "accounts-demo.toml",
        "bench.toml",
        "scaleout.toml",
    ] {
        let (ok, msg) = crate::util::check_pipeline(&repo().join("pipelines").join(name));
        assert!(ok, "{name}: {msg}");
    }
}

#[test]
fn scaleout_section_errors_name_file_key_and_what_is_allowed() {
    let (ok, msg) = check_variant(|p| {
        format!("{p}\n[scaleout]\nsite = \"Web Site\"\npartitions = 0\nhll_lg_k = 40\n")
    });
    assert!(!ok);
    for needle in [
        "scaleout.site: `Web Site` is not a site name (allowed: 1 to 64 lower-case letters",
        "scaleout.partitions: 0 is out of range (allowed: 1 to 4096)",
        "scaleout.hll_lg_k: 40 is out of range (allowed: 4 to 21)",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in:\n{msg}");
    }
}

#[test]
fn partner_report_with_forbidden_dimension_is_rejected_naming_report_and_dimension() {
    let (ok, msg) = check_variant(|p| {
        p.replace(
            r#"dimensions = ["age_band", "gender"]"#,
            r#"dimensions = ["age_band", "gender", "page"]"#,
        )
    });
    assert!(!ok);
    assert!(
        msg.contains("report[3] (demographics_daily).dimensions"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "audience `partner`: `page` (public) is not allowed (allowed: age_band, gender)"
        ),
        "{msg}"
    );
    assert!(msg.contains(".test-check-"), "names the file: {msg}");
}

#[test]
fn other_config_errors_name_key_and_allowed_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"bucket = "day""#,
            r#"bucket = "fortnight""#,
            "unknown variant `fortnight`, expected one of `hour`, `day`, `week`, `month`",
        ),
        (
            r#"format = "combined_cookie""#,
            r#"format = "combind""#,
            "input.format: unknown format preset `combind`",
        ),
        (
            r#"format = "combined_cookie""#,
            r#"format = "%h %t %Y""#,
            "unknown log format directive `%Y`",
        ),
        (
            r#"audience = "partner""#,
            r#"audience = "press""#,
            "audience: `press` is not declared",
        ),
        (
            r#"metrics = ["views", "visitors", "bytes"]"#,
            r#"metrics = ["views", "clicks"]"#,
            "unknown variant `clicks`",
        ),
        (
            r#"purpose = "anonymous_reporting""#,
            r#"purpose = "improve_services""#,
            "may not receive reports for purpose `improve_services`",
        ),
        (
            "[output]",
            "[output]\ncolour = \"blue\"",
            "unknown field `colour`",
        ),
        (
            "# timezone = \"Asia/Tokyo\"",
            "timezone = \"Mars/Base\"",
            "output.timezone: unknown time zone `Mars/Base`",
        ),
    ];
    for (from, to, expected) in cases {
        let (ok, msg) = check_variant(|p| {
            assert!(p.contains(from), "fixture lacks {from}");
            p.replacen(from, to, 1)
        });
        assert!(!ok, "{to} should fail");
        assert!(
            msg.contains(expected),
            "for {to}: expected `{expected}` in:\n{msg}"
        );
    }
}

#[test]
fn account_dimension_under_non_joining_purpose_is_rejected() {
    let (ok, msg) = check_variant(|p| {
        p.replacen(
            r#"dimensions = ["page"]"#,
            r#"dimensions = ["page", "gender"]"#,
            1,
        )
    });
    assert!(!ok);
    assert!(msg.contains("`gender` comes from accounts, but purpose `improve_services` does not allow joining accounts"), "{msg}");
}

#[test]
fn ip_prefix_only_for_pseudonymous_audiences() {
    let (ok, msg) = check_variant(|p| {
        p.replacen(
            r#"dimensions = ["page"]"#,
            r#"dimensions = ["page", "ip_prefix"]"#,
            1,
        )
    });
    assert!(!ok);
    assert!(msg.contains("report[0] (page_views_hourly).dimensions: audience `internal`: `ip_prefix` is pseudonymous: only audiences with `pseudonymous = true` may see it"), "{msg}");
    let security_report = "\n[[report]]\nname = \"networks_daily\"\naudience = \"security\"\npurpose = \"security\"\nbucket = \"day\"\ndimensions = [\"ip_prefix\"]\nmetrics = [\"views\", \"visitors\"]\n";
    let (ok, msg) = check_variant(|p| format!("{p}{security_report}"));
    assert!(ok, "{msg}");
}

/// Every message a user reads from `check` for a pipeline with many mistakes, pinned.
#[test]
fn check_messages_snapshot() {
    let broken = |p: &str| {
        let mut p = p
            .replacen(
                r#"dimensions = ["page"]"#,
                r#"dimensions = ["page", "ip_prefix", "gender"]"#,
                1,
            )
            .replacen(
                r#"purpose = "anonymous_reporting""#,
                r#"purpose = "improve_services""#,
                1,
            )
            .replacen(
                r#"name = "visitors_daily""#,
                r#"name = "Visitors Daily""#,
                1,
            );
        p.push_str("\n[[report]]\nname = \"page_views_hourly\"\naudience = \"press\"\npurpose = \"improve_services\"\nbucket = \"day\"\nmetrics = [\"views\"]\n");
        p.push_str("\n[[report]]\nname = \"export\"\naudience = \"internal\"\npurpose = \"improve_services\"\nbucket = \"day\"\nmetrics = []\nvisitor_id = true\n");
        p
    };
    let (ok, msg) = check_variant(broken);
    assert!(!ok);
    // The temporary file's name and the checkout's location vary.
    let repo = crate::util::repo().display().to_string();
    let mut redacted = String::new();
    for l in msg.lines() {
        let l = match (l.find(".test-check-"), l.find(".toml:")) {
            (Some(a), Some(b)) if a < b => format!("{}PIPELINE{}", &l[..a], &l[b + 5..]),
            _ => l.to_owned(),
        };
        redacted.push_str(
            &l.replace(&format!("{repo}/pipelines/"), "")
                .replace(&repo, "REPO"),
        );
        redacted.push('\n');
    }
    let msg = redacted;
    insta::assert_snapshot!(msg);
}
