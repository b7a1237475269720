//! The versioned binary encoding of property lists (`docs/PROPERTY-LIST.md`).

use std::time::Duration;

use super::{Properties, PropertyKind, Value};

/// The first four bytes of every encoded property list.
pub const MAGIC: [u8; 4] = *b"CKPL";
/// The encoding version this crate writes and reads.
pub const ENCODING_VERSION: u16 = 1;
/// The longest property name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The largest encoded property list the decoder accepts (16 MiB).
pub const MAX_ENCODED_LEN: usize = 16 << 20;

const HEADER_LEN: usize = 12;
/// The smallest possible entry: name length, one name byte, kind, one payload byte.
const MIN_ENTRY_LEN: usize = 4;

/// Why a byte string is not a valid property list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed property list at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Where the problem was found.
    pub offset: usize,
    /// What the problem is.
    pub reason: String,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return self.fail(format!(
                "{what} needs {n} bytes but only {} remain",
                self.remaining()
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn len_prefixed(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn utf8(&mut self, what: &str) -> Result<String, DecodeError> {
        let start = self.pos;
        let bytes = self.len_prefixed(what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError {
                offset: start + 4 + e.valid_up_to(),
                reason: format!("{what} is not valid UTF-8"),
            }),
        }
    }
}

impl Properties {
    /// Encodes the list in the binary format, version [`ENCODING_VERSION`].
    ///
    /// The output is canonical: names in ascending byte order, so equal
    /// lists encode to equal bytes.
    ///
    /// # Panics
    ///
    /// If a name is empty or longer than [`MAX_NAME_LEN`] bytes, or a string,
    /// byte string or list is longer than `u32::MAX`; [`Schema::check_self`](super::Schema::check_self) and [`Properties::decode`] never let such
    /// names through.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&ENCODING_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&len_u32(self.len()).to_le_bytes());
        for (name, value) in self.iter() {
            assert!(
                !name.is_empty() && name.len() <= MAX_NAME_LEN,
                "property name {name:?} must be 1 to {MAX_NAME_LEN} bytes"
            );
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.push(value.kind() as u8);
            encode_value(value, &mut out);
        }
        out
    }

    /// Decodes a property list, rejecting anything malformed with an error
    /// that gives the byte offset and the reason. Never panics and never
    /// reads past `bytes`.
    ///
    /// ```
    /// use clusterkit::Properties;
    ///
    /// let mut props = Properties::new();
    /// props.insert("path", "/dev/sdb");
    /// assert_eq!(Properties::decode(&props.encode()).unwrap(), props);
    ///
    /// let err = Properties::decode(b"CKPL\x01\x00").unwrap_err();
    /// assert_eq!(err.to_string(),
    ///     "malformed property list at byte 6: header needs 12 bytes, found 6");
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Properties, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        if bytes.len() > MAX_ENCODED_LEN {
            return r.fail(format!(
                "{} bytes exceed the limit of {MAX_ENCODED_LEN}",
                bytes.len()
            ));
        }
        if bytes.len() < HEADER_LEN {
            r.pos = bytes.len();
            return r.fail(format!(
                "header needs {HEADER_LEN} bytes, found {}",
                bytes.len()
            ));
        }
        if r.array::<4>("magic")? != MAGIC {
            r.pos = 0;
            return r.fail("bad magic: not a clusterkit property list");
        }
        let version = u16::from_le_bytes(r.array("version")?);
        if version != ENCODING_VERSION {
            r.pos = 4;
            return r.fail(format!(
                "encoding version {version} is not supported (this decoder reads {ENCODING_VERSION})"
            ));
        }
        let flags = u16::from_le_bytes(r.array("flags")?);
        if flags != 0 {
            r.pos = 6;
            return r.fail(format!("reserved flags must be zero, found {flags:#06x}"));
        }
        let count = r.u32("count")? as usize;
        if count > r.remaining() / MIN_ENTRY_LEN {
            r.pos = 8;
            return r.fail(format!(
                "count {count} cannot fit in the {} bytes that follow",
                r.remaining()
            ));
        }
        let mut props = Properties::new();
        for _ in 0..count {
            let entry_start = r.pos;
            let name_len = r.u8("name length")? as usize;
            if name_len == 0 {
                r.pos = entry_start;
                return r.fail("empty property name");
            }
            let name_bytes = r.take(name_len, "name")?;
            let Ok(name) = std::str::from_utf8(name_bytes) else {
                r.pos = entry_start + 1;
                return r.fail("property name is not valid UTF-8");
            };
            if props.contains(name) {
                r.pos = entry_start;
                return r.fail(format!("property `{name}` appears twice"));
            }
            let kind_byte = r.u8("kind")?;
            let Some(kind) = PropertyKind::from_u8(kind_byte) else {
                r.pos -= 1;
                return r.fail(format!("property `{name}` has unknown kind {kind_byte}"));
            };
            let value = decode_value(&mut r, kind, name)?;
            props.insert(name, value);
        }
        if r.remaining() != 0 {
            return r.fail(format!(
                "{} trailing bytes after the last entry",
                r.remaining()
            ));
        }
        Ok(props)
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("property list field longer than u32::MAX")
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    let put_bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&len_u32(b.len()).to_le_bytes());
        out.extend_from_slice(b);
    };
    match value {
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Duration(d) => {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            out.extend_from_slice(&ms.to_le_bytes());
        }
        Value::String(s) => put_bytes(out, s.as_bytes()),
        Value::Bytes(b) => put_bytes(out, b),
        Value::MultiString(list) => {
            out.extend_from_slice(&len_u32(list.len()).to_le_bytes());
            for s in list {
                put_bytes(out, s.as_bytes());
            }
        }
    }
}

