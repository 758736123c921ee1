//! The field names a `#[derive(Deserialize)]` struct declares, read from serde itself: so a
//! config section's or a restore's keys are declared once, in the struct, and the lists in
//! error messages ("it takes: ...") cannot drift from it.

use serde::de::{self, Deserializer, Visitor};

/// The fields of `T` as serde sees them (after renames).
pub fn fields_of<'de, T: de::Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder {
        fields: &mut fields,
    });
    fields
}

/// A deserializer that answers only `deserialize_struct`, by remembering the field list.
struct Recorder<'a> {
    fields: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Recorded;

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fields recorded")
    }
}

impl std::error::Error for Recorded {}

impl de::Error for Recorded {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Recorded
    }
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = Recorded;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Recorded> {
        Err(Recorded)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Recorded> {
        *self.fields = fields;
        Err(Recorded)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Example {
        a: u32,
        #[serde(rename = "b_key")]
        b: Option<String>,
    }

    #[test]
    fn reads_declared_fields() {
        assert_eq!(super::fields_of::<Example>(), &["a", "b_key"]);
    }
}
