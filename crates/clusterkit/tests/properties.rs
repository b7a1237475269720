//! Property tests of the property-list encoding and of schema validation
//! (`docs/PROPERTY-LIST.md`; bad input gets an error, never a panic).
//!
//! The decoder is also fuzzed with libFuzzer: see `docs/FUZZING.md`. The
//! last test keeps the fuzzer's seed corpus current.

use std::collections::BTreeSet;
use std::time::Duration;

use clusterkit::properties::{MAX_ENCODED_LEN, MAX_NAME_LEN};
use clusterkit::{Apply, Properties, PropertyErrors, PropertyKind, PropertySpec, Schema, Value};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// The fixed header: magic, version, flags, entry count.
const HEADER_LEN: usize = 12;

// ---------------------------------------------------------------- strategies

/// Any string of at most `max_bytes` bytes of UTF-8, control characters,
/// NULs and astral characters included.
fn utf8_string(max_chars: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max_chars).prop_map(|chars| chars.into_iter().collect())
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate_to_bytes(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// A valid property name: 1 to 255 *bytes* of UTF-8. Short ASCII names make
/// collisions (and so ordering and duplicate handling) likely; long ones hit
/// the 255-byte limit with multi-byte characters straddling it.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-e_]{1,3}",
        3 => vec(any::<char>(), 1..=64).prop_map(|c| c.into_iter().collect::<String>()),
        // Up to 255 characters, so up to 1020 bytes before truncation.
        1 => vec(any::<char>(), 1..=255)
            .prop_map(|c| truncate_to_bytes(&c.into_iter().collect::<String>(), MAX_NAME_LEN)),
        // Exactly 255 bytes, ending in a character of 1 to 4 bytes.
        1 => any::<char>().prop_map(|c| {
            let mut s = "x".repeat(MAX_NAME_LEN - c.len_utf8());
            s.push(c);
            s
        }),
    ]
    .prop_filter("names are 1 to 255 bytes", |n| {
        !n.is_empty() && n.len() <= MAX_NAME_LEN
    })
}

/// A value of `kind`. Durations are whole milliseconds: the encoding's resolution.
fn value_of(kind: PropertyKind) -> BoxedStrategy<Value> {
    match kind {
        PropertyKind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        PropertyKind::U32 => any::<u32>().prop_map(Value::U32).boxed(),
        PropertyKind::U64 => any::<u64>().prop_map(Value::U64).boxed(),
        PropertyKind::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        PropertyKind::String => utf8_string(24).prop_map(Value::String).boxed(),
        PropertyKind::MultiString => vec(utf8_string(12), 0..6)
            .prop_map(Value::MultiString)
            .boxed(),
        PropertyKind::Bytes => vec(any::<u8>(), 0..48).prop_map(Value::Bytes).boxed(),
        PropertyKind::Duration => prop_oneof![any::<u64>(), 0u64..100_000, Just(u64::MAX)]
            .prop_map(|ms| Value::Duration(Duration::from_millis(ms)))
            .boxed(),
    }
}

fn kind() -> impl Strategy<Value = PropertyKind> {
    proptest::sample::select(PropertyKind::ALL.to_vec())
}

fn value() -> impl Strategy<Value = Value> {
    kind().prop_flat_map(value_of)
}

fn properties() -> impl Strategy<Value = Properties> {
    vec((name(), value()), 0..10).prop_map(|entries| entries.into_iter().collect())
}

// ------------------------------------------------------------------ helpers

/// The encoded entries of `bytes` (an input `Properties::decode` accepted),
/// in input order: (name, the entry's bytes). Written independently of the
/// decoder, from the layout only.
fn split_entries(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let count = u32_at(8);
    let mut pos = HEADER_LEN;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let start = pos;
        let name_len = bytes[pos] as usize;
        let name = &bytes[pos + 1..pos + 1 + name_len];
        pos += 1 + name_len;
        let kind = PropertyKind::from_u8(bytes[pos]).expect("decoded kind");
        pos += 1;
        pos += match kind {
            PropertyKind::Bool => 1,
            PropertyKind::U32 => 4,
            PropertyKind::U64 | PropertyKind::I64 | PropertyKind::Duration => 8,
            PropertyKind::String | PropertyKind::Bytes => 4 + u32_at(pos),
            PropertyKind::MultiString => {
                let n = u32_at(pos);
                let mut len = 4;
                for _ in 0..n {
                    len += 4 + u32_at(pos + len);
                }
                len
            }
        };
        entries.push((name, &bytes[start..pos]));
    }
    assert_eq!(pos, bytes.len(), "accepted input has trailing bytes");
    entries
}

