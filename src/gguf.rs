//! A quick look at a GGUF file before llama.cpp loads it: is it a GGUF, is it whole,
//! and what quantization does it declare.
//!
//! llama.cpp refuses a damaged file with a message only its log shows; reading the
//! header here first lets `agora model info` say what is wrong: not a GGUF, an
//! unsupported version, cut off inside the metadata, or missing tensor data.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

/// What the header of a GGUF file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GgufHeader {
    /// `general.file_type`: the llama.cpp file type (quantization), if present.
    pub(crate) file_type: Option<u32>,
}

impl GgufHeader {
    /// The quantization as llama.cpp names it (`Q4_1`, `Q8_0`, `F16`, ...).
    pub(crate) fn quantization(&self) -> Option<String> {
        self.file_type.map(|t| match file_type_name(t) {
            Some(name) => name.to_owned(),
            None => format!("file type {t}"),
        })
    }
}

/// Why a file is not a usable GGUF.
#[derive(Debug)]
pub(crate) enum GgufProblem {
    /// The first four bytes are not `GGUF`.
    NotGguf([u8; 4]),
    /// A GGUF version this reader (and llama.cpp) does not handle.
    UnsupportedVersion(u32),
    /// The file ends inside the header or the metadata.
    TruncatedHeader {
        /// What was being read.
        what: String,
        /// The file's size.
        len: u64,
    },
    /// The header is whole but the tensor data is cut off.
    TruncatedData {
        /// The file's size.
        len: u64,
        /// The size the tensors need.
        needed: u64,
    },
    /// A value in the header makes no sense.
    Corrupt(String),
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
                write!(f, "unsupported GGUF version {v} (versions 2 and 3 are read)")
            }
            Self::TruncatedHeader { what, len } => write!(
                f,
                "truncated: the file ends after {len} bytes, inside the {what}"
            ),
            Self::TruncatedData { len, needed } => write!(
                f,
                "truncated: the file has {len} bytes but its tensors need {needed} ({} bytes missing)",
                needed - len
            ),
            Self::Corrupt(reason) => write!(f, "corrupt GGUF header: {reason}"),
            Self::Io(e) => write!(f, "cannot read it: {e}"),
        }
    }
}

impl std::error::Error for GgufProblem {}

type Result<T> = std::result::Result<T, GgufProblem>;

/// Reads the header, metadata and tensor table of the GGUF at `path` and checks that
/// the file is long enough for every tensor whose type size is known.
pub(crate) fn scan(path: &Path) -> Result<GgufHeader> {
    let file = File::open(path).map_err(GgufProblem::Io)?;
    let len = file.metadata().map_err(GgufProblem::Io)?.len();
    read_header(BufReader::with_capacity(1 << 16, file), len)
}

/// [`scan`] of a file of `len` bytes that `inner` reads from its start.
fn read_header<R: Read + Seek>(inner: R, len: u64) -> Result<GgufHeader> {
    let mut r = Reader { inner, pos: 0, len };

    let magic: [u8; 4] = r.array("header")?;
    if &magic != b"GGUF" {
        return Err(GgufProblem::NotGguf(magic));
    }
    let version = r.u32("header")?;
    if !(2..=3).contains(&version) {
        return Err(GgufProblem::UnsupportedVersion(version));
    }
    let tensors = r.u64("header")?;
    let kvs = r.u64("header")?;

    let mut file_type = None;
    let mut alignment = 32u64;
    for i in 0..kvs {
        let key = r.string(|| format!("key of metadata entry {i}"), MAX_NAME)?;
        let what = || format!("metadata value {key:?}");
        let value_type = r.u32(&what())?;
        match (key.as_str(), value_type) {
            ("general.file_type", TYPE_U32 | TYPE_I32) => file_type = Some(r.u32(&what())?),
            ("general.alignment", TYPE_U32) => {
                alignment = u64::from(r.u32(&what())?);
                if alignment == 0 || !alignment.is_power_of_two() {
                    return Err(GgufProblem::Corrupt(format!(
                        "general.alignment is {alignment}, not a power of two"
                    )));
                }
            }
            _ => r.skip_value(value_type, &key, 0)?,
        }
    }

    let mut extents = Vec::new();
    for i in 0..tensors {
        let name = r.string(|| format!("name of tensor {i}"), MAX_NAME)?;
        let what = || format!("tensor table (tensor {name:?})");
        let dims = r.u32(&what())?;
        if dims > 8 {
            return Err(GgufProblem::Corrupt(format!(
                "tensor {name:?} has {dims} dimensions"
            )));
        }
        let mut elements = 1u64;
        for _ in 0..dims {
            elements = elements.saturating_mul(r.u64(&what())?);
        }
        let ggml_type = r.u32(&what())?;
        let offset = r.u64(&what())?;
        let bytes = type_size(ggml_type).map_or(0, |(block, size)| {
            elements.div_ceil(block).saturating_mul(size)
        });
        extents.push(offset.saturating_add(bytes));
    }
    let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment);
    let needed = extents
        .iter()
        .map(|end| data_start.saturating_add(*end))
        .max()
        .unwrap_or(r.pos);
    if needed > len {
        return Err(GgufProblem::TruncatedData { len, needed });
    }
    Ok(GgufHeader { file_type })
}

