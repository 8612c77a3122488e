//! A pass over a GGUF file's header before candle reads it: every count and length must fit in
//! the file, and `general.alignment` must be a power of two (candle divides by it). A file that
//! fails gets a typed error naming what is wrong, instead of a panic or a huge allocation.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::TensorInfo;

use crate::LlmError;

const MAGIC: &[u8; 4] = b"GGUF";
/// GGUF value types (the file format's numbering).
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// Open a model file for reading. A directory, FIFO or device is refused by name first: read
/// as a file it would give a misleading error, and opening a FIFO with no writer never returns.
pub fn open_model(path: &Path) -> crate::Result<File> {
    let io = |source| LlmError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory, not a model file"
        } else {
            "is not a regular file (a FIFO, socket or device?)"
        };
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            what,
        )));
    }
    File::open(path).map_err(io)
}

/// candle's reader behind `check_header`, then `check_layout`: a header that cannot be what it
/// says is `LlmError::NotGguf` before candle sees it, and tensors that would read past the file
/// or share bytes are refused before any is read.
pub fn read_content<R: Read + Seek>(
    reader: &mut R,
    path: &Path,
) -> crate::Result<candle_core::quantized::gguf_file::Content> {
    let not_gguf = |reason: String| LlmError::NotGguf {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| LlmError::Io {
        path: path.to_path_buf(),
        source,
    };
    scan(reader).map_err(|fail| match fail {
        Fail::Bad(reason) => not_gguf(reason),
        Fail::Io(source) => io(source),
    })?;
    let content = candle_core::quantized::gguf_file::Content::read(reader)
        .map_err(|e| not_gguf(e.to_string()))?;
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    check_layout(&content.tensor_infos, content.tensor_data_offset, len)?;
    Ok(content)
}

/// Scan the header from the reader's start, then seek back to it. `Err(reason)` when the header
/// cannot be what it says, or cannot be read.
pub fn check_header<R: Read + Seek>(reader: &mut R) -> Result<(), String> {
    scan(reader).map_err(|fail| fail.to_string())
}

fn scan<R: Read + Seek>(reader: &mut R) -> Result<(), Fail> {
    let len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let result = Scan { reader, len }.header();
    reader.seek(SeekFrom::Start(0))?;
    result
}

/// Why the scan stopped: the header is wrong, or reading failed (a disk error, a directory),
/// which is passed on as what it is rather than called a bad header.
enum Fail {
    Bad(String),
    Io(std::io::Error),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Bad(reason) => f.write_str(reason),
            Fail::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl From<&str> for Fail {
    fn from(reason: &str) -> Self {
        Fail::Bad(reason.into())
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail::Io(e)
    }
}

fn bad<T>(reason: String) -> Result<T, Fail> {
    Err(Fail::Bad(reason))
}

struct Scan<'a, R> {
    reader: &'a mut R,
    len: u64,
}

impl<R: Read + Seek> Scan<'_, R> {
    fn header(&mut self) -> Result<(), Fail> {
        let mut magic = [0u8; 4];
        self.bytes(&mut magic)?;
        if &magic != MAGIC {
            return Err("not a GGUF file (no GGUF magic)".into());
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return bad(format!("GGUF version {version}; versions 2 and 3 are read"));
        }
        let tensors = self.u64()?;
        let kvs = self.u64()?;
        // Each metadata pair takes at least 13 bytes, each tensor entry at least 24.
        if kvs.saturating_mul(13) > self.len || tensors.saturating_mul(24) > self.len {
            return bad(format!(
                "the header claims {kvs} metadata entries and {tensors} tensors, more than a \
                 {}-byte file can hold",
                self.len
            ));
        }
        for _ in 0..kvs {
            let key = self.string()?;
            let kind = self.u32()?;
            if key == "general.alignment" {
                // Any integer type candle reads; a negative one is as wrong as 0.
                let alignment: i64 = match kind {
                    0 => i64::from(self.u8()?),
                    1 => i64::from(self.u8()? as i8),
                    2 => i64::from(self.u16()?),
                    3 => i64::from(self.u16()? as i16),
                    4 => i64::from(self.u32()?),
                    5 => i64::from(self.u32()? as i32),
                    _ => return Err("general.alignment is not an integer".into()),
                };
                let alignment = u64::try_from(alignment).unwrap_or(0);
                if alignment == 0 || !alignment.is_power_of_two() {
                    return bad(format!(
                        "general.alignment is {alignment}; it must be a power of two"
                    ));
                }
                continue;
            }
            self.skip_value(kind, 0)?;
        }
        for _ in 0..tensors {
            let _name = self.string()?;
            let dims = self.u32()?;
            if dims > 8 {
                return bad(format!("a tensor with {dims} dimensions"));
            }
            for _ in 0..dims {
                self.u64()?;
            }
            self.u32()?; // type
            self.u64()?; // offset
        }
        Ok(())
    }

    fn skip_value(&mut self, kind: u32, depth: u32) -> Result<(), Fail> {
        match kind {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            STRING => {
                let n = self.u64()?;
                self.skip(n)
            }
            ARRAY if depth == 0 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                let fixed = match elem {
                    0 | 1 | 7 => Some(1),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match fixed {
                    Some(size) => self.skip(n.saturating_mul(size)),
                    None => {
                        if n.saturating_mul(8) > self.len {
                            return bad(format!("an array of {n} entries in a smaller file"));
                        }
                        for _ in 0..n {
                            self.skip_value(elem, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            ARRAY => Err("arrays of arrays are not read".into()),
            other => bad(format!("unknown GGUF value type {other}")),
        }
    }

    fn string(&mut self) -> Result<String, Fail> {
        let n = self.u64()?;
        if n > 1 << 16 {
            return bad(format!("a metadata key of {n} bytes"));
        }
        let mut b = vec![0u8; n as usize];
        self.bytes(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn skip(&mut self, n: u64) -> Result<(), Fail> {
        let at = self.reader.stream_position()?;
        if at.saturating_add(n) > self.len {
            return bad(format!(
                "the header says {n} bytes follow at byte {at}, past the file's end ({})",
                self.len
            ));
        }
        self.reader.seek(SeekFrom::Current(n as i64))?;
        Ok(())
    }

    fn bytes(&mut self, out: &mut [u8]) -> Result<(), Fail> {
        // Only a short read means the file ends early; any other error is the reader's own.
        self.reader.read_exact(out).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the file ends inside its header".into(),
            _ => Fail::Io(e),
        })
    }

    fn u8(&mut self) -> Result<u8, Fail> {
        let mut b = [0u8; 1];
        self.bytes(&mut b)?;
        Ok(b[0])
    }

    fn u16(&mut self) -> Result<u16, Fail> {
        let mut b = [0u8; 2];
        self.bytes(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, Fail> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, Fail> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Bytes of a tensor of `dims` elements stored in blocks of `block` elements, `block_bytes`
/// bytes each. In u64 with every step checked: in usize, 65536 x 65536 weights wrap to 0 bytes
/// on 32-bit targets (wasm) and a tensor would be read as empty. `Err` when the count overflows
/// or does not fill whole blocks.
pub fn tensor_bytes(dims: &[usize], block: usize, block_bytes: usize) -> Result<u64, String> {
    let too_many = || format!("{dims:?} elements are more than any file holds");
    let mut elements: u64 = 1;
    for &d in dims {
        elements = elements.checked_mul(d as u64).ok_or_else(too_many)?;
    }
    let block = block as u64;
    if block == 0 || !elements.is_multiple_of(block) {
        return Err(format!(
            "{elements} elements do not fill whole blocks of {block}"
        ));
    }
    (elements / block)
        .checked_mul(block_bytes as u64)
        .ok_or_else(too_many)
}

/// Every tensor's bytes must lie inside the data section (`data_offset` to `file_len`), and no
/// two tensors may share bytes. candle checks only that each fits in the file, so a small file
/// whose tensors all start at offset 0 would be read (and copied) once per tensor: a few MB
/// loading as tens of GB. Disjoint ranges inside the section also bound their total by its size.
/// llama.cpp also asks each tensor to start where the one before ends; not overlapping is
/// enough here.
pub fn check_layout(
    tensors: &HashMap<String, TensorInfo>,
    data_offset: u64,
    file_len: u64,
) -> crate::Result<()> {
    let data = file_len.saturating_sub(data_offset);
    let mut ranges = Vec::with_capacity(tensors.len());
    for (name, info) in tensors {
        let error = |reason| LlmError::Tensor {
            name: name.clone(),
            reason,
        };
        let dtype = info.ggml_dtype;
        let size = tensor_bytes(info.shape.dims(), dtype.block_size(), dtype.type_size())
            .map_err(error)?;
        let start = info.offset;
        let end = start.checked_add(size).filter(|end| *end <= data);
        let Some(end) = end.filter(|_| usize::try_from(size).is_ok()) else {
            return Err(error(format!(
                "{size} bytes at byte {start} of the tensor data run past its end ({data} \
                 bytes); is the file truncated?"
            )));
        };
        // An empty tensor occupies no bytes and cannot overlap anything.
        if size > 0 {
            ranges.push((start, end, name));
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((a_start, a_end, a), (b_start, b_end, b)) = (pair[0], pair[1]);
        if b_start < a_end {
            return Err(LlmError::Tensor {
                name: b.clone(),
                reason: format!(
                    "its bytes {b_start}..{b_end} overlap tensor {a}'s bytes {a_start}..{a_end}; \
                     each tensor needs bytes of its own"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use std::io::Cursor;

    /// A GGUF v3 header with the given metadata pairs (already encoded) and no tensors.
    fn file(kvs: &[Vec<u8>], tensors: u64) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(tensors.to_le_bytes());
        f.extend((kvs.len() as u64).to_le_bytes());
        for kv in kvs {
            f.extend(kv);
        }
        f.extend(vec![0u8; 64]);
        f
    }

    fn kv_u32(key: &str, v: u32) -> Vec<u8> {
        let mut b = (key.len() as u64).to_le_bytes().to_vec();
        b.extend(key.as_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend(v.to_le_bytes());
        b
    }

    #[test]
    fn bad_headers_are_errors_not_panics() {
        let ok = file(&[kv_u32("general.alignment", 32)], 0);
        assert_eq!(check_header(&mut Cursor::new(ok)), Ok(()));
        let zero = file(&[kv_u32("general.alignment", 0)], 0);
        let e = check_header(&mut Cursor::new(zero)).unwrap_err();
        assert!(e.contains("power of two"), "{e}");
        let odd = file(&[kv_u32("general.alignment", 24)], 0);
        assert!(check_header(&mut Cursor::new(odd)).is_err());
        let many = file(&[], 1 << 40);
        assert!(
            check_header(&mut Cursor::new(many))
                .unwrap_err()
                .contains("more than")
        );
        // A string whose length runs past the end.
        let mut long = (1u64 << 50).to_le_bytes().to_vec();
        long.extend(b"k");
        assert!(check_header(&mut Cursor::new(file(&[long], 0))).is_err());
        assert!(check_header(&mut Cursor::new(b"GGUF".to_vec())).is_err());
        assert!(check_header(&mut Cursor::new(b"PK\x03\x04zip".to_vec())).is_err());
        // Any prefix of a good file, and any single corrupted byte: an answer, never a panic.
        let good = file(
            &[
                kv_u32("general.alignment", 32),
                kv_u32("llama.block_count", 30),
            ],
            0,
        );
        for n in 0..good.len() {
            let _ = check_header(&mut Cursor::new(good[..n].to_vec()));
        }
        for i in 0..good.len() {
            for v in [0u8, 0xff, 9, 8] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = check_header(&mut Cursor::new(bad));
            }
        }
    }

    /// A reader whose reads fail (a directory read as a file, a disk error).
    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the disk is on fire"))
        }
    }

    impl Seek for Failing {
        fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
            Ok(1000)
        }
    }

    fn info(dims: &[usize], dtype: GgmlDType, offset: u64) -> TensorInfo {
        TensorInfo {
            shape: dims.into(),
            ggml_dtype: dtype,
            offset,
        }
    }

    #[test]
    fn tensor_sizes_are_checked_in_u64() {
        assert_eq!(tensor_bytes(&[64, 32], 32, 34), Ok(64 * 34));
        assert_eq!(tensor_bytes(&[], 1, 4), Ok(4), "a scalar");
        // 2^32 weights: 0 in a 32-bit usize, 4.25 GiB here.
        assert_eq!(tensor_bytes(&[65536, 65536], 32, 34), Ok((1 << 27) * 34));
        assert!(tensor_bytes(&[1 << 40, 1 << 40], 32, 34).is_err());
        assert!(tensor_bytes(&[usize::MAX, 2], 1, 4).is_err());
        assert!(tensor_bytes(&[1 << 60], 1, 32).is_err());
        assert!(tensor_bytes(&[33], 32, 34).is_err());
    }

    #[test]
    fn tensors_must_fit_the_data_and_not_share_bytes() {
        let q8 = |offset| info(&[2, 32], GgmlDType::Q8_0, offset); // 68 bytes
        let map = |v: Vec<(&str, TensorInfo)>| -> HashMap<String, TensorInfo> {
            v.into_iter().map(|(k, t)| (k.to_string(), t)).collect()
        };
        let end_to_end = map(vec![("a", q8(0)), ("b", q8(68)), ("c", q8(136))]);
        assert!(check_layout(&end_to_end, 100, 100 + 204).is_ok());
        // One byte short of the last tensor's end.
        let e = check_layout(&end_to_end, 100, 100 + 203).unwrap_err();
        assert!(e.to_string().contains("tensor c:"), "{e}");
        let shared = map(vec![("a", q8(0)), ("b", q8(67)), ("c", q8(136))]);
        let e = check_layout(&shared, 0, 1000).unwrap_err().to_string();
        assert!(
            e.contains("tensor b:") && e.contains("overlap tensor a's"),
            "{e}"
        );
        // The same offset for every layer: what multiplies a small file into a huge model.
        let same: HashMap<String, TensorInfo> =
            (0..50).map(|i| (format!("blk.{i}"), q8(0))).collect();
        assert!(check_layout(&same, 0, 68).is_err());
        // Offsets and sizes that overflow are errors, not wrapped sums.
        let far = map(vec![("a", q8(u64::MAX - 10))]);
        assert!(check_layout(&far, 0, 1000).is_err());
        let huge = map(vec![("a", info(&[1 << 40, 1 << 40], GgmlDType::F32, 0))]);
        assert!(check_layout(&huge, 0, 1000).is_err());
        // An empty tensor anywhere inside is fine; no tensors at all, even with the data
        // section's start past a short file's end, is fine.
        let empty = map(vec![
            ("a", q8(0)),
            ("e", info(&[0, 32], GgmlDType::Q8_0, 10)),
        ]);
        assert!(check_layout(&empty, 0, 68).is_ok());
        assert!(check_layout(&HashMap::new(), 64, 40).is_ok());
    }

    #[test]
    fn read_errors_are_not_called_a_short_file() {
        let e = check_header(&mut Failing).unwrap_err();
        assert!(e.contains("the disk is on fire"), "{e}");
        let e = read_content(&mut Failing, std::path::Path::new("m.gguf")).unwrap_err();
        assert!(matches!(e, crate::LlmError::Io { .. }), "{e}");
        assert!(e.to_string().contains("the disk is on fire"), "{e}");
        // A file that really stops early still says so.
        let e = check_header(&mut Cursor::new(b"GGUF\x03\0".to_vec())).unwrap_err();
        assert!(e.contains("ends inside its header"), "{e}");
    }
}