/// A header for `count` entries.
fn header(count: usize) -> Vec<u8> {
    let mut h = b"CKPL\x01\x00\x00\x00".to_vec();
    h.extend_from_slice(&u32::try_from(count).unwrap().to_le_bytes());
    h
}

/// What every call of the decoder must satisfy, whatever `bytes` is: no
/// panic, an error that says where (inside the input), and a decoded list
/// that round-trips and re-encodes canonically.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match Properties::decode(bytes) {
        Err(e) => {
            prop_assert!(
                e.offset <= bytes.len(),
                "offset {} past {} bytes",
                e.offset,
                bytes.len()
            );
            prop_assert!(!e.reason.is_empty());
            let text = e.to_string();
            let prefix = format!("malformed property list at byte {}: ", e.offset);
            prop_assert!(text.starts_with(&prefix), "{text:?}");
        }
        Ok(props) => {
            let reencoded = props.encode();
            prop_assert_eq!(Properties::decode(&reencoded), Ok(props.clone()));
            // Only the order of entries can differ: the same entries, sorted.
            prop_assert_eq!(reencoded.len(), bytes.len());
            let input_entries = split_entries(bytes);
            let canonical = input_entries.windows(2).all(|w| w[0].0 < w[1].0);
            if canonical {
                prop_assert_eq!(&reencoded[..], bytes);
            } else {
                prop_assert_ne!(&reencoded[..], bytes);
                let mut sorted = input_entries.clone();
                sorted.sort();
                prop_assert_eq!(split_entries(&reencoded), sorted);
            }
        }
    }
    Ok(())
}

/// One change to an encoding, applied at a position chosen by `Index`.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// Overwrites four bytes with a length-like value: the decoder's
    /// counts and lengths are where over-reads and huge allocations hide.
    SetU32(Index, u32),
    /// Repeats a slice, as a duplicated entry would.
    Duplicate(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting_u32 = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(0x7f),
        Just(0xff),
        Just(0x100),
        Just(0xffff),
        Just(u32::MAX / 4),
        Just(u32::MAX - 1),
        Just(u32::MAX),
        0u32..600,
        any::<u32>(),
    ];
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), interesting_u32).prop_map(|(i, v)| Mutation::SetU32(i, v)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
        Mutation::SetByte(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        Mutation::Remove(i) if len > 0 => {
            bytes.remove(i.index(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Mutation::SetU32(i, v) if len >= 4 => {
            let at = i.index(len - 3);
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Duplicate(a, b) if len > 0 => {
            let (x, y) = (a.index(len), b.index(len));
            let slice = bytes[x.min(y)..=x.max(y)].to_vec();
            bytes.splice(x.max(y) + 1..x.max(y) + 1, slice);
        }
        _ => {}
    }
}

// ------------------------------------------------------------------- (a) round trip

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Any valid list round-trips exactly, and its encoding is canonical.
    #[test]
    fn every_valid_list_round_trips(props in properties()) {
        let bytes = props.encode();
        prop_assert_eq!(&bytes[..4], b"CKPL");
        prop_assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, props.len());
        prop_assert_eq!(Properties::decode(&bytes), Ok(props.clone()));
        let names: Vec<&[u8]> = split_entries(&bytes).into_iter().map(|(n, _)| n).collect();
        let expected: Vec<&[u8]> = props.iter().map(|(n, _)| n.as_bytes()).collect();
        prop_assert_eq!(names, expected);
    }

    /// Durations keep whole milliseconds: anything finer is truncated, and a
    /// duration beyond `u64::MAX` ms saturates.
    #[test]
    fn durations_keep_whole_milliseconds(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let props: Properties = [("d", d)].into_iter().collect();
        let decoded = Properties::decode(&props.encode()).unwrap();
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        prop_assert_eq!(decoded.duration("d").unwrap(), Duration::from_millis(ms));
    }

    // ------------------------------------------------------------- (c) canonical form

    /// The decoder accepts the entries in any order (the format does not
    /// require sorted names), decodes every order to the same list, and
    /// re-encodes it to the one canonical, name-sorted encoding.
    #[test]
    fn entry_order_does_not_matter_and_reencoding_is_canonical(
        (props, order) in properties().prop_flat_map(|p| {
            let order = Just((0..p.len()).collect::<Vec<_>>()).prop_shuffle();
            (Just(p), order)
        })
    ) {
        let canonical = props.encode();
        let entries = split_entries(&canonical);
        let mut shuffled = header(entries.len());
        for &i in &order {
            shuffled.extend_from_slice(entries[i].1);
        }
        prop_assert_eq!(Properties::decode(&shuffled), Ok(props.clone()));
        check_decode(&shuffled)?;
        let sorted = order.windows(2).all(|w| w[0] < w[1]);
        prop_assert_eq!(props.encode() == shuffled, sorted);
    }
}

// ------------------------------------------------------------- (b) never panics

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Fully random bytes: almost all fail at the header.
    #[test]
    fn decode_survives_random_bytes(bytes in vec(any::<u8>(), 0..256)) {
        check_decode(&bytes)?;
    }

    /// A valid header followed by random entries, with kinds and name
    /// lengths skewed to valid values so decoding gets past the header.
    #[test]
    fn decode_survives_random_bodies(
        count in prop_oneof![4 => 0u32..8, 1 => any::<u32>()],
        body in vec(prop_oneof![
            4 => any::<u8>(),
            2 => 0u8..10,
            1 => Just(0xffu8),
        ], 0..256),
    ) {
        let mut bytes = header(0);
        bytes[8..12].copy_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&body);
        check_decode(&bytes)?;
    }

    /// Valid encodings with a few mutations: bit flips, overwritten lengths,
    /// insertions, removals, truncations and duplicated slices.
    #[test]
    fn decode_survives_mutated_encodings(
        props in properties(),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = props.encode();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_decode(&bytes)?;
    }
}

