//! Settings that take one of a few named values (`--mode auto`, `--match regex`): each value's
//! name and meaning said once, where the setting is defined, so that parsing, printing, the
//! command line's help and the man page all read the same list.

use std::fmt;

/// A setting with a few named values.
pub(crate) trait Choice: Copy + PartialEq + 'static {
    /// Every value, with its name and a sentence on what it means.
    const ALL: &'static [(Self, &'static str, &'static str)];

    /// This value's name.
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(value, _, _)| *value == self)
            .map(|(_, name, _)| *name)
            .expect("every value is listed")
    }

    /// The value named `text` (in any case).
    fn parse(text: &str) -> Result<Self, Unknown> {
        Self::ALL
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(text.trim()))
            .map(|(value, _, _)| *value)
            .ok_or_else(|| Unknown {
                given: text.to_string(),
                names: Self::ALL.iter().map(|(_, name, _)| *name).collect(),
            })
    }
}

/// A name that is none of a setting's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not one of {}", names.join(", "))]
pub(crate) struct Unknown {
    given: String,
    names: Vec<&'static str>,
}

/// Writes `value`'s name (for `Display` implementations).
pub(crate) fn write_name<T: Choice>(value: T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(value.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        Red,
        DeepBlue,
    }

    impl Choice for Colour {
        const ALL: &'static [(Self, &'static str, &'static str)] = &[
            (Colour::Red, "red", "Like a tomato"),
            (Colour::DeepBlue, "deep-blue", "Like the sea"),
        ];
    }

    #[test]
    fn values_are_named_and_parsed_by_their_names() {
        assert_eq!(Colour::DeepBlue.name(), "deep-blue");
        assert_eq!(Colour::parse("Deep-Blue"), Ok(Colour::DeepBlue));
        assert_eq!(
            Colour::parse("green").unwrap_err().to_string(),
            "'green' is not one of red, deep-blue"
        );
    }
}
