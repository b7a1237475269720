//! Property schemas and validation.

use std::borrow::Cow;
use std::fmt;

use super::{Properties, PropertyKind, Value};

/// When a change to a property takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Apply {
    /// The running resource applies the change at once.
    Live,
    /// The change applies after the next offline/online cycle.
    #[default]
    NextOnline,
}

/// What applying a property update requires; see [`Schema::check_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateEffect {
    /// Nothing changed.
    Unchanged,
    /// Every changed property applies live.
    Live,
    /// At least one changed property applies after the next online.
    NeedsRestart,
}

/// The declaration of one property: name, kind, default, bounds and flags.
///
/// Built with a constructor per kind and chained setters:
///
/// ```
/// use clusterkit::{Apply, PropertySpec};
/// use std::time::Duration;
///
/// let ttl = PropertySpec::u32("ttl")
///     .describe("Record TTL in seconds")
///     .default(300u32)
///     .range(1, 86_400)
///     .apply(Apply::Live);
/// let timeout = PropertySpec::duration("attempt_timeout").default(Duration::from_millis(500));
/// let zone = PropertySpec::string("zone").required().min(1);
/// # let _ = (ttl, timeout, zone);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertySpec {
    /// The property's name: 1 to [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes.
    pub name: Cow<'static, str>,
    /// One line for people: shown by `validate`, OCF meta-data and docs.
    pub description: Cow<'static, str>,
    /// The kind of value it holds.
    pub kind: PropertyKind,
    /// The value used when the property is not given.
    pub default: Option<Value>,
    /// The smallest allowed [`Value::magnitude`], inclusive.
    pub min: Option<i128>,
    /// The largest allowed [`Value::magnitude`], inclusive.
    pub max: Option<i128>,
    /// The property must be given (a default does not satisfy this).
    pub required: bool,
    /// The property is set when the resource is created and never changes.
    pub read_only: bool,
    /// When a change takes effect.
    pub apply: Apply,
    /// No two resources may share the value (a disk's path): a cluster
    /// manager refuses two resources with the same one (OCF `unique`).
    pub unique: bool,
    /// The value is a secret (a key, a password): see [`PropertySpec::secret`].
    pub secret: bool,
}

macro_rules! spec_constructors {
    ($($fn_name:ident => $kind:ident),* $(,)?) => {$(
        #[doc = concat!("A property of kind [`PropertyKind::", stringify!($kind), "`].")]
        pub fn $fn_name(name: impl Into<Cow<'static, str>>) -> PropertySpec {
            PropertySpec::new(name, PropertyKind::$kind)
        }
    )*};
}

impl PropertySpec {
    /// A property named `name` of `kind`, optional, writable, with no
    /// default or bounds, applied after the next online.
    pub fn new(name: impl Into<Cow<'static, str>>, kind: PropertyKind) -> PropertySpec {
        PropertySpec {
            name: name.into(),
            description: Cow::Borrowed(""),
            kind,
            default: None,
            min: None,
            max: None,
            required: false,
            read_only: false,
            apply: Apply::NextOnline,
            unique: false,
            secret: false,
        }
    }

    spec_constructors!(bool => Bool, u32 => U32, u64 => U64, i64 => I64, string => String,
        multi_string => MultiString, bytes => Bytes, duration => Duration);

    /// Sets the description.
    pub fn describe(mut self, description: impl Into<Cow<'static, str>>) -> PropertySpec {
        self.description = description.into();
        self
    }

    /// Sets the default value.
    pub fn default(mut self, value: impl Into<Value>) -> PropertySpec {
        self.default = Some(value.into());
        self
    }

    /// Sets the inclusive lower bound of [`Value::magnitude`].
    pub fn min(mut self, min: impl Into<i128>) -> PropertySpec {
        self.min = Some(min.into());
        self
    }

    /// Sets the inclusive upper bound of [`Value::magnitude`].
    pub fn max(mut self, max: impl Into<i128>) -> PropertySpec {
        self.max = Some(max.into());
        self
    }

