//! A quick look at a GGUF file's header through llama.cpp's own reader
//! (llama-cpp-2's [`GgufContext`]): is it a GGUF llama.cpp can read, and what does it
//! declare (quantization, architecture, tensor and metadata counts).
//!
//! llama.cpp refuses a damaged file with a message only its log shows; [`GgufHeader::read`]
//! catches that message and returns it in [`GgufProblem::Rejected`], so that `agora
//! model info` can say what is wrong. The first eight bytes are checked here first,
//! to name a file that is not a GGUF at all or a version llama.cpp does not read.
//!
//! llama.cpp reads only the header and the tensor table here (no tensor data): a file
//! cut inside its tensor data passes, and loading the model
//! ([`crate::ModelInfo::read`]) then fails with llama.cpp's "data is not within the
//! file bounds".
//!
//! ```no_run
//! use llm::gguf::GgufHeader;
//!
//! let header = GgufHeader::read("model.gguf".as_ref())?;
//! println!("{:?} {:?}", header.architecture(), header.quantization());
//! # Ok::<(), llm::gguf::GgufProblem>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use llama_cpp_2::gguf::GgufContext;

use crate::llama_log;

/// `gguf_type` values of the metadata types read here.
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_STRING: u32 = 8;

/// What the header of a GGUF file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufHeader {
    version: u32,
    file_type: Option<u32>,
    architecture: Option<String>,
    tensors: u64,
    metadata_entries: u64,
}

