//! Key rotation end to end: events take the key in force on their UTC day, joins work
//! under each key, files name the keys they used, and `keys list` never shows material.

use crate::util::{EditedPipeline, bin, key_value_metadata};

fn private_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("site.key");
    let out = bin()
        .args(["keygen", "--not-before", "2026-01-01"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

#[test]
fn rotation_mid_run_switches_keys_by_event_day_and_keeps_every_count() {
    let tmp = tempfile::tempdir().unwrap();
    let key = private_key_file(tmp.path());
    let out = bin()
        .args(["keys", "rotate"])
        .arg(&key)
        .args(["--not-before", "2026-11-02"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let list = bin().args(["keys", "list"]).arg(&key).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    let ids: Vec<String> = listed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(listed.contains("not_before 2026-11-02"));
    let secret_lines: Vec<String> = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("secret = ")
                .map(|s| s.trim_matches('"').to_owned())
        })
        .collect();
    for secret in &secret_lines {
        assert!(
            !listed.contains(&secret[..16]),
            "keys list must not print material"
        );
    }

    let pipeline = EditedPipeline::new("rotation", |p| {
        p.replace("../sample-logs/demo.key", key.to_str().unwrap())
    });
    let out_dir = tmp.path().join("out");
    let run = bin()
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(&out_dir)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for report in ["visitors_daily", "demographics_daily", "page_views_hourly"] {
        crate::util::assert_matches_truth(&out_dir, report, "rotation");
    }
    let kv = |day: &str| {
        key_value_metadata(&out_dir.join(format!("visitors_daily/date={day}/part-00000.parquet")))
    };
    assert_eq!(kv("2026-11-01")["logveil.key_id"], ids[0]);
    assert_eq!(kv("2026-11-02")["logveil.key_id"], ids[1]);
}

#[test]
fn lines_before_the_first_key_are_rejected_as_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("late.key");
    let out = bin()
        .args(["keygen", "--not-before", "2026-11-02"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let pipeline = EditedPipeline::new("nokey", |p| {
        p.replace("../sample-logs/demo.key", key.to_str().unwrap())
    });
    let summary = tmp.path().join("s.json");
    let run = bin()
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--summary")
        .arg(&summary)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    let day1_lines = String::from_utf8_lossy(&crate::util::sample("access-2026-11-01.log"))
        .lines()
        .count() as u64;
    // Day 1's well-formed lines have no key; its 6 malformed lines are rejected for their own reasons.
    assert_eq!(
        s["lines_rejected"]["no_key"].as_u64().unwrap(),
        day1_lines - 6,
        "{s}"
    );
}

#[test]
fn world_readable_key_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = private_key_file(tmp.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = bin().args(["keys", "list"]).arg(&key).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readable by group or others (mode 0644)") && err.contains("chmod 600"),
        "{err}"
    );
}

/// The secret of a key file, to check that no message shows it.
fn secret_of(key: &std::path::Path) -> String {
    std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("secret = "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_in_a_directory_others_can_write_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    let key = private_key_file(&dir);
    let secret = secret_of(&key);
    for mode in [0o777, 0o1777] {
        set_mode(&dir, mode);
        for args in [&["keys", "list"][..], &["keys", "rotate"]] {
            let mut cmd = bin();
            cmd.args(args).arg(&key);
            if args[1] == "rotate" {
                cmd.args(["--not-before", "2026-11-02"]);
            }
            let out = cmd.output().unwrap();
            assert!(!out.status.success(), "{args:?} in a {mode:04o} directory");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!(
                    "the directory {} holding key file {} is writable by group and others (mode {mode:04o})",
                    dir.canonicalize().unwrap().display(),
                    key.display()
                )) && err.contains("move the key to a directory only you can write"),
                "{err}"
            );
            assert!(
                !err.contains(&secret) && !String::from_utf8_lossy(&out.stdout).contains(&secret)
            );
        }
        // Nor is a new key written there.
        let new = dir.join("new.key");
        let out = bin().arg("keygen").arg(&new).output().unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("move the key to a directory"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!new.exists());
    }
    // Once only its owner can write the directory, the same key is accepted.
    set_mode(&dir, 0o755);
    let out = bin().args(["keys", "list"]).arg(&key).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn key_owned_by_another_user_is_refused_with_the_fix() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = private_key_file(tmp.path());
    if std::fs::metadata(&key).unwrap().uid() != 0 {
        eprintln!(
            "key_owned_by_another_user_is_refused_with_the_fix: skipped, only root can chown a file to another user"
        );
        return;
    }
    std::os::unix::fs::chown(&key, Some(12345), None).unwrap();
    let out = bin().args(["keys", "list"]).arg(&key).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "key file {} is owned by uid 12345, not by you (uid 0) or root",
            key.display()
        )) && err.contains("chown"),
        "{err}"
    );
    assert!(!err.contains(&secret_of(&key)));
}

#[test]
fn demo_key_in_an_open_directory_is_accepted_with_the_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open");
    std::fs::create_dir(&dir).unwrap();
    let key = dir.join("demo.key");
    std::fs::copy(crate::util::repo().join("sample-logs/demo.key"), &key).unwrap();
    set_mode(&key, 0o666);
    set_mode(&dir, 0o1777);
    let pipeline = EditedPipeline::new("demo-open-dir", |p| {
        p.replace("../sample-logs/demo.key", key.to_str().unwrap())
    });
    let run = bin()
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("DEMO KEY"), "{err}");
}