    /// Sets both bounds.
    pub fn range(self, min: impl Into<i128>, max: impl Into<i128>) -> PropertySpec {
        self.min(min).max(max)
    }

    /// Marks the property as required.
    pub fn required(mut self) -> PropertySpec {
        self.required = true;
        self
    }

    /// Marks the property as read-only after creation.
    pub fn read_only(mut self) -> PropertySpec {
        self.read_only = true;
        self
    }

    /// Marks the property as unique: no two resources of the type may
    /// share its value.
    pub fn unique(mut self) -> PropertySpec {
        self.unique = true;
        self
    }

    /// Sets when a change takes effect.
    pub fn apply(mut self, apply: Apply) -> PropertySpec {
        self.apply = apply;
        self
    }

    /// Marks the value as a secret (a key, a password). Its value then
    /// never appears in a message clusterkit writes: [`Properties`] that a
    /// schema validated show `<secret>` in their `Debug` output, validation
    /// errors never echo it, the C ABI marks it (`CK_PROPERTY_EXTRA_SECRET`)
    /// so hosts keep it out of logs, events and listings, and
    /// [`Schema::check_self`] refuses a default for it (a default is
    /// published with the schema).
    ///
    /// ```
    /// use clusterkit::{Properties, PropertySpec, Schema};
    ///
    /// let schema = Schema::new(vec![
    ///     PropertySpec::string("user"),
    ///     PropertySpec::string("password").secret().min(8),
    /// ]);
    /// assert!(schema.spec("password").unwrap().is_secret());
    /// let mut input = Properties::new();
    /// input.insert("user", "admin");
    /// input.insert("password", "hunter2");
    /// let err = schema.validate(&input).unwrap_err().to_string();
    /// assert_eq!(err, "property `password`: the secret value is shorter than the minimum 8");
    /// input.insert("password", "correct horse");
    /// let valid = schema.validate(&input).unwrap();
    /// assert!(!format!("{valid:?}").contains("horse"));
    /// assert!(!schema.redact(&input).to_string().contains("horse"));
    /// ```
    pub fn secret(mut self) -> PropertySpec {
        self.secret = true;
        self
    }

    /// Whether the value is a secret; see [`PropertySpec::secret`].
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// `problem` as it may be shown: for a secret, without the value or its
    /// size in it.
    fn shown(&self, problem: Problem) -> Problem {
        if !self.secret {
            return problem;
        }
        let measure = match self.kind {
            PropertyKind::String | PropertyKind::Bytes | PropertyKind::MultiString => {
                ("shorter than", "longer than")
            }
            _ => ("below", "above"),
        };
        match problem {
            Problem::BelowMin { min, .. } => Problem::Invalid(format!(
                "the secret value is {} the minimum {min}",
                measure.0
            )),
            Problem::AboveMax { max, .. } => Problem::Invalid(format!(
                "the secret value is {} the maximum {max}",
                measure.1
            )),
            other => other,
        }
    }

