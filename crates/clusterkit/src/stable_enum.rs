//! The macro behind every enum whose numbers and names are stable.

/// Defines an enum whose variants carry stable numbers and stable names,
/// with `ALL`, `from_<repr>` and `name`.
///
/// Such enums cross the C ABI, the monitor protocol or `events.jsonl`, where
/// a number or name, once given, is never changed or reused. Writing the
/// number and the name beside each variant keeps the three lists (the
/// variants, `ALL` and the `name` match) from drifting apart, and the
/// compiler rejects a number given twice.
///
/// `enum Name: u32 { .. }` also emits `#[repr(u32)]` and a
/// `from_u32(u32) -> Option<Name>`; `u8` and `i32` work alike. `ALL` is an
/// array in numeric order. Appending `, non_exhaustive` to the header marks
/// the enum `#[non_exhaustive]` and makes `ALL` a `&'static [Name]`, whose
/// type does not change when a variant is added.
///
/// ```
/// clusterkit::stable_enum! {
///     /// A colour.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Colour: u8 {
///         /// The sky.
///         Blue = 1, "blue";
///         /// The grass.
///         Green = 2, "green";
///     }
/// }
///
/// assert_eq!(Colour::ALL, [Colour::Blue, Colour::Green]);
/// assert_eq!(Colour::from_u8(2), Some(Colour::Green));
/// assert_eq!(Colour::from_u8(3), None);
/// assert_eq!(Colour::Green.name(), "green");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! stable_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident: $repr:ident {
            $($(#[$vmeta:meta])* $Variant:ident = $number:literal, $name:literal;)+
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        $vis enum $Name {
            $($(#[$vmeta])* $Variant = $number,)+
        }

        impl $Name {
            /// Every value, in numeric order.
            $vis const ALL: [$Name; [$($crate::stable_enum!(@unit $Variant)),+].len()] =
                [$($Name::$Variant),+];
        }

        $crate::stable_enum!(@common $vis $Name $repr; $($Variant $name)+);
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident: $repr:ident, non_exhaustive {
            $($(#[$vmeta:meta])* $Variant:ident = $number:literal, $name:literal;)+
        }
    ) => {
        $(#[$meta])*
        #[non_exhaustive]
        #[repr($repr)]
        $vis enum $Name {
            $($(#[$vmeta])* $Variant = $number,)+
        }

        impl $Name {
            /// Every value, in numeric order.
            $vis const ALL: &'static [$Name] = &[$($Name::$Variant),+];
        }

        $crate::stable_enum!(@common $vis $Name $repr; $($Variant $name)+);
    };
    (@common $vis:vis $Name:ident $repr:ident; $($Variant:ident $name:literal)+) => {
        impl $Name {
            $crate::stable_enum!(@from $vis $Name $repr);

            /// The stable lower-case name.
            $vis const fn name(self) -> &'static str {
                match self {
                    $($Name::$Variant => $name,)+
                }
            }
        }
    };
    (@from $vis:vis $Name:ident u8) => {
        /// The value for its number, or `None` for an unknown number.
        $vis fn from_u8(number: u8) -> Option<$Name> {
            Self::ALL.iter().copied().find(|v| *v as u8 == number)
        }
    };
    (@from $vis:vis $Name:ident u32) => {
        /// The value for its number, or `None` for an unknown number.
        $vis fn from_u32(number: u32) -> Option<$Name> {
            Self::ALL.iter().copied().find(|v| *v as u32 == number)
        }
    };
    (@from $vis:vis $Name:ident i32) => {
        /// The value for its number, or `None` for an unknown number.
        $vis fn from_i32(number: i32) -> Option<$Name> {
            Self::ALL.iter().copied().find(|v| *v as i32 == number)
        }
    };
    (@unit $Variant:ident) => {
        ()
    };
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::{ErrorCode, Level, ResourceState};

    /// Numbers the compiler checks (a repeated discriminant does not
    /// compile); a repeated name it does not.
    fn unique<T>(names: impl Iterator<Item = &'static str>, all: &[T]) {
        assert_eq!(names.collect::<HashSet<_>>().len(), all.len());
    }

    #[test]
    fn numbers_round_trip_and_names_are_unique() {
        for s in ResourceState::ALL {
            assert_eq!(ResourceState::from_u32(s as u32), Some(s));
        }
        for l in Level::ALL {
            assert_eq!(Level::from_u32(l as u32), Some(l));
        }
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_i32(c.as_i32()), Some(c));
        }
        assert_eq!(ResourceState::from_u32(0), None);
        assert_eq!(Level::from_u32(6), None);
        unique(
            ResourceState::ALL.map(ResourceState::name).into_iter(),
            &ResourceState::ALL,
        );
        unique(Level::ALL.map(Level::name).into_iter(), &Level::ALL);
        unique(
            ErrorCode::ALL.map(ErrorCode::name).into_iter(),
            &ErrorCode::ALL,
        );
        assert_eq!(ResourceState::OnlinePending.name(), "online_pending");
        assert_eq!(ErrorCode::InvalidProperties.name(), "invalid_properties");
        assert_eq!(Level::Warn.to_string(), "warn");
    }
}
