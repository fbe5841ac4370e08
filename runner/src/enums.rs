//! One source of truth for enums whose variants are also needed as a list.
//!
//! Owns: [`enum_with_all!`](crate::enums::enum_with_all), which declares a fieldless enum
//! together with `ALL`, its variants in declaration order, so that no list of the variants is kept
//! by hand beside the enum (a hand-kept list once lost two of the jail's setup steps). Must not:
//! know any enum of the daemon; names, labels and wire codes stay exhaustive `match`es next to
//! each enum, which the compiler checks.

/// Declares a fieldless enum and `pub const ALL: &[Self]` (same visibility as the enum) with
/// every variant in declaration order. Attributes on the enum and on the variants are kept.
///
/// ```ignore
/// enum_with_all! {
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub(crate) enum Kind { A, B }
/// }
/// assert_eq!(Kind::ALL, &[Kind::A, Kind::B]);
/// ```
macro_rules! enum_with_all {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order (generated with the enum, never out of date).
            $vis const ALL: &'static [$name] = &[$($name::$variant),+];
        }
    };
}

pub(crate) use enum_with_all;

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md).
    enum_with_all! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        enum Kind {
            /// Documented variants keep their docs.
            A,
            B,
            C,
        }
    }

    #[test]
    fn test_all_in_declaration_order() {
        assert_eq!(Kind::ALL, &[Kind::A, Kind::B, Kind::C]);
        assert!(Kind::ALL.iter().enumerate().all(|(i, k)| *k as usize == i));
    }
}
