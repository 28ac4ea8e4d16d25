//! Test fixture: a pseudonymizer from a throwaway demo key file.

use crate::{KeyRing, Pseudonymizer};

/// A pseudonymizer for key `id` whose secret is the hex byte `byte` repeated (`"ab"`).
pub(crate) fn pseudonymizer(id: &str, byte: &str) -> Pseudonymizer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(
        &path,
        format!(
            "demo = true\n[[key]]\nid = \"{id}\"\nnot_before = \"2000-01-01\"\nsecret = \"{}\"\n",
            byte.repeat(32)
        ),
    )
    .unwrap();
    Pseudonymizer::new(KeyRing::load(&path).unwrap().newest())
}
