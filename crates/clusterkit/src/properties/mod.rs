//! Property values, property lists, schemas and their binary encoding.
//!
//! A resource is configured by a [`Properties`] list: named, typed
//! [`Value`]s. Its type declares a [`Schema`] of [`PropertySpec`]s, and
//! [`Schema::validate`] checks input against it, fills in defaults and
//! names every property that is wrong. Property lists cross the C ABI in the
//! versioned binary encoding of [`Properties::encode`] and
//! [`Properties::decode`], documented in `docs/PROPERTY-LIST.md`.

mod encoding;
mod schema;

pub use encoding::{DecodeError, ENCODING_VERSION, MAGIC, MAX_ENCODED_LEN, MAX_NAME_LEN};
pub use schema::{
    Apply, Problem, PropertyError, PropertyErrors, PropertySpec, Redacted, Schema, UpdateEffect,
};

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// The kind of a property: what values it holds.
///
/// The numeric values are stable; they appear in the binary encoding and
/// the C ABI.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyKind {
    /// `true` or `false`.
    Bool = 1,
    /// An unsigned 32-bit integer.
    U32 = 2,
    /// An unsigned 64-bit integer.
    U64 = 3,
    /// A signed 64-bit integer.
    I64 = 4,
    /// A UTF-8 string.
    String = 5,
    /// A list of UTF-8 strings.
    MultiString = 6,
    /// Raw bytes.
    Bytes = 7,
    /// A duration, with millisecond resolution.
    Duration = 8,
}

impl PropertyKind {
    /// All kinds, in numeric order.
    pub const ALL: [PropertyKind; 8] = [
        PropertyKind::Bool,
        PropertyKind::U32,
        PropertyKind::U64,
        PropertyKind::I64,
        PropertyKind::String,
        PropertyKind::MultiString,
        PropertyKind::Bytes,
        PropertyKind::Duration,
    ];

    /// The kind for its numeric value.
    pub fn from_u8(value: u8) -> Option<PropertyKind> {
        Self::ALL.into_iter().find(|k| *k as u8 == value)
    }

    /// A short lower-case name, as used in messages and configs (`"multi-string"`).
    pub const fn name(self) -> &'static str {
        match self {
            PropertyKind::Bool => "bool",
            PropertyKind::U32 => "u32",
            PropertyKind::U64 => "u64",
            PropertyKind::I64 => "i64",
            PropertyKind::String => "string",
            PropertyKind::MultiString => "multi-string",
            PropertyKind::Bytes => "bytes",
            PropertyKind::Duration => "duration",
        }
    }
}

impl fmt::Display for PropertyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One property value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// See [`PropertyKind::Bool`].
    Bool(bool),
    /// See [`PropertyKind::U32`].
    U32(u32),
    /// See [`PropertyKind::U64`].
    U64(u64),
    /// See [`PropertyKind::I64`].
    I64(i64),
    /// See [`PropertyKind::String`].
    String(String),
    /// See [`PropertyKind::MultiString`].
    MultiString(Vec<String>),
    /// See [`PropertyKind::Bytes`].
    Bytes(Vec<u8>),
    /// See [`PropertyKind::Duration`]; encoded in whole milliseconds.
    Duration(Duration),
}

impl Value {
    /// The kind of this value.
    pub fn kind(&self) -> PropertyKind {
        match self {
            Value::Bool(_) => PropertyKind::Bool,
            Value::U32(_) => PropertyKind::U32,
            Value::U64(_) => PropertyKind::U64,
            Value::I64(_) => PropertyKind::I64,
            Value::String(_) => PropertyKind::String,
            Value::MultiString(_) => PropertyKind::MultiString,
            Value::Bytes(_) => PropertyKind::Bytes,
            Value::Duration(_) => PropertyKind::Duration,
        }
    }

    /// The number that schema bounds are compared with: the value itself for
    /// integers, milliseconds for durations, the length in bytes for strings
    /// and bytes, the number of entries for multi-strings, 0/1 for booleans.
    pub fn magnitude(&self) -> i128 {
        match self {
            Value::Bool(b) => i128::from(*b),
            Value::U32(v) => i128::from(*v),
            Value::U64(v) => i128::from(*v),
            Value::I64(v) => i128::from(*v),
            Value::String(s) => s.len() as i128,
            Value::MultiString(v) => v.len() as i128,
            Value::Bytes(b) => b.len() as i128,
            Value::Duration(d) => d.as_millis() as i128,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::MultiString(v) => write!(f, "{v:?}"),
            Value::Bytes(v) => write!(f, "{} bytes", v.len()),
            Value::Duration(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v.into())
            }
        }
    )*};
}
value_from!(bool => Bool, u32 => U32, u64 => U64, i64 => I64, String => String,
    &str => String, Vec<String> => MultiString, Vec<u8> => Bytes, Duration => Duration);