    /// Parses `text` as a value of this spec's kind, for command lines,
    /// config files and environment variables (OCF passes every parameter as
    /// a string). Accepted forms:
    ///
    /// | kind | text |
    /// |---|---|
    /// | bool | `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` |
    /// | integers | decimal |
    /// | duration | milliseconds (`1500`) or with a unit: `1500ms`, `2s`, `5m`, `1h` |
    /// | string | as is |
    /// | multi-string | comma-separated; empty text is the empty list |
    /// | bytes | hexadecimal, two digits a byte |
    ///
    /// The value is also checked against the bounds.
    ///
    /// ```
    /// use clusterkit::{PropertySpec, Value};
    /// use std::time::Duration;
    ///
    /// let spec = PropertySpec::duration("timeout").max(60_000);
    /// assert_eq!(spec.parse("2s").unwrap(), Value::Duration(Duration::from_secs(2)));
    /// assert_eq!(spec.parse("2h").unwrap_err().to_string(),
    ///     "property `timeout`: 7200000 is above the maximum 60000");
    /// assert_eq!(spec.parse("soon").unwrap_err().to_string(),
    ///     "property `timeout`: \"soon\" is not a duration (milliseconds, or a number with ms, s, m or h)");
    /// ```
    pub fn parse(&self, text: &str) -> Result<Value, PropertyError> {
        let invalid = |what: &str| {
            let shown = if self.secret {
                "the secret value".to_owned()
            } else {
                format!("{text:?}")
            };
            PropertyError::invalid(self.name.as_ref(), format!("{shown} is not {what}"))
        };
        let value = match self.kind {
            PropertyKind::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Value::Bool(true),
                "false" | "no" | "off" | "0" => Value::Bool(false),
                _ => return Err(invalid("a boolean (true/false, yes/no, on/off, 1/0)")),
            },
            PropertyKind::U32 => Value::U32(
                text.parse()
                    .map_err(|_| invalid("an unsigned 32-bit integer"))?,
            ),
            PropertyKind::U64 => Value::U64(
                text.parse()
                    .map_err(|_| invalid("an unsigned 64-bit integer"))?,
            ),
            PropertyKind::I64 => Value::I64(
                text.parse()
                    .map_err(|_| invalid("a signed 64-bit integer"))?,
            ),
            PropertyKind::Duration => Value::Duration(parse_duration(text).ok_or_else(|| {
                invalid("a duration (milliseconds, or a number with ms, s, m or h)")
            })?),
            PropertyKind::String => Value::String(text.to_owned()),
            PropertyKind::MultiString if text.is_empty() => Value::MultiString(Vec::new()),
            PropertyKind::MultiString => {
                Value::MultiString(text.split(',').map(str::to_owned).collect())
            }
            PropertyKind::Bytes => {
                Value::Bytes(parse_hex(text).ok_or_else(|| invalid("hexadecimal bytes"))?)
            }
        };
        self.check(&value)
            .map_err(|problem| PropertyError::new(self.name.as_ref(), self.shown(problem)))?;
        Ok(value)
    }

    /// Checks one value against this spec's kind and bounds.
    pub fn check(&self, value: &Value) -> Result<(), Problem> {
        if value.kind() != self.kind {
            return Err(Problem::WrongKind {
                expected: self.kind,
                found: value.kind(),
            });
        }
        let magnitude = value.magnitude();
        if let Some(min) = self.min
            && magnitude < min
        {
            return Err(Problem::BelowMin {
                min,
                actual: magnitude,
            });
        }
        if let Some(max) = self.max
            && magnitude > max
        {
            return Err(Problem::AboveMax {
                max,
                actual: magnitude,
            });
        }
        Ok(())
    }
}

/// An integer value as another integer kind or a duration, if in range.
fn convert_integer(value: &Value, kind: PropertyKind) -> Option<Value> {
    let n: i128 = match value {
        Value::U32(v) => (*v).into(),
        Value::U64(v) => (*v).into(),
        Value::I64(v) => (*v).into(),
        _ => return None,
    };
    Some(match kind {
        PropertyKind::U32 => Value::U32(u32::try_from(n).ok()?),
        PropertyKind::U64 => Value::U64(u64::try_from(n).ok()?),
        PropertyKind::I64 => Value::I64(i64::try_from(n).ok()?),
        PropertyKind::Duration => {
            Value::Duration(std::time::Duration::from_millis(u64::try_from(n).ok()?))
        }
        _ => return None,
    })
}

fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms_per_unit = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(
        n.checked_mul(ms_per_unit)?,
    ))
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would accept a sign ("+f").
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// What is wrong with one property.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The schema has no property of this name.
    Unknown,
    /// A required property was not given.
    Missing,
    /// The value is of another kind.
    WrongKind {
        /// The schema's kind.
        expected: PropertyKind,
        /// The given value's kind.
        found: PropertyKind,
    },
    /// The value (or its length) is below the minimum.
    BelowMin {
        /// The inclusive minimum.
        min: i128,
        /// The value's magnitude.
        actual: i128,
    },
    /// The value (or its length) is above the maximum.
    AboveMax {
        /// The inclusive maximum.
        max: i128,
        /// The value's magnitude.
        actual: i128,
    },
    /// The property is read-only and the update changes it.
    ReadOnly,
    /// A type-specific rule rejected the value.
    Invalid(String),
}

