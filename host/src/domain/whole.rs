//! JSON integers as JSON Schema counts them: `3` and `3.0` are the same
//! integer (a client whose language has only floating-point numbers sends
//! the latter), so both are read; a fraction, or a value outside the field's
//! range, is refused as the wrong type.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// An integer read from any JSON number with no fractional part.
pub struct Whole<T>(pub T);

struct WholeVisitor<T>(PhantomData<T>);

impl<'de, T: TryFrom<i64> + TryFrom<u64>> Visitor<'de> for WholeVisitor<T> {
    type Value = Whole<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "an integer from {}", std::any::type_name::<T>())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        T::try_from(value).map(Whole).map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        T::try_from(value).map(Whole).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        let refused = || E::invalid_value(de::Unexpected::Float(value), &self);
        // Below 2^63 (`i64::MAX as f64` rounds up to it) in magnitude, every
        // f64 without a fraction converts exactly; beyond it no field fits anyway.
        if value.fract() != 0.0 || !value.is_finite() || value.abs() >= i64::MAX as f64 {
            return Err(refused());
        }
        let whole = if value < 0.0 { T::try_from(value as i64).ok() } else { T::try_from(value as u64).ok() };
        whole.map(Whole).ok_or_else(refused)
    }
}

impl<'de, T: TryFrom<i64> + TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WholeVisitor(PhantomData))
    }
}

/// `deserialize_with` for an integer field.
pub fn whole<'de, D: Deserializer<'de>, T: TryFrom<i64> + TryFrom<u64>>(deserializer: D) -> Result<T, D::Error> {
    Whole::deserialize(deserializer).map(|Whole(value)| value)
}

/// `deserialize_with` for an optional integer field: `null` is absent.
pub fn optional_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    Option::<Whole<T>>::deserialize(deserializer).map(|value| value.map(|Whole(value)| value))
}

/// `deserialize_with` for an optional integer field that, when given, must
/// hold a number (`null` refused).
pub fn present_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    whole(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Line {
        #[serde(deserialize_with = "super::whole")]
        quantity: u32,
        #[serde(default, deserialize_with = "super::optional_whole")]
        product_id: Option<i64>,
    }

    fn read(json: &str) -> Result<(u32, Option<i64>), String> {
        serde_json::from_str::<Line>(json).map(|line| (line.quantity, line.product_id)).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers_and_nothing_else_is() {
        assert_eq!(read(r#"{"quantity": 3}"#), Ok((3, None)));
        assert_eq!(read(r#"{"quantity": 3.0, "product_id": -7.0}"#), Ok((3, Some(-7))));
        assert_eq!(read(r#"{"quantity": 4294967295.0, "product_id": null}"#), Ok((u32::MAX, None)));
        for refused in [
            r#"{"quantity": 3.5}"#,
            r#"{"quantity": -1}"#,
            r#"{"quantity": -1.0}"#,
            r#"{"quantity": 4294967296}"#,
            r#"{"quantity": 1e300}"#,
            r#"{"quantity": "3"}"#,
            r#"{"quantity": null}"#,
            r#"{"quantity": 1, "product_id": 9.3e18}"#,
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }
}