impl GgufHeader {
    /// Reads the header, metadata and tensor table of the GGUF at `path` with
    /// llama.cpp's reader.
    ///
    /// # Errors
    /// A [`GgufProblem`] saying why the file is not a GGUF llama.cpp reads.
    pub fn read(path: &Path) -> Result<Self, GgufProblem> {
        let mut head = [0u8; 8];
        let mut file = File::open(path).map_err(GgufProblem::Io)?;
        let len = read_up_to(&mut file, &mut head).map_err(GgufProblem::Io)?;
        drop(file);
        let (magic, version) = match head.get(..len) {
            Some(&[a, b, c, d, e, f, g, h]) => ([a, b, c, d], u32::from_le_bytes([e, f, g, h])),
            Some(short) => {
                let mut magic = [0u8; 4];
                for (m, b) in magic.iter_mut().zip(short) {
                    *m = *b;
                }
                if short.len() >= 4 && &magic != b"GGUF" {
                    return Err(GgufProblem::NotGguf(magic));
                }
                return Err(GgufProblem::TooShort { len: len as u64 });
            }
            None => return Err(GgufProblem::TooShort { len: 0 }),
        };
        if &magic != b"GGUF" {
            return Err(GgufProblem::NotGguf(magic));
        }
        if !(2..=3).contains(&version) {
            return Err(GgufProblem::UnsupportedVersion(version));
        }
        if path.to_str().is_none() {
            return Err(GgufProblem::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "llama.cpp opens only paths that are valid UTF-8",
            )));
        }
        // llama.cpp's log goes to `tracing` once the backend is up; without it the
        // reason would go to stderr only.
        let _ = crate::backend();
        let (ctx, lines) = llama_log::capture(|| GgufContext::from_file(path));
        let Some(ctx) = ctx else {
            return Err(GgufProblem::Rejected {
                reason: if lines.is_empty() {
                    "llama.cpp gave no reason".to_owned()
                } else {
                    lines.join("; ")
                },
            });
        };
        Ok(Self::of(&ctx, version))
    }

    fn of(ctx: &GgufContext, version: u32) -> Self {
        let key = |name: &str| Some(ctx.find_key(name)).filter(|i| *i >= 0);
        // Each getter asserts (aborts) on a type mismatch inside llama.cpp: check the
        // type first.
        let file_type = key("general.file_type").and_then(|i| match ctx.kv_type(i) {
            TYPE_U32 => Some(ctx.val_u32(i)),
            TYPE_I32 => u32::try_from(ctx.val_i32(i)).ok(),
            _ => None,
        });
        let architecture = key("general.architecture")
            .filter(|i| ctx.kv_type(*i) == TYPE_STRING)
            .and_then(|i| ctx.val_str(i))
            .map(str::to_owned);
        Self {
            version,
            file_type,
            architecture,
            tensors: u64::try_from(ctx.n_tensors()).unwrap_or(0),
            metadata_entries: u64::try_from(ctx.n_kv()).unwrap_or(0),
        }
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.file_type`: the llama.cpp file type (quantization), if present.
    pub fn file_type(&self) -> Option<u32> {
        self.file_type
    }

    /// The quantization as llama.cpp names it (`Q4_1`, `Q8_0`, `F16`, ...).
    pub fn quantization(&self) -> Option<String> {
        self.file_type.map(|t| match file_type_name(t) {
            Some(name) => name.to_owned(),
            None => format!("file type {t}"),
        })
    }

    /// `general.architecture`, if present.
    pub fn architecture(&self) -> Option<&str> {
        self.architecture.as_deref()
    }

    /// How many tensors the tensor table lists.
    pub fn tensors(&self) -> u64 {
        self.tensors
    }

    /// How many metadata entries the header has.
    pub fn metadata_entries(&self) -> u64 {
        self.metadata_entries
    }
}

/// Reads into `buf` until it is full or the file ends; returns how much was read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Why a file is not a GGUF llama.cpp reads.
#[derive(Debug)]
pub enum GgufProblem {
    /// The first four bytes are not `GGUF`.
    NotGguf([u8; 4]),
    /// A GGUF version llama.cpp does not read.
    UnsupportedVersion(u32),
    /// The file ends inside the first eight bytes (magic and version).
    TooShort {
        /// The file's size.
        len: u64,
    },
    /// llama.cpp refused the header, metadata or tensor table.
    Rejected {
        /// llama.cpp's log lines about it.
        reason: String,
    },
    /// The file could not be read.
    Io(io::Error),
}

impl fmt::Display for GgufProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGguf([0, 0, 0, 0]) => {
                f.write_str("not a GGUF file (it starts with zero bytes)")
            }
            Self::NotGguf(magic) => write!(
                f,
                "not a GGUF file (it starts with {:?}, a GGUF starts with \"GGUF\")",
                String::from_utf8_lossy(magic)
            ),
            Self::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported GGUF version {v} (versions 2 and 3 are read)"
                )
            }
            Self::TooShort { len } => write!(
                f,
                "truncated: the file ends after {len} bytes, inside the header"
            ),
            Self::Rejected { reason } => write!(
                f,
                "llama.cpp cannot read its header (truncated or corrupt): {reason}"
            ),
            Self::Io(e) => write!(f, "cannot read it: {e}"),
        }
    }
}

impl std::error::Error for GgufProblem {}

/// llama.cpp's name for a `general.file_type` (`enum llama_ftype`).
fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuzz_support::proptest::prelude::*;

    const TYPE_ARRAY: u32 = 9;

    /// Size in bytes of a GGUF metadata scalar type.
    fn scalar_size(value_type: u32) -> u64 {
        match value_type {
            0 | 1 | 7 => 1, // u8, i8, bool
            2 | 3 => 2,     // u16, i16
            4..=6 => 4,     // u32, i32, f32
            _ => 8,         // u64, i64, f64
        }
    }

    /// `(elements per block, bytes per block)` of some ggml tensor types.
    fn type_size(ggml_type: u32) -> (u64, u64) {
        match ggml_type {
            0 => (1, 4),      // F32
            1 | 30 => (1, 2), // F16, BF16
            2 => (32, 18),    // Q4_0
            3 => (32, 20),    // Q4_1
            8 => (32, 34),    // Q8_0
            12 => (256, 144), // Q4_K
            14 => (256, 210), // Q6_K
            24 => (1, 1),     // I8
            _ => (1, 8),      // F64 (28)
        }
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A GGUF v3 file: an architecture, a token list, a file type, one 4x2 F32 tensor.
    fn tiny_gguf() -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(1u64.to_le_bytes()); // tensors
        out.extend(3u64.to_le_bytes()); // metadata entries
        string(&mut out, "general.architecture");
        out.extend(TYPE_STRING.to_le_bytes());
        string(&mut out, "llama");
        string(&mut out, "tokenizer.ggml.tokens");
        out.extend(TYPE_ARRAY.to_le_bytes());
        out.extend(TYPE_STRING.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        string(&mut out, "<s>");
        string(&mut out, "</s>");
        string(&mut out, "general.file_type");
        out.extend(TYPE_U32.to_le_bytes());
        out.extend(3u32.to_le_bytes());
        string(&mut out, "w");
        out.extend(2u32.to_le_bytes());
        out.extend(4u64.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(0u64.to_le_bytes()); // offset
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend([0u8; 32]);
        out
    }

    fn read_bytes(bytes: &[u8]) -> Result<GgufHeader, GgufProblem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        GgufHeader::read(&path)
    }

    #[test]
    fn a_whole_file_passes_and_names_its_quantization() {
        let header = read_bytes(&tiny_gguf()).unwrap();
        assert_eq!(header.file_type(), Some(3));
        assert_eq!(header.quantization().as_deref(), Some("Q4_1"));
        assert_eq!(header.architecture(), Some("llama"));
        assert_eq!(
            (
                header.version(),
                header.tensors(),
                header.metadata_entries()
            ),
            (3, 1, 3)
        );
    }

    #[test]
    fn a_cut_inside_the_metadata_is_llama_cpps_refusal() {
        let bytes = tiny_gguf();
        let err = read_bytes(&bytes[..110]).unwrap_err();
        assert!(matches!(err, GgufProblem::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("failed to read"), "{err}");
        let err = read_bytes(b"GG").unwrap_err();
        assert!(err.to_string().contains("inside the header"), "{err}");
    }

    #[test]
    fn foreign_files_and_versions_are_named() {
        let err = read_bytes(b"PK\x03\x04 a zip").unwrap_err();
        assert!(matches!(err, GgufProblem::NotGguf(_)), "{err}");
        assert!(err.to_string().contains("not a GGUF"), "{err}");
        let mut v1 = tiny_gguf();
        v1[4] = 1;
        assert!(matches!(
            read_bytes(&v1).unwrap_err(),
            GgufProblem::UnsupportedVersion(1)
        ));
    }

    #[test]
    fn a_file_type_of_the_wrong_type_is_ignored_not_an_abort() {
        let mut bytes = tiny_gguf();
        // general.file_type's value type u32 (4) → f32 (6); llama.cpp's getter would
        // abort on it.
        let at = bytes
            .windows(17)
            .position(|w| w == b"general.file_type")
            .unwrap()
            + 17;
        bytes[at] = 6;
        let header = read_bytes(&bytes).unwrap();
        assert_eq!(header.file_type(), None);
    }

    /// One metadata entry of a generated GGUF: key, value type, value bytes.
    type Entry = (String, u32, Vec<u8>);

    fn gguf_string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend(s.as_bytes());
        out
    }

    /// A metadata entry: a scalar, a string, an array of scalars or of strings
    /// (llama.cpp reads no arrays of arrays).
    fn entry() -> impl Strategy<Value = Entry> {
        let scalar = prop::sample::select(vec![0u32, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12]);
        let key = "[a-z._]{1,24}";
        prop_oneof![
            (key, scalar.clone(), any::<[u8; 8]>()).prop_map(|(k, t, bytes)| {
                let n = scalar_size(t) as usize;
                (k, t, bytes[..n].to_vec())
            }),
            (key, "\\PC{0,40}").prop_map(|(k, v)| (k, TYPE_STRING, gguf_string(&v))),
            (key, scalar, 0usize..40).prop_map(|(k, t, n)| {
                let mut v = t.to_le_bytes().to_vec();
                v.extend((n as u64).to_le_bytes());
                v.extend(vec![7u8; n * scalar_size(t) as usize]);
                (k, TYPE_ARRAY, v)
            }),
            (key, prop::collection::vec("[a-z]{0,8}", 0..8)).prop_map(|(k, items)| {
                let mut v = TYPE_STRING.to_le_bytes().to_vec();
                v.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|i| v.extend(gguf_string(i)));
                (k, TYPE_ARRAY, v)
            }),
        ]
    }

    /// A whole GGUF as llama.cpp wants it: unique keys, metadata (with a file type or
    /// not, an alignment or not), tensors whose rows are whole blocks, at consecutive
    /// aligned offsets, and their data; with its file type.
    fn valid_gguf() -> impl Strategy<Value = (Vec<u8>, Option<u32>)> {
        let types = prop::sample::select(vec![0u32, 1, 2, 3, 8, 12, 14, 24, 28, 30]);
        (
            2u32..=3,
            prop::collection::vec(entry(), 0..6),
            prop::option::of(0u32..40),
            prop::option::of(prop::sample::select(vec![1u32, 8, 32, 64])),
            prop::collection::vec((prop::collection::vec(1u64..6, 1..4), types), 0..4),
        )
            .prop_map(|(version, entries, file_type, alignment, tensors)| {
                let mut out = b"GGUF".to_vec();
                out.extend(version.to_le_bytes());
                out.extend((tensors.len() as u64).to_le_bytes());
                let kvs = entries.len()
                    + usize::from(file_type.is_some())
                    + usize::from(alignment.is_some());
                out.extend((kvs as u64).to_le_bytes());
                for (i, (k, t, v)) in entries.iter().enumerate() {
                    out.extend(gguf_string(&format!("k{i}.{k}")));
                    out.extend(t.to_le_bytes());
                    out.extend(v);
                }
                if let Some(ft) = file_type {
                    out.extend(gguf_string("general.file_type"));
                    out.extend(TYPE_U32.to_le_bytes());
                    out.extend(ft.to_le_bytes());
                }
                let align = u64::from(alignment.unwrap_or(32));
                if let Some(a) = alignment {
                    out.extend(gguf_string("general.alignment"));
                    out.extend(TYPE_U32.to_le_bytes());
                    out.extend(a.to_le_bytes());
                }
                let mut offset = 0u64;
                for (i, (dims, t)) in tensors.iter().enumerate() {
                    let (block, size) = type_size(*t);
                    out.extend(gguf_string(&format!("t{i}")));
                    out.extend((dims.len() as u32).to_le_bytes());
                    for (d, n) in dims.iter().enumerate() {
                        // The first dimension (a row) is a whole number of blocks.
                        let n = if d == 0 { n * block } else { *n };
                        out.extend(n.to_le_bytes());
                    }
                    out.extend(t.to_le_bytes());
                    out.extend(offset.to_le_bytes());
                    let blocks: u64 = dims.iter().product();
                    offset += blocks * size;
                    offset = offset.div_ceil(align) * align;
                }
                if !tensors.is_empty() {
                    while out.len() as u64 % align != 0 {
                        out.push(0);
                    }
                }
                out.resize(out.len() + offset as usize, 0);
                (out, file_type)
            })
    }

    const GGUF_TOKENS: &[&str] = &["GGUF", "general.file_type", "general.alignment", "\0\0\0\0"];

    /// llama.cpp's GGUF reader, through [`GgufHeader::read`], on whole files, mutated
    /// files (counts, lengths and types overwritten with edge values, bytes cut,
    /// inserted or repeated) and arbitrary bytes: no panic and no abort, every error
    /// explained, every whole file read with its file type.
    #[test]
    fn fuzz_gguf_headers() {
        use fuzz_support::{arbitrary_bytes, explained, fuzz, mutate_bytes, Bytes, Case};

        let cases = prop_oneof![
            1 => valid_gguf().prop_map(|(b, t)| Case::Valid((Bytes(b), t))),
            3 => valid_gguf()
                .prop_flat_map(|(bytes, _)| mutate_bytes(bytes, GGUF_TOKENS))
                .prop_map(|b| Case::Fuzzed((b, None))),
            1 => mutate_bytes(tiny_gguf(), GGUF_TOKENS).prop_map(|b| Case::Fuzzed((b, None))),
            1 => arbitrary_bytes(256).prop_map(|b| {
                let mut v = b"GGUF\x03\0\0\0".to_vec();
                v.extend(b.iter());
                Case::Fuzzed((Bytes(v), None))
            }),
            1 => arbitrary_bytes(64).prop_map(|b| Case::Fuzzed((b, None))),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        fuzz("fuzz_gguf_headers", 2000, cases, |case| {
            let (Case::Valid((bytes, _)) | Case::Fuzzed((bytes, _))) = case;
            std::fs::write(&path, &bytes[..]).map_err(|e| e.to_string())?;
            let read = GgufHeader::read(&path);
            explained(&read)?;
            match (case, read) {
                (Case::Valid((_, file_type)), Ok(header)) if header.file_type() == *file_type => {
                    let _ = header.quantization();
                    Ok(())
                }
                (Case::Valid(_), other) => Err(format!("a whole file gave {other:?}")),
                (Case::Fuzzed(_), Ok(header)) => {
                    let _ = header.quantization();
                    Ok(())
                }
                (Case::Fuzzed(_), Err(_)) => Ok(()),
            }
        });
    }
}