fn article(kind: PropertyKind) -> &'static str {
    match kind {
        PropertyKind::I64 => "an",
        _ => "a",
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unknown => f.write_str("unknown property"),
            Problem::Missing => f.write_str("required but not given"),
            Problem::WrongKind { expected, found } => write!(
                f,
                "expected {} {expected}, found {} {found}",
                article(*expected),
                article(*found)
            ),
            Problem::BelowMin { min, actual } => {
                write!(f, "{actual} is below the minimum {min}")
            }
            Problem::AboveMax { max, actual } => {
                write!(f, "{actual} is above the maximum {max}")
            }
            Problem::ReadOnly => f.write_str("read-only: cannot be changed after creation"),
            Problem::Invalid(why) => f.write_str(why),
        }
    }
}

/// One property that failed validation, and why.
///
/// Displayed as ``property `name`: problem``, or just the problem when the
/// name is unknown (an error received across the C ABI that named none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PropertyError {
    /// The property's name.
    pub property: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.property.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "property `{}`: {}", self.property, self.problem)
        }
    }
}

impl PropertyError {
    /// An error for `property`.
    pub fn new(property: impl Into<String>, problem: Problem) -> PropertyError {
        PropertyError {
            property: property.into(),
            problem,
        }
    }

    /// A type-specific rejection of `property` with a free-text reason.
    pub fn invalid(property: impl Into<String>, why: impl Into<String>) -> PropertyError {
        PropertyError::new(property, Problem::Invalid(why.into()))
    }
}

/// Every property that failed validation, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PropertyErrors(pub Vec<PropertyError>);

impl PropertyErrors {
    /// The errors.
    pub fn iter(&self) -> impl Iterator<Item = &PropertyError> {
        self.0.iter()
    }

    /// The error for `property`, if there is one.
    pub fn for_property(&self, property: &str) -> Option<&PropertyError> {
        self.0.iter().find(|e| e.property == property)
    }

    /// Parses the [`Display`](fmt::Display) form back, as received across the
    /// C ABI. Reasons come back as [`Problem::Invalid`]; property names are
    /// kept; a line naming no property is kept whole. Parsing what this
    /// displays gives the same errors again.
    pub fn parse(text: &str) -> PropertyErrors {
        let errors = text
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                line.strip_prefix("property `")
                    .and_then(|rest| rest.split_once("`: "))
                    .map(|(name, why)| PropertyError::invalid(name, why))
                    .unwrap_or_else(|| PropertyError::invalid("", line))
            })
            .collect();
        PropertyErrors(errors)
    }
}

impl From<PropertyError> for PropertyErrors {
    fn from(e: PropertyError) -> PropertyErrors {
        PropertyErrors(vec![e])
    }
}

impl fmt::Display for PropertyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A property list shown with its secrets hidden; see [`Schema::redact`].
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a> {
    schema: &'a Schema,
    properties: &'a Properties,
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.properties.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if self.schema.is_secret(name) || self.properties.is_secret(name) {
                write!(f, "{name}=<secret>")?;
            } else {
                write!(f, "{name}={value}")?;
            }
        }
        Ok(())
    }
}

/// The properties a resource type accepts.
///
/// ```
/// use clusterkit::{Properties, PropertySpec, Schema};
///
/// let schema = Schema::new(vec![
///     PropertySpec::string("path").required(),
///     PropertySpec::u32("retries").default(3u32).max(10),
/// ]);
/// let mut input = Properties::new();
/// input.insert("path", "/srv/data");
/// let valid = schema.validate(&input).unwrap();
/// assert_eq!(valid.u32("retries").unwrap(), 3); // default filled in
///
/// input.insert("retries", 11u32);
/// input.insert("colour", "blue");
/// let errors = schema.validate(&input).unwrap_err();
/// assert_eq!(errors.to_string(), "property `colour`: unknown property\n\
///     property `retries`: 11 is above the maximum 10");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    specs: Vec<PropertySpec>,
}

