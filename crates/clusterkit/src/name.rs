//! The rules for resource names.

use crate::Error;

/// The longest resource name, in bytes.
pub const MAX_RESOURCE_NAME_LEN: usize = 63;

/// Checks a resource name against the contract's rules: 1 to
/// [`MAX_RESOURCE_NAME_LEN`] bytes of ASCII letters, digits, `-`, `_` and
/// `.`, not starting with `.` or `-`.
///
/// Names end up in file names (state files, pidfiles), DNS labels, log
/// lines and command lines, so the alphabet is the one safe in all of them:
/// no path separators, no `..` at the start, no NUL, no spaces, nothing a
/// shell or a log parser treats specially. The C ABI's `open` refuses any
/// other name with `CK_E_INVALID_INPUT`; hosts check names in their
/// configuration with this same function.
///
/// ```
/// use clusterkit::{ErrorCode, validate_resource_name};
///
/// assert!(validate_resource_name("web-01.db_primary").is_ok());
/// let err = validate_resource_name("../../etc/evil").unwrap_err();
/// assert_eq!(err.code(), ErrorCode::InvalidInput);
/// assert_eq!(
///     err.to_string(),
///     "invalid input: resource name \"../../etc/evil\": must not start with `.` or `-`"
/// );
/// assert!(validate_resource_name("").is_err());
/// assert!(validate_resource_name("a\0b").is_err());
/// assert!(validate_resource_name(&"x".repeat(64)).is_err());
/// ```
pub fn validate_resource_name(name: &str) -> Result<(), Error> {
    let problem = if name.is_empty() {
        Some("is empty (names are 1 to 63 bytes)".to_owned())
    } else if name.len() > MAX_RESOURCE_NAME_LEN {
        Some(format!(
            "is {} bytes long; the limit is {MAX_RESOURCE_NAME_LEN}",
            name.len()
        ))
    } else if name.starts_with(['.', '-']) {
        Some("must not start with `.` or `-`".to_owned())
    } else {
        name.char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .map(|(at, c)| {
                format!(
                    "has {c:?} at byte {at}; allowed are ASCII letters, digits, `-`, `_` and `.`"
                )
            })
    };
    match problem {
        None => Ok(()),
        // Debug formatting escapes a NUL or a control character, so the
        // message itself stays one clean line.
        Some(why) => Err(Error::InvalidInput(format!(
            "resource name {:?}: {why}",
            truncate_for_message(name)
        ))),
    }
}

/// At most the first 80 characters, so a huge name does not fill an error.
fn truncate_for_message(name: &str) -> &str {
    match name.char_indices().nth(80) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet_and_refuses_the_rest() {
        for good in [
            "a",
            "A9",
            "web",
            "db_1.primary-x",
            "9lives",
            &"x".repeat(63),
        ] {
            validate_resource_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for (bad, why) in [
            ("", "is empty"),
            (".hidden", "must not start"),
            ("-opt", "must not start"),
            ("a/b", "has '/' at byte 1"),
            ("a b", "has ' ' at byte 1"),
            ("a\0b", "has '\\0' at byte 1"),
            ("é", "has 'é' at byte 0"),
            ("a\nb", "has '\\n' at byte 1"),
        ] {
            let e = validate_resource_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = "y".repeat(64);
        assert!(
            validate_resource_name(&long)
                .unwrap_err()
                .to_string()
                .contains("is 64 bytes long; the limit is 63")
        );
    }
}