proptest! {
    // Each case decodes every prefix: quadratic, so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every prefix of a valid encoding but the whole is rejected.
    #[test]
    fn every_truncation_is_rejected(props in properties()) {
        let bytes = props.encode();
        for end in 0..bytes.len() {
            let err = Properties::decode(&bytes[..end]);
            prop_assert!(err.is_err(), "prefix of {} of {} bytes decoded", end, bytes.len());
            check_decode(&bytes[..end])?;
        }
    }
}

// ------------------------------------------------------------- (d) schema validation

/// A bound on [`Value::magnitude`]: small ones bite on string lengths and
/// booleans, large ones on integers and durations.
fn bound() -> impl Strategy<Value = Option<i128>> {
    prop_oneof![
        3 => Just(None),
        2 => (-3i128..40).prop_map(Some),
        1 => any::<i64>().prop_map(|v| Some(i128::from(v))),
        1 => any::<u64>().prop_map(|v| Some(i128::from(v))),
        1 => prop_oneof![Just(i128::MIN), Just(i128::MAX)].prop_map(Some),
    ]
}

fn spec() -> impl Strategy<Value = PropertySpec> {
    let default = |kind| {
        prop_oneof![
            2 => Just(None),
            3 => value_of(kind).prop_map(Some),
            1 => value().prop_map(Some), // often of the wrong kind
        ]
    };
    (name(), kind())
        .prop_flat_map(move |(name, kind)| {
            (
                Just(name),
                Just(kind),
                default(kind),
                bound(),
                bound(),
                any::<(bool, bool, bool)>(),
            )
        })
        .prop_map(
            |(name, kind, default, min, max, (required, read_only, live))| {
                let mut s = PropertySpec::new(name, kind);
                s.default = default;
                s.min = min;
                s.max = max;
                s.required = required;
                s.read_only = read_only;
                s.apply = if live { Apply::Live } else { Apply::NextOnline };
                s
            },
        )
}