impl Schema {
    /// A schema of `specs`, in the order given (kept for documentation).
    pub fn new(specs: Vec<PropertySpec>) -> Schema {
        Schema { specs }
    }

    /// The declared properties.
    pub fn specs(&self) -> &[PropertySpec] {
        &self.specs
    }

    /// The spec of `name`.
    pub fn spec(&self, name: &str) -> Option<&PropertySpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Whether `name` is declared secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.spec(name).is_some_and(PropertySpec::is_secret)
    }

    /// `properties` for showing to people (log lines, events, listings):
    /// `name=value` pairs separated by spaces, each secret value replaced
    /// by `<secret>`. Works on lists this schema has not validated, too.
    pub fn redact<'a>(&'a self, properties: &'a Properties) -> Redacted<'a> {
        Redacted {
            schema: self,
            properties,
        }
    }

    /// Checks the schema itself: names valid and unique, defaults and bounds
    /// consistent with kinds. Library loaders call this on every type.
    pub fn check_self(&self) -> Result<(), PropertyErrors> {
        let mut errors = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let name = spec.name.as_ref();
            if name.is_empty() {
                errors.push(PropertyError::invalid(
                    "",
                    format!(
                        "property #{}: the name is empty (names are 1 to {} bytes)",
                        i + 1,
                        super::MAX_NAME_LEN
                    ),
                ));
            } else if name.len() > super::MAX_NAME_LEN {
                errors.push(PropertyError::invalid(
                    name,
                    format!("name must be 1 to {} bytes", super::MAX_NAME_LEN),
                ));
            }
            if self.specs[..i].iter().any(|s| s.name == spec.name) {
                errors.push(PropertyError::invalid(name, "declared twice"));
            }
            if let Some(default) = &spec.default
                && let Err(problem) = spec.check(default)
            {
                errors.push(PropertyError::invalid(
                    name,
                    format!("default value is invalid: {problem}"),
                ));
            }
            if spec.secret && spec.default.is_some() {
                errors.push(PropertyError::invalid(
                    name,
                    "a secret cannot have a default: the default is published with the schema",
                ));
            }
            if let (Some(min), Some(max)) = (spec.min, spec.max)
                && min > max
            {
                errors.push(PropertyError::invalid(
                    name,
                    format!("minimum {min} is above maximum {max}"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PropertyErrors(errors))
        }
    }

    /// Parses `name=text` assignments (see [`PropertySpec::parse`]) into a
    /// property list, reporting every unknown name and unparsable value.
    /// The result still needs [`validate`](Self::validate) for required
    /// properties and defaults.
    pub fn parse_assignments<'a>(
        &self,
        assignments: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Properties, PropertyErrors> {
        let mut props = Properties::new();
        let mut errors = Vec::new();
        for (name, text) in assignments {
            match self.spec(name) {
                None => errors.push(PropertyError::new(name, Problem::Unknown)),
                Some(spec) => match spec.parse(text) {
                    Ok(value) => {
                        props.insert(name, value);
                    }
                    Err(e) => errors.push(e),
                },
            }
        }
        if errors.is_empty() {
            Ok(props)
        } else {
            Err(PropertyErrors(errors))
        }
    }

    /// Converts values to the kinds the schema declares, where that is
    /// lossless: text is parsed with [`PropertySpec::parse`] (so values from
    /// a command line, an environment or a config file can be given as
    /// strings), and integers convert between integer kinds and to
    /// durations (as milliseconds) when in range. Unknown names and values
    /// that cannot convert are left for [`validate`](Self::validate) to
    /// report, except text that does not parse, reported here.
    ///
    /// ```
    /// use clusterkit::{Properties, PropertySpec, Schema, Value};
    /// use std::time::Duration;
    ///
    /// let schema = Schema::new(vec![
    ///     PropertySpec::u32("ttl"),
    ///     PropertySpec::duration("timeout"),
    /// ]);
    /// let mut input = Properties::new();
    /// input.insert("ttl", 300i64);        // a TOML integer
    /// input.insert("timeout", "2s");      // an OCF parameter
    /// let typed = schema.coerce(&input).unwrap();
    /// assert_eq!(typed.get("ttl"), Some(&Value::U32(300)));
    /// assert_eq!(typed.get("timeout"), Some(&Value::Duration(Duration::from_secs(2))));
    /// ```
    pub fn coerce(&self, input: &Properties) -> Result<Properties, PropertyErrors> {
        let mut output = Properties::new();
        let mut errors = Vec::new();
        for (name, value) in input.iter() {
            let converted = match self.spec(name) {
                Some(spec) if spec.kind != value.kind() => match value {
                    Value::String(text) => match spec.parse(text) {
                        Ok(v) => v,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    },
                    other => convert_integer(other, spec.kind).unwrap_or_else(|| other.clone()),
                },
                _ => value.clone(),
            };
            output.insert(name, converted);
        }
        for spec in self.specs.iter().filter(|s| s.secret) {
            output.mark_secret(spec.name.as_ref());
        }
        if errors.is_empty() {
            Ok(output)
        } else {
            Err(PropertyErrors(errors))
        }
    }

    /// Validates `input`: every property known, of its kind and within its
    /// bounds, every required one present. Returns the input with defaults
    /// filled in, or every error found.
    pub fn validate(&self, input: &Properties) -> Result<Properties, PropertyErrors> {
        let mut errors = Vec::new();
        for (name, value) in input.iter() {
            match self.spec(name) {
                None => errors.push(PropertyError::new(name, Problem::Unknown)),
                Some(spec) => {
                    if let Err(problem) = spec.check(value) {
                        errors.push(PropertyError::new(name, spec.shown(problem)));
                    }
                }
            }
        }
        let mut output = input.clone();
        for spec in self.specs.iter().filter(|s| s.secret) {
            output.mark_secret(spec.name.as_ref());
        }
        for spec in &self.specs {
            if input.contains(&spec.name) {
                continue;
            }
            if spec.required {
                errors.push(PropertyError::new(spec.name.as_ref(), Problem::Missing));
            } else if let Some(default) = &spec.default {
                output.insert(spec.name.as_ref(), default.clone());
            }
        }
        if errors.is_empty() {
            // A host keeps this list for the resource's life: no spare room.
            output.values.shrink_to_fit();
            Ok(output)
        } else {
            errors.sort_by(|a, b| a.property.cmp(&b.property));
            Err(PropertyErrors(errors))
        }
    }

    /// Validates an update of a resource's `current` (validated) properties
    /// by `changes` (a partial list). Returns the merged, validated list and
    /// what applying it requires; changing a read-only property is an error.
    pub fn check_update(
        &self,
        current: &Properties,
        changes: &Properties,
    ) -> Result<(Properties, UpdateEffect), PropertyErrors> {
        let mut merged = current.clone();
        let mut effect = UpdateEffect::Unchanged;
        let mut errors = Vec::new();
        for (name, value) in changes.iter() {
            if current.get(name) == Some(value) {
                continue;
            }
            if let Some(spec) = self.spec(name) {
                if spec.read_only {
                    errors.push(PropertyError::new(name, Problem::ReadOnly));
                }
                effect = match (effect, spec.apply) {
                    (UpdateEffect::NeedsRestart, _) | (_, Apply::NextOnline) => {
                        UpdateEffect::NeedsRestart
                    }
                    _ => UpdateEffect::Live,
                };
            }
            merged.insert(name, value.clone());
        }
        let validated = self.validate(&merged);
        match validated {
            Ok(props) if errors.is_empty() => Ok((props, effect)),
            Ok(_) => Err(PropertyErrors(errors)),
            Err(PropertyErrors(more)) => {
                errors.extend(more);
                Err(PropertyErrors(errors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn schema() -> Schema {
        Schema::new(vec![
            PropertySpec::string("name").required().range(1, 63),
            PropertySpec::u32("ttl")
                .default(300u32)
                .range(1, 86_400)
                .apply(Apply::Live),
            PropertySpec::i64("offset").range(-5, 5),
            PropertySpec::duration("timeout").default(Duration::from_millis(500)),
            PropertySpec::string("owner").read_only(),
        ])
    }

    #[test]
    fn every_error_names_its_property() {
        let input: Properties = [
            ("ttl", Value::U32(0)),
            ("offset", Value::I64(-6)),
            ("timeout", Value::U32(4)),
            ("bogus", Value::Bool(true)),
        ]
        .into_iter()
        .collect();
        let errors = schema().validate(&input).unwrap_err();
        let text = errors.to_string();
        assert_eq!(
            text,
            "property `bogus`: unknown property\n\
             property `name`: required but not given\n\
             property `offset`: -6 is below the minimum -5\n\
             property `timeout`: expected a duration, found a u32\n\
             property `ttl`: 0 is below the minimum 1"
        );
        assert_eq!(PropertyErrors::parse(&text).to_string(), text);
        assert_eq!(
            PropertyErrors::parse(&text)
                .for_property("ttl")
                .unwrap()
                .problem,
            Problem::Invalid("0 is below the minimum 1".into())
        );
    }

    #[test]
    fn string_bounds_apply_to_length() {
        let mut p = Properties::new();
        p.insert("name", "");
        let e = schema().validate(&p).unwrap_err();
        assert_eq!(e.to_string(), "property `name`: 0 is below the minimum 1");
    }

    #[test]
    fn update_reports_effect_and_rejects_read_only() {
        let s = schema();
        let mut base = Properties::new();
        base.insert("name", "web");
        base.insert("owner", "node-a");
        let current = s.validate(&base).unwrap();

        let live: Properties = [("ttl", 60u32)].into_iter().collect();
        let (merged, effect) = s.check_update(&current, &live).unwrap();
        assert_eq!(effect, UpdateEffect::Live);
        assert_eq!(merged.u32("ttl").unwrap(), 60);

        let restart: Properties = [("name", "db")].into_iter().collect();
        assert_eq!(
            s.check_update(&current, &restart).unwrap().1,
            UpdateEffect::NeedsRestart
        );
        let same: Properties = [("name", "web")].into_iter().collect();
        assert_eq!(
            s.check_update(&current, &same).unwrap().1,
            UpdateEffect::Unchanged
        );

        let ro: Properties = [("owner", "node-b")].into_iter().collect();
        let e = s.check_update(&current, &ro).unwrap_err();
        assert_eq!(
            e.to_string(),
            "property `owner`: read-only: cannot be changed after creation"
        );
    }

    #[test]
    fn text_parses_by_kind() {
        let cases: Vec<(PropertySpec, &str, Value)> = vec![
            (PropertySpec::bool("b"), "Yes", Value::Bool(true)),
            (PropertySpec::bool("b"), "off", Value::Bool(false)),
            (PropertySpec::u32("u"), "42", Value::U32(42)),
            (
                PropertySpec::u64("w"),
                "18446744073709551615",
                Value::U64(u64::MAX),
            ),
            (PropertySpec::i64("i"), "-3", Value::I64(-3)),
            (
                PropertySpec::duration("d"),
                "1500",
                Value::Duration(Duration::from_millis(1500)),
            ),
            (
                PropertySpec::duration("d"),
                "5m",
                Value::Duration(Duration::from_secs(300)),
            ),
            (
                PropertySpec::string("s"),
                "a b",
                Value::String("a b".into()),
            ),
            (
                PropertySpec::multi_string("m"),
                "a,b",
                Value::MultiString(vec!["a".into(), "b".into()]),
            ),
            (
                PropertySpec::multi_string("m"),
                "",
                Value::MultiString(vec![]),
            ),
            (PropertySpec::bytes("x"), "00fF", Value::Bytes(vec![0, 255])),
        ];
        for (spec, text, expected) in cases {
            assert_eq!(spec.parse(text).unwrap(), expected, "{text}");
        }
        for (spec, text) in [
            (PropertySpec::bool("b"), "maybe"),
            (PropertySpec::u32("u"), "-1"),
            (PropertySpec::u32("u"), "4294967296"),
            (PropertySpec::duration("d"), "3 days"),
            (PropertySpec::duration("d"), "99999999999999999999h"),
            (PropertySpec::bytes("x"), "abc"),
            (PropertySpec::bytes("x"), "zz"),
            (PropertySpec::bytes("x"), "+f+f"),
        ] {
            let e = spec.parse(text).unwrap_err();
            assert_eq!(e.property, spec.name, "{text}");
            assert!(e.to_string().contains(&format!("{text:?} is not")), "{e}");
        }
        let e = schema()
            .parse_assignments([("ttl", "0"), ("nope", "1"), ("name", "web")])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "property `ttl`: 0 is below the minimum 1\nproperty `nope`: unknown property"
        );
    }

    #[test]
    fn a_secret_never_shows_in_errors_debug_or_redacted_text() {
        let schema = Schema::new(vec![
            PropertySpec::string("key").secret().range(4, 8),
            PropertySpec::u64("pin").secret().max(9999),
            PropertySpec::bytes("blob").secret(),
            PropertySpec::string("user"),
        ]);
        schema.check_self().unwrap();
        let mut input = Properties::new();
        input.insert("key", "s3cr3t-too-long");
        input.insert("pin", 123456u64);
        input.insert("user", "admin");
        let text = schema.validate(&input).unwrap_err().to_string();
        assert_eq!(
            text,
            "property `key`: the secret value is longer than the maximum 8\n\
             property `pin`: the secret value is above the maximum 9999"
        );
        for (name, text) in [("pin", "12x4"), ("blob", "zz-top")] {
            let e = schema
                .spec(name)
                .unwrap()
                .parse(text)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("property `{name}`: the secret value is not")),
                "{e}"
            );
            assert!(!e.contains(text), "{e}");
        }
        input.insert("key", "s3cr3t");
        input.insert("pin", 1234u64);
        let valid = schema.validate(&input).unwrap();
        let debug = format!("{valid:?}");
        assert_eq!(
            debug,
            r#"{"key": <secret>, "pin": <secret>, "user": String("admin")}"#
        );
        assert_eq!(
            schema.redact(&input).to_string(),
            r#"key=<secret> pin=<secret> user="admin""#
        );
        // Equality ignores the marks: a validated list equals its input.
        assert_eq!(valid, input);
        // Coerced text is marked too.
        let coerced = schema.coerce(&input).unwrap();
        assert!(coerced.is_secret("key") && !coerced.is_secret("user"));

        let with_default = Schema::new(vec![PropertySpec::string("key").secret().default("x")]);
        assert_eq!(
            with_default.check_self().unwrap_err().to_string(),
            "property `key`: a secret cannot have a default: the default is published with the schema"
        );
    }

    #[test]
    fn schema_checks_itself() {
        let bad = Schema::new(vec![
            PropertySpec::u32("a").default(7u32).max(5),
            PropertySpec::u32("a"),
            PropertySpec::bool(""),
            PropertySpec::u64("b").range(9, 1),
        ]);
        let e = bad.check_self().unwrap_err().to_string();
        assert!(
            e.contains("property `a`: default value is invalid: 7 is above the maximum 5"),
            "{e}"
        );
        assert!(e.contains("property `a`: declared twice"), "{e}");
        assert!(
            e.contains("property #3: the name is empty (names are 1 to 255 bytes)"),
            "{e}"
        );
        assert!(
            e.contains("property `b`: minimum 9 is above maximum 1"),
            "{e}"
        );
        schema().check_self().unwrap();
    }
}