/// Longest key or tensor name accepted (llama.cpp's limit is far lower).
const MAX_NAME: u64 = 1 << 16;

const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// Size in bytes of a GGUF metadata scalar type.
fn scalar_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

/// `(elements per block, bytes per block)` of the ggml tensor types whose layout is
/// fixed; others are not size-checked.
fn type_size(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),       // F32
        1 => (1, 2),       // F16
        2 => (32, 18),     // Q4_0
        3 => (32, 20),     // Q4_1
        6 => (32, 22),     // Q5_0
        7 => (32, 24),     // Q5_1
        8 => (32, 34),     // Q8_0
        9 => (32, 36),     // Q8_1
        10 => (256, 84),   // Q2_K
        11 => (256, 110),  // Q3_K
        12 => (256, 144),  // Q4_K
        13 => (256, 176),  // Q5_K
        14 => (256, 210),  // Q6_K
        15 => (256, 292),  // Q8_K
        20 => (32, 18),    // IQ4_NL
        24 => (1, 1),      // I8
        25 => (1, 2),      // I16
        26 => (1, 4),      // I32
        27 | 28 => (1, 8), // I64, F64
        30 => (1, 2),      // BF16
        _ => return None,
    })
}

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

/// A little-endian reader that knows where it is and how long the file is.
struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn truncated(&self, what: &str) -> GgufProblem {
        GgufProblem::TruncatedHeader {
            what: what.to_owned(),
            len: self.len,
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => self.truncated(what),
                _ => GgufProblem::Io(e),
            })?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.len);
        let Some(end) = end else {
            return Err(self.truncated(what));
        };
        let step = i64::try_from(n).map_err(|_| self.truncated(what))?;
        self.inner.seek_relative(step).map_err(GgufProblem::Io)?;
        self.pos = end;
        Ok(())
    }

    fn string(&mut self, what: impl Fn() -> String, max: u64) -> Result<String> {
        let n = self.u64(&what())?;
        if n > max {
            return Err(GgufProblem::Corrupt(format!(
                "{} is {n} bytes long",
                what()
            )));
        }
        if self.pos + n > self.len {
            return Err(self.truncated(&what()));
        }
        let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
        self.inner.read_exact(&mut buf).map_err(GgufProblem::Io)?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| GgufProblem::Corrupt(format!("{} is not UTF-8", what())))
    }

    fn skip_value(&mut self, value_type: u32, key: &str, depth: u32) -> Result<()> {
        let what = || format!("metadata value {key:?}");
        match value_type {
            TYPE_STRING => {
                let n = self.u64(&what())?;
                self.skip(n, &what())
            }
            TYPE_ARRAY if depth < 4 => {
                let element_type = self.u32(&what())?;
                let count = self.u64(&what())?;
                if let Some(size) = scalar_size(element_type) {
                    let bytes = count
                        .checked_mul(size)
                        .ok_or_else(|| self.truncated(&what()))?;
                    return self.skip(bytes, &what());
                }
                if element_type != TYPE_STRING && element_type != TYPE_ARRAY {
                    return Err(GgufProblem::Corrupt(format!(
                        "metadata {key:?} is an array of unknown type {element_type}"
                    )));
                }
                for _ in 0..count {
                    self.skip_value(element_type, key, depth + 1)?;
                }
                Ok(())
            }
            other => match scalar_size(other) {
                Some(size) => self.skip(size, &what()),
                None => Err(GgufProblem::Corrupt(format!(
                    "metadata {key:?} has unknown type {other}"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuzz_support::proptest::prelude::*;

    /// A GGUF v3 file: an architecture, a file type, one 4x2 F32 tensor.
    fn tiny_gguf() -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
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

    fn scan_bytes(bytes: &[u8]) -> Result<GgufHeader> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        scan(&path)
    }

    #[test]
    fn a_whole_file_passes_and_names_its_quantization() {
        let header = scan_bytes(&tiny_gguf()).unwrap();
        assert_eq!(header.file_type, Some(3));
        assert_eq!(header.quantization().as_deref(), Some("Q4_1"));
    }

    #[test]
    fn missing_tensor_data_is_truncation() {
        let bytes = tiny_gguf();
        let err = scan_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(
            matches!(err, GgufProblem::TruncatedData { needed, .. } if needed == bytes.len() as u64),
            "{err}"
        );
        assert!(err.to_string().contains("1 bytes missing"), "{err}");
    }

    #[test]
    fn a_cut_inside_the_metadata_names_the_entry() {
        let bytes = tiny_gguf();
        let err = scan_bytes(&bytes[..110]).unwrap_err();
        assert!(matches!(err, GgufProblem::TruncatedHeader { .. }), "{err}");
        assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
        let err = scan_bytes(b"GG").unwrap_err();
        assert!(err.to_string().contains("inside the header"), "{err}");
    }

    #[test]
    fn foreign_files_and_versions_are_named() {
        let err = scan_bytes(b"PK\x03\x04 a zip").unwrap_err();
        assert!(matches!(err, GgufProblem::NotGguf(_)), "{err}");
        assert!(err.to_string().contains("not a GGUF"), "{err}");
        let mut v1 = tiny_gguf();
        v1[4] = 1;
        assert!(matches!(
            scan_bytes(&v1).unwrap_err(),
            GgufProblem::UnsupportedVersion(1)
        ));
    }

    /// One metadata entry of a generated GGUF: key, value type, value bytes.
    type Entry = (String, u32, Vec<u8>);

    fn gguf_string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend(s.as_bytes());
        out
    }

    /// A metadata entry: a scalar, a string, an array of scalars or strings, or an
    /// array of arrays.
    fn entry() -> impl Strategy<Value = Entry> {
        let scalar = prop::sample::select(vec![0u32, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12]);
        let key = "[a-z._]{1,24}";
        prop_oneof![
            (key, scalar.clone(), any::<[u8; 8]>()).prop_map(|(k, t, bytes)| {
                let n = scalar_size(t).unwrap() as usize;
                (k, t, bytes[..n].to_vec())
            }),
            (key, "\\PC{0,40}").prop_map(|(k, v)| (k, TYPE_STRING, gguf_string(&v))),
            (key, scalar, 0usize..40).prop_map(|(k, t, n)| {
                let mut v = t.to_le_bytes().to_vec();
                v.extend((n as u64).to_le_bytes());
                v.extend(vec![7u8; n * scalar_size(t).unwrap() as usize]);
                (k, TYPE_ARRAY, v)
            }),
            (key, prop::collection::vec("[a-z]{0,8}", 0..8)).prop_map(|(k, items)| {
                let mut v = TYPE_STRING.to_le_bytes().to_vec();
                v.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|i| v.extend(gguf_string(i)));
                (k, TYPE_ARRAY, v)
            }),
            (key, 0usize..4).prop_map(|(k, n)| {
                // An array of `n` arrays of two u16.
                let mut v = TYPE_ARRAY.to_le_bytes().to_vec();
                v.extend((n as u64).to_le_bytes());
                for _ in 0..n {
                    v.extend(2u32.to_le_bytes());
                    v.extend(2u64.to_le_bytes());
                    v.extend([1, 0, 2, 0]);
                }
                (k, TYPE_ARRAY, v)
            }),
        ]
    }

    /// A whole GGUF: metadata (with a file type or not, an alignment or not), tensors
    /// of types whose size is known, and their data; with its file type.
    fn valid_gguf() -> impl Strategy<Value = (Vec<u8>, Option<u32>)> {
        let types = prop::sample::select(vec![0u32, 1, 2, 3, 8, 12, 14, 24, 28, 30]);
        (
            2u32..=3,
            prop::collection::vec(entry(), 0..6),
            prop::option::of(0u32..40),
            prop::option::of(prop::sample::select(vec![1u32, 8, 32, 64])),
            prop::collection::vec((prop::collection::vec(1u64..40, 1..4), types), 0..4),
        )
            .prop_map(|(version, entries, file_type, alignment, tensors)| {
                let mut out = b"GGUF".to_vec();
                out.extend(version.to_le_bytes());
                out.extend((tensors.len() as u64).to_le_bytes());
                let kvs = entries.len()
                    + usize::from(file_type.is_some())
                    + usize::from(alignment.is_some());
                out.extend((kvs as u64).to_le_bytes());
                for (k, t, v) in &entries {
                    out.extend(gguf_string(k));
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
                    out.extend(gguf_string(&format!("t{i}")));
                    out.extend((dims.len() as u32).to_le_bytes());
                    dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
                    out.extend(t.to_le_bytes());
                    out.extend(offset.to_le_bytes());
                    let (block, size) = type_size(*t).unwrap();
                    let elements: u64 = dims.iter().product();
                    offset += elements.div_ceil(block) * size;
                    offset = offset.div_ceil(align) * align;
                }
                while out.len() as u64 % align != 0 {
                    out.push(0);
                }
                out.resize(out.len() + offset as usize, 0);
                (out, file_type)
            })
    }

    const GGUF_TOKENS: &[&str] = &["GGUF", "general.file_type", "general.alignment", "\0\0\0\0"];

    /// The GGUF header reader on whole files, mutated files (counts, lengths and
    /// types overwritten with edge values, bytes cut, inserted or repeated) and
    /// arbitrary bytes.
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
        fuzz("fuzz_gguf_headers", 2000, cases, |case| {
            let (Case::Valid((bytes, _)) | Case::Fuzzed((bytes, _))) = case;
            let read = read_header(std::io::Cursor::new(&bytes[..]), bytes.len() as u64);
            explained(&read)?;
            match (case, read) {
                (Case::Valid((_, file_type)), Ok(header)) if header.file_type == *file_type => {
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