/// Every error names a property that is in the input or the schema, and
/// displays as `property \`NAME\`: REASON`.
fn check_errors(
    errors: &PropertyErrors,
    schema: &Schema,
    inputs: &[&Properties],
) -> Result<(), TestCaseError> {
    prop_assert!(errors.iter().next().is_some(), "an error without errors");
    for e in errors.iter() {
        let known =
            inputs.iter().any(|p| p.contains(&e.property)) || schema.spec(&e.property).is_some();
        prop_assert!(known, "error names {:?}, which is nowhere", e.property);
        let text = e.to_string();
        let prefix = format!("property `{}`: ", e.property);
        prop_assert!(text.starts_with(&prefix), "{text:?}");
        prop_assert!(text.len() > prefix.len(), "no reason in {text:?}");
    }
    let all = errors.to_string();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    prop_assert_eq!(all, lines.join("\n"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `validate` never panics; its errors name properties; it fails exactly
    /// for unknown, wrong-kind, out-of-bounds and missing required
    /// properties; on success it keeps the input and fills in defaults.
    #[test]
    fn validate_names_every_wrong_property(
        specs in vec(spec(), 0..8),
        input in properties(),
        changes in properties(),
    ) {
        let schema = Schema::new(specs);
        // Unchecked schemas (duplicate names, bad defaults) must not panic either.
        let _ = schema.check_self();
        match schema.validate(&input) {
            Err(errors) => {
                check_errors(&errors, &schema, &[&input])?;
                let names: Vec<&str> = errors.iter().map(|e| e.property.as_str()).collect();
                prop_assert!(names.windows(2).all(|w| w[0] <= w[1]), "unsorted: {names:?}");
            }
            Ok(output) => {
                for (name, value) in input.iter() {
                    prop_assert_eq!(output.get(name), Some(value));
                }
                for (name, _) in output.iter() {
                    prop_assert!(input.contains(name) || schema.spec(name).is_some());
                }
            }
        }
        match schema.check_update(&input, &changes) {
            Err(errors) => check_errors(&errors, &schema, &[&input, &changes])?,
            Ok((merged, _)) => {
                for (name, value) in changes.iter() {
                    prop_assert_eq!(merged.get(name), Some(value));
                }
            }
        }

        // A model of the rules, for schemas that pass their own check.
        if schema.check_self().is_ok() {
            let mut expected = BTreeSet::new();
            for (name, value) in input.iter() {
                if schema.spec(name).is_none_or(|s| s.check(value).is_err()) {
                    expected.insert(name.to_owned());
                }
            }
            for s in schema.specs() {
                if s.required && !input.contains(&s.name) {
                    expected.insert(s.name.to_string());
                }
            }
            let found: BTreeSet<String> = match schema.validate(&input) {
                Ok(output) => {
                    for s in schema.specs() {
                        if let (false, Some(default)) = (input.contains(&s.name), &s.default) {
                            prop_assert_eq!(output.get(&s.name), Some(default));
                        }
                    }
                    BTreeSet::new()
                }
                Err(errors) => errors.iter().map(|e| e.property.clone()).collect(),
            };
            prop_assert_eq!(found, expected);
        }
    }
}

// ------------------------------------------------- (d) properties given as text

/// Text a person might type for a property: arbitrary, number-like or hex-like.
fn property_text() -> impl Strategy<Value = String> {
    prop_oneof![
        utf8_string(16),
        "[+-]?[0-9]{0,21}(ms|s|m|h|x)?",
        "[0-9a-fA-F+-]{0,9}",
        "(true|false|yes|no|on|off|TRUE|1|0|2)",
        "[a-z,]{0,10}",
    ]
}

/// The text form `PropertySpec::parse` reads back as `value`, if there is one.
fn text_of(value: &Value) -> Option<String> {
    Some(match value {
        Value::Bool(_) | Value::U32(_) | Value::U64(_) | Value::I64(_) | Value::Duration(_) => {
            value.to_string()
        }
        Value::String(s) => s.clone(),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        // Commas separate entries, and "" is the empty list, not [""].
        Value::MultiString(l) if l.iter().any(|s| s.contains(',')) || l == &[""] => return None,
        Value::MultiString(l) => l.join(","),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `PropertySpec::parse` and `Schema::parse_assignments` never panic; a
    /// parsed value has the spec's kind and passes its bounds; every error
    /// names its property.
    #[test]
    fn parsing_text_never_panics_and_names_the_property(
        specs in vec(spec(), 1..6),
        texts in vec((name(), property_text()), 0..6),
    ) {
        for spec in &specs {
            for (_, text) in &texts {
                match spec.parse(text) {
                    Ok(value) => {
                        prop_assert_eq!(value.kind(), spec.kind);
                        prop_assert_eq!(spec.check(&value), Ok(()));
                    }
                    Err(e) => {
                        prop_assert_eq!(&e.property, spec.name.as_ref());
                        let prefix = format!("property `{}`: ", spec.name);
                        prop_assert!(e.to_string().starts_with(&prefix));
                    }
                }
            }
        }
        let schema = Schema::new(specs);
        // Half of the assignments name a declared property.
        let assignments: Vec<(&str, &str)> = texts
            .iter()
            .enumerate()
            .map(|(i, (name, text))| {
                let specs = schema.specs();
                let name = if i % 2 == 0 { specs[i % specs.len()].name.as_ref() } else { name };
                (name, text.as_str())
            })
            .collect();
        if let Err(errors) = schema.parse_assignments(assignments.iter().copied()) {
            let given: Properties = assignments.iter().map(|&(n, _)| (n, true)).collect();
            check_errors(&errors, &schema, &[&given])?;
        }
    }

    /// Every value of every kind reads back from its text form (durations
    /// as `Nms`, bytes as hex, multi-strings comma-separated).
    #[test]
    fn values_read_back_from_their_text(value in value()) {
        if let Some(text) = text_of(&value) {
            let spec = PropertySpec::new("p", value.kind());
            prop_assert_eq!(spec.parse(&text), Ok(value), "text {:?}", text);
        }
    }
}

// ----------------------------------------------------------------- seeds

/// Lists that cover every kind and the edges of the format; also the fuzzer's seeds.
fn seed_lists() -> Vec<(&'static str, Properties)> {
    let every_kind: Properties = [
        ("b", Value::Bool(true)),
        ("d", Value::Duration(Duration::from_millis(1500))),
        ("i", Value::I64(-7)),
        (
            "list",
            Value::MultiString(vec!["x".into(), String::new(), "é".into()]),
        ),
        ("raw", Value::Bytes(vec![0, 255, 1])),
        ("s", Value::String("héllo".into())),
        ("u", Value::U32(300)),
        ("w", Value::U64(u64::MAX)),
    ]
    .into_iter()
    .collect();
    let edges: Properties = [
        ("a".repeat(MAX_NAME_LEN), Value::String(String::new())),
        (
            format!("{}🦀", "x".repeat(MAX_NAME_LEN - 4)),
            Value::Bytes(Vec::new()),
        ),
        ("empty-list".into(), Value::MultiString(Vec::new())),
        (
            "max-ms".into(),
            Value::Duration(Duration::from_millis(u64::MAX)),
        ),
        ("min-i64".into(), Value::I64(i64::MIN)),
        ("no".into(), Value::Bool(false)),
        ("nul\0name".into(), Value::String("\0\n\u{10ffff}".into())),
    ]
    .into_iter()
    .collect();
    let ttl: Properties = [("ttl", 300u32)].into_iter().collect();
    vec![
        ("empty", Properties::new()),
        ("ttl", ttl),
        ("every-kind", every_kind),
        ("edges", edges),
    ]
}

#[test]
fn seed_lists_round_trip() {
    for (what, props) in seed_lists() {
        let bytes = props.encode();
        assert_eq!(Properties::decode(&bytes), Ok(props), "{what}");
        check_decode(&bytes).unwrap();
    }
}

/// The 16 MiB limit: an encoding of exactly `MAX_ENCODED_LEN` bytes decodes,
/// one byte more is refused at byte 0 before anything is read.
#[test]
fn encodings_up_to_the_size_limit_decode() {
    // Header, name length, "b", kind, u32 length: 19 bytes around the value.
    let props: Properties = [("b", vec![7u8; MAX_ENCODED_LEN - 19])]
        .into_iter()
        .collect();
    let mut bytes = props.encode();
    assert_eq!(bytes.len(), MAX_ENCODED_LEN);
    assert_eq!(Properties::decode(&bytes), Ok(props));
    bytes.push(0);
    let err = Properties::decode(&bytes).unwrap_err();
    assert_eq!(err.offset, 0);
    assert!(err.reason.contains("exceed the limit"), "{err}");
}

/// A valid but non-canonical encoding: `b = false` before `a = true`.
const UNSORTED: &[u8] = b"CKPL\x01\x00\x00\x00\x02\x00\x00\x00\x01b\x01\x00\x01a\x01\x01";

/// The decoder takes unsorted input; spelled out once, outside proptest.
#[test]
fn unsorted_input_decodes_and_reencodes_sorted() {
    let sorted = b"CKPL\x01\x00\x00\x00\x02\x00\x00\x00\x01a\x01\x01\x01b\x01\x00";
    let props = Properties::decode(UNSORTED).unwrap();
    assert_eq!(props.encode(), sorted.to_vec());
    assert_eq!(Properties::decode(sorted).unwrap(), props);
}

/// The checked-in fuzz seeds are exactly the lists above; regenerate them
/// with `CLUSTERKIT_BLESS=1 cargo test -p clusterkit --test properties fuzz_seeds`.
#[test]
fn fuzz_seeds_are_current() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/property_list");
    let mut expected: Vec<(String, Vec<u8>)> = seed_lists()
        .into_iter()
        .map(|(what, props)| (format!("{what}.ckpl"), props.encode()))
        .collect();
    expected.push(("unsorted.ckpl".into(), UNSORTED.to_vec()));
    let bless = std::env::var_os("CLUSTERKIT_BLESS").is_some();
    for (file, bytes) in expected {
        let path = dir.join(&file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "fuzz/seeds/property_list/{file} is stale; regenerate with \
                 CLUSTERKIT_BLESS=1 cargo test -p clusterkit --test properties fuzz_seeds"
            );
            assert!(Properties::decode(&bytes).is_ok(), "{file} must decode");
        }
    }
}