/// A property list: values by name, kept sorted by name.
///
/// Typed getters return an error that names the property when it is missing
/// or of another kind, so an entry point can use `?` on them:
///
/// ```
/// use clusterkit::{Properties, Value};
///
/// let mut props = Properties::new();
/// props.insert("ttl", 300u32);
/// props.insert("zone", "example.test");
/// assert_eq!(props.u32("ttl").unwrap(), 300);
/// assert_eq!(props.str("zone").unwrap(), "example.test");
/// let err = props.str("ttl").unwrap_err();
/// assert_eq!(err.to_string(), "property `ttl`: expected a string, found a u32");
/// ```
///
/// A list that [`Schema::validate`] returned knows which of its properties
/// are secret ([`PropertySpec::secret`]); its `Debug` output shows
/// `<secret>` in their place. Equality and hashing look at the values only.
#[derive(Clone, Default)]
pub struct Properties {
    /// Sorted by name, names unique. A sorted vector rather than a
    /// `BTreeMap`: a list holds a handful of properties, and a host keeps
    /// several lists per resource (100 000 resources: a B-tree node is
    /// ~600 bytes even for one property).
    values: Vec<(String, Value)>,
    /// Names whose values `Debug` hides.
    secrets: BTreeSet<String>,
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        self.values == other.values
    }
}

impl Eq for Properties {}

impl std::hash::Hash for Properties {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.values.hash(state);
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hidden;
        impl fmt::Debug for Hidden {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<secret>")
            }
        }
        let mut map = f.debug_map();
        for (name, value) in &self.values {
            if self.secrets.contains(name.as_str()) {
                map.entry(name, &Hidden);
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

impl Properties {
    /// An empty list.
    pub fn new() -> Properties {
        Properties::default()
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let name = name.into();
        let value = value.into();
        match self.position(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.values[at].1, value)),
            Err(at) => {
                self.values.insert(at, (name, value));
                None
            }
        }
    }

    /// Where `name` is, or would be inserted.
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.values.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// Marks `name` as secret: `Debug` hides its value from now on, whatever
    /// it is set to. [`Schema::validate`] marks every property its schema
    /// declares secret.
    pub fn mark_secret(&mut self, name: impl Into<String>) {
        self.secrets.insert(name.into());
    }

    /// Whether `name` is marked secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.contains(name)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.position(name).ok()?;
        Some(self.values.remove(at).1)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|at| &self.values[at].1)
    }

    /// Whether `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// The number of properties.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The properties, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn typed<'a, T>(
        &'a self,
        name: &str,
        expected: PropertyKind,
        pick: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T, PropertyError> {
        let value = self
            .get(name)
            .ok_or_else(|| PropertyError::new(name, Problem::Missing))?;
        pick(value).ok_or_else(|| {
            PropertyError::new(
                name,
                Problem::WrongKind {
                    expected,
                    found: value.kind(),
                },
            )
        })
    }

    /// The boolean `name`.
    pub fn bool(&self, name: &str) -> Result<bool, PropertyError> {
        self.typed(name, PropertyKind::Bool, |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// The u32 `name`.
    pub fn u32(&self, name: &str) -> Result<u32, PropertyError> {
        self.typed(name, PropertyKind::U32, |v| match v {
            Value::U32(n) => Some(*n),
            _ => None,
        })
    }

    /// The u64 `name`.
    pub fn u64(&self, name: &str) -> Result<u64, PropertyError> {
        self.typed(name, PropertyKind::U64, |v| match v {
            Value::U64(n) => Some(*n),
            _ => None,
        })
    }

    /// The i64 `name`.
    pub fn i64(&self, name: &str) -> Result<i64, PropertyError> {
        self.typed(name, PropertyKind::I64, |v| match v {
            Value::I64(n) => Some(*n),
            _ => None,
        })
    }

    /// The string `name`.
    pub fn str(&self, name: &str) -> Result<&str, PropertyError> {
        self.typed(name, PropertyKind::String, |v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The multi-string `name`.
    pub fn strings(&self, name: &str) -> Result<&[String], PropertyError> {
        self.typed(name, PropertyKind::MultiString, |v| match v {
            Value::MultiString(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// The bytes `name`.
    pub fn bytes(&self, name: &str) -> Result<&[u8], PropertyError> {
        self.typed(name, PropertyKind::Bytes, |v| match v {
            Value::Bytes(b) => Some(b.as_slice()),
            _ => None,
        })
    }

    /// The duration `name`.
    pub fn duration(&self, name: &str) -> Result<Duration, PropertyError> {
        self.typed(name, PropertyKind::Duration, |v| match v {
            Value::Duration(d) => Some(*d),
            _ => None,
        })
    }
}

impl<N: Into<String>, V: Into<Value>> FromIterator<(N, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Properties {
        let mut props = Properties::new();
        for (n, v) in iter {
            props.insert(n, v);
        }
        // A list built whole is usually kept (a host holds one per resource).
        props.values.shrink_to_fit();
        props
    }
}
