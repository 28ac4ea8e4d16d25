//! Errors never print secrets (#15 item 5): every configuration error path that can quote
//! what the user wrote is fed a password, and everything the binary prints is scanned.

use crate::util::{bin, repo};

const PASSWORD: &str = "Zq9sEcretPw";

/// Runs `check` and `run` on `pipeline_text` (written beside `pipelines/daily.toml` so its
/// relative paths resolve) plus `extra` arguments to `run`; returns everything printed.
fn printed(tag: &str, pipeline_text: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = repo().join("pipelines").join(format!(
        ".test-secret-{tag}-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, pipeline_text).unwrap();
    let mut all = String::new();
    let check = bin().arg("check").arg(&path).output().unwrap();
    let run = bin()
        .current_dir(repo())
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--privacy-state")
        .arg(dir.path().join("state"))
        .args(extra)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    for out in [check, run] {
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all
}

#[test]
fn config_errors_never_print_a_password() {
    let daily = std::fs::read_to_string(repo().join("pipelines/daily.toml")).unwrap();
    let source = r#"source = "sqlite:../sample-logs/accounts.db""#;
    assert!(daily.contains(source));
    let url = format!("postgres://report:{PASSWORD}@127.0.0.1:1/site");
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        // A syntax error on the line holding the password (no closing quote).
        (
            "unterminated",
            daily.replace(source, &format!("source = \"{url}")),
            vec![],
        ),
        // An unknown key beside it, and a misspelt key holding it.
        (
            "unknown-key",
            daily.replace(source, &format!("sourc = \"{url}\"")),
            vec![],
        ),
        (
            "wrong-type",
            daily.replace(source, &format!("source = [\"{url}\"]")),
            vec![],
        ),
        // A source that cannot be reached (connection refused) and one of an unknown kind.
        (
            "unreachable",
            daily.replace(source, &format!("source = \"{url}\"")),
            vec![],
        ),
        (
            "libpq-keywords",
            daily.clone(),
            vec![
                "--accounts".to_owned(),
                format!("host=127.0.0.1 port=1 password={PASSWORD}"),
            ],
        ),
        (
            "postgresql-scheme",
            daily.clone(),
            vec![
                "--accounts".to_owned(),
                format!("postgresql://report:{PASSWORD}@[::1/site"),
            ],
        ),
        // A secret-named key where none is allowed.
        (
            "password-key",
            daily.replace(source, &format!("{source}\npassword = \"{PASSWORD}\"")),
            vec![],
        ),
        // A secret in a section that does not take it.
        (
            "scaleout-token",
            format!("{daily}\n[scaleout]\nsite = \"s\"\nnats_token = \"{PASSWORD}\"\n"),
            vec![],
        ),
    ];
    let mut failed = Vec::new();
    for (tag, text, extra) in &cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = printed(tag, text, &extra);
        assert!(
            out.to_lowercase().contains("error"),
            "{tag}: expected an error, got:\n{out}"
        );
        if out.contains(PASSWORD) {
            failed.push(format!("{tag}:\n{out}"));
        }
    }
    assert!(
        failed.is_empty(),
        "the password was printed:\n{}",
        failed.join("\n")
    );
}
