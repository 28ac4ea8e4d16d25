//! `logveil keygen`: owner-only key file, never overwritten, usable by `run`.

use crate::util::{bin, files_under, repo, report_rows};

#[test]
fn keygen_makes_private_key_that_run_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("site.key");
    let out = bin().arg("keygen").arg(&key).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let secret = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("secret = ").map(str::to_owned))
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret.trim_matches('"')),
        "keygen must not print the secret"
    );
    let again = bin().arg("keygen").arg(&key).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    // A run with the new key: same counts as with the demo key (pseudonyms differ, counts do not).
    let pipeline = std::fs::read_to_string(repo().join("pipelines/daily.toml"))
        .unwrap()
        .replace("../sample-logs/demo.key", key.to_str().unwrap());
    let path = repo()
        .join("pipelines")
        .join(format!(".test-keygen-{}.toml", std::process::id()));
    std::fs::write(&path, pipeline).unwrap();
    let out_dir = tmp.path().join("out");
    let run = bin()
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(&out_dir)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!String::from_utf8_lossy(&run.stderr).contains("DEMO KEY"));
    assert_eq!(files_under(&out_dir).len(), 8);
    let truth = crate::util::truth();
    let expected = truth["reports"]["visitors_daily"].as_array().unwrap();
    assert_eq!(
        crate::util::project_like(&report_rows(&out_dir, "visitors_daily"), expected),
        crate::util::sorted(expected)
    );
}
