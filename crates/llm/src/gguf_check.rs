//! A pass over a GGUF file's header before candle reads it: every count and length must fit in
//! the file, and `general.alignment` must be a power of two (candle divides by it). A file that
//! fails gets a typed error naming what is wrong, instead of a panic or a huge allocation.

use std::io::{Read, Seek, SeekFrom};

const MAGIC: &[u8; 4] = b"GGUF";
/// GGUF value types (the file format's numbering).
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// candle's reader behind `check_header`: a header that cannot be what it says is
/// `LlmError::NotGguf` before candle sees it.
pub fn read_content<R: Read + Seek>(
    reader: &mut R,
    path: &std::path::Path,
) -> crate::Result<candle_core::quantized::gguf_file::Content> {
    let not_gguf = |reason: String| crate::LlmError::NotGguf {
        path: path.to_path_buf(),
        reason,
    };
    check_header(reader).map_err(not_gguf)?;
    candle_core::quantized::gguf_file::Content::read(reader).map_err(|e| not_gguf(e.to_string()))
}

/// Scan the header from the reader's start, then seek back to it. `Err(reason)` when the header
/// cannot be what it says.
pub fn check_header<R: Read + Seek>(reader: &mut R) -> Result<(), String> {
    let len = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let result = Scan { reader, len }.header();
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    result
}

struct Scan<'a, R> {
    reader: &'a mut R,
    len: u64,
}

impl<R: Read + Seek> Scan<'_, R> {
    fn header(&mut self) -> Result<(), String> {
        let mut magic = [0u8; 4];
        self.bytes(&mut magic)?;
        if &magic != MAGIC {
            return Err("not a GGUF file (no GGUF magic)".into());
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!("GGUF version {version}; versions 2 and 3 are read"));
        }
        let tensors = self.u64()?;
        let kvs = self.u64()?;
        // Each metadata pair takes at least 13 bytes, each tensor entry at least 24.
        if kvs.saturating_mul(13) > self.len || tensors.saturating_mul(24) > self.len {
            return Err(format!(
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
                    return Err(format!(
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
                return Err(format!("a tensor with {dims} dimensions"));
            }
            for _ in 0..dims {
                self.u64()?;
            }
            self.u32()?; // type
            self.u64()?; // offset
        }
        Ok(())
    }

    fn skip_value(&mut self, kind: u32, depth: u32) -> Result<(), String> {
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
                            return Err(format!("an array of {n} entries in a smaller file"));
                        }
                        for _ in 0..n {
                            self.skip_value(elem, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            ARRAY => Err("arrays of arrays are not read".into()),
            other => Err(format!("unknown GGUF value type {other}")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        if n > 1 << 16 {
            return Err(format!("a metadata key of {n} bytes"));
        }
        let mut b = vec![0u8; n as usize];
        self.bytes(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let at = self.reader.stream_position().map_err(|e| e.to_string())?;
        if at.saturating_add(n) > self.len {
            return Err(format!(
                "the header says {n} bytes follow at byte {at}, past the file's end ({})",
                self.len
            ));
        }
        self.reader
            .seek(SeekFrom::Current(n as i64))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn bytes(&mut self, out: &mut [u8]) -> Result<(), String> {
        self.reader
            .read_exact(out)
            .map_err(|_| "the file ends inside its header".to_string())
    }

    fn u8(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.bytes(&mut b)?;
        Ok(b[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let mut b = [0u8; 2];
        self.bytes(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