fn decode_value(r: &mut Reader<'_>, kind: PropertyKind, name: &str) -> Result<Value, DecodeError> {
    let what = format!("value of `{name}`");
    Ok(match kind {
        PropertyKind::Bool => match r.u8(&what)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => {
                r.pos -= 1;
                return r.fail(format!("{what}: boolean must be 0 or 1, found {other}"));
            }
        },
        PropertyKind::U32 => Value::U32(r.u32(&what)?),
        PropertyKind::U64 => Value::U64(r.u64(&what)?),
        PropertyKind::I64 => Value::I64(r.u64(&what)? as i64),
        PropertyKind::Duration => Value::Duration(Duration::from_millis(r.u64(&what)?)),
        PropertyKind::String => Value::String(r.utf8(&what)?),
        PropertyKind::Bytes => Value::Bytes(r.len_prefixed(&what)?.to_vec()),
        PropertyKind::MultiString => {
            let count = r.u32(&what)? as usize;
            if count > r.remaining() / 4 {
                r.pos -= 4;
                return r.fail(format!(
                    "{what}: {count} strings cannot fit in the {} bytes that follow",
                    r.remaining() - 4
                ));
            }
            let mut list = Vec::with_capacity(count);
            for _ in 0..count {
                list.push(r.utf8(&what)?);
            }
            Value::MultiString(list)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Properties {
        let mut p = Properties::new();
        p.insert("b", true);
        p.insert("d", Duration::from_millis(1500));
        p.insert("i", -7i64);
        p.insert("list", vec!["x".to_string(), "".to_string()]);
        p.insert("raw", vec![0u8, 255]);
        p.insert("s", "héllo");
        p.insert("u", 7u32);
        p.insert("w", u64::MAX);
        p
    }

    #[test]
    fn round_trips_every_kind() {
        let p = sample();
        assert_eq!(Properties::decode(&p.encode()).unwrap(), p);
        assert_eq!(
            Properties::decode(&Properties::new().encode()).unwrap(),
            Properties::new()
        );
    }

    #[test]
    fn layout_is_as_documented() {
        let mut p = Properties::new();
        p.insert("ttl", 300u32);
        assert_eq!(
            p.encode(),
            b"CKPL\x01\x00\x00\x00\x01\x00\x00\x00\x03ttl\x02\x2c\x01\x00\x00".to_vec()
        );
    }

    #[test]
    fn rejections_say_where_and_why() {
        let good = sample().encode();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"XXXX\x01\x00\x00\x00\x00\x00\x00\x00".to_vec(),
                "at byte 0: bad magic",
            ),
            (
                b"CKPL\x02\x00\x00\x00\x00\x00\x00\x00".to_vec(),
                "at byte 4: encoding version 2",
            ),
            (
                b"CKPL\x01\x00\x01\x00\x00\x00\x00\x00".to_vec(),
                "at byte 6: reserved flags",
            ),
            (
                b"CKPL\x01\x00\x00\x00\xff\xff\xff\xff".to_vec(),
                "at byte 8: count 4294967295",
            ),
            ([&good[..], b"!"].concat(), "1 trailing bytes"),
            (good[..good.len() - 1].to_vec(), "only"),
            (
                b"CKPL\x01\x00\x00\x00\x01\x00\x00\x00\x01a\x09\x00".to_vec(),
                "unknown kind 9",
            ),
            (
                b"CKPL\x01\x00\x00\x00\x01\x00\x00\x00\x01a\x01\x02".to_vec(),
                "must be 0 or 1",
            ),
            (
                b"CKPL\x01\x00\x00\x00\x01\x00\x00\x00\x00a\x01\x01".to_vec(),
                "empty property name",
            ),
            (
                b"CKPL\x01\x00\x00\x00\x02\x00\x00\x00\x01a\x01\x01\x01a\x01\x01".to_vec(),
                "property `a` appears twice",
            ),
            (
                b"CKPL\x01\x00\x00\x00\x01\x00\x00\x00\x01a\x05\x01\x00\x00\x00\xff".to_vec(),
                "not valid UTF-8",
            ),
        ];
        for (bytes, expected) in cases {
            let err = Properties::decode(&bytes).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }
}
