//! The llama.cpp backend (initialised once per process) and model metadata.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use serde::{Deserialize, Serialize};

use super::model::{check_gguf, fingerprint, ModelFingerprint};
use crate::{Error, Result};

/// The process's llama.cpp backend, initialised on first use.
///
/// llama.cpp's backend may be initialised only once per process; code that also
/// uses llama-cpp-2 directly must take the backend from here.
///
/// # Errors
/// [`Error::Llama`] if llama-cpp-2's backend was already initialised outside this
/// function.
pub fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp's log lines go to `tracing` (target `llama-cpp-2`) instead of
            // stderr; the binary's subscriber decides what to show.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| Error::llama("backend init", e))
}

/// Loads a GGUF model with `gpu_layers` layers offloaded (ignored without a GPU
/// backend), after checking the file exists and is a GGUF.
pub(crate) fn load_model(path: &Path, gpu_layers: u32) -> Result<LlamaModel> {
    check_gguf(path)?;
    let backend = backend()?;
    let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
    // llama.cpp says why only in its log: keep its warnings and errors for the error.
    let (loaded, log) =
        crate::llama_log::capture(|| LlamaModel::load_from_file(backend, path, &params));
    loaded.map_err(|e| Error::ModelCorrupt {
        path: path.to_path_buf(),
        reason: if log.is_empty() {
            format!("llama.cpp could not load it ({e}); the file may be truncated or of an unsupported architecture")
        } else {
            format!("llama.cpp could not load it ({e}): {}", log.join("; "))
        },
    })
}

/// What `agora model info` shows about a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The GGUF file.
    pub path: PathBuf,
    /// SHA-256 of the file.
    pub fingerprint: ModelFingerprint,
    /// File size in bytes.
    pub file_bytes: u64,
    /// `general.name`, when present.
    pub name: Option<String>,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: String,
    /// Number of parameters.
    pub parameters: u64,
    /// Context length the model was trained with.
    pub context_length: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Number of layers.
    pub layers: u32,
    /// The chat template (Jinja text) from the GGUF metadata, if any.
    pub chat_template: Option<String>,
}

impl ModelInfo {
    /// Reads the metadata of the GGUF at `path` (loads it, memory-mapped).
    ///
    /// # Errors
    /// [`Error::ModelNotFound`], [`Error::ModelCorrupt`], [`Error::Io`], or
    /// [`Error::Llama`] if the backend cannot start.
    pub fn read(path: &Path) -> Result<Self> {
        let model = load_model(path, 0)?;
        Self::of(path, &model)
    }

    pub(crate) fn of(path: &Path, model: &LlamaModel) -> Result<Self> {
        let file_bytes = std::fs::metadata(path)
            .map_err(|e| Error::io("reading metadata of", path, e))?
            .len();
        Ok(Self {
            path: path.to_path_buf(),
            fingerprint: fingerprint(path)?,
            file_bytes,
            name: model.meta_val_str("general.name").ok(),
            architecture: model
                .meta_val_str("general.architecture")
                .unwrap_or_else(|_| "unknown".to_owned()),
            parameters: model.n_params(),
            context_length: model.n_ctx_train(),
            vocab_size: u32::try_from(model.n_vocab()).unwrap_or(0),
            layers: model.n_layer(),
            chat_template: model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok()),
        })
    }
}
