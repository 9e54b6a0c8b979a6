//! A message read as a JSON object: its top-level members, each value kept as the application
//! wrote it (a [`RawValue`]), and the nesting limit past which a message stays a string.
//!
//! Only the top level is parsed: nested JSON is copied through, never re-serialized, and its
//! depth is checked by counting brackets rather than by building it.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Deeper JSON is kept as a string: Elasticsearch refuses objects nested more than 20 deep
/// (`index.mapping.depth.limit`), and a record it refuses is a record nobody can search.
pub const MAX_DEPTH: usize = 20;

/// One top-level member: its key (unescaped) and its value as written.
pub(super) type Member<'a> = (Cow<'a, str>, &'a RawValue);

/// The top-level members of a JSON object; values stay as the application wrote them.
pub(super) struct Fields<'a>(pub(super) Vec<Member<'a>>);

impl Fields<'_> {
    /// Whether the object nests at most [`MAX_DEPTH`] deep. Only values that are objects or
    /// arrays are scanned: most log fields are strings and numbers, and this runs per line.
    pub(super) fn within_depth(&self) -> bool {
        self.0.iter().all(|(_, v)| {
            let v = v.get().as_bytes();
            !matches!(v.first(), Some(b'{' | b'[')) || depth_within(v, MAX_DEPTH - 1)
        })
    }
}

/// Whether brackets outside strings nest at most `max` deep.
pub(super) fn depth_within(s: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in s {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// A key as it lies in the message where it has no escapes (almost always): serde's own
/// `Cow<str>` is always an owned copy, an allocation per key per line.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

/// The members of `s` when it is exactly one JSON object; `None` for anything else.
pub(super) fn parse_object(s: &str) -> Option<Fields<'_>> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Fields<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
            let mut v = Vec::with_capacity(map.size_hint().unwrap_or(16));
            while let Some(key) = map.next_key_seed(Key)? {
                v.push((key, map.next_value::<&'de RawValue>()?));
            }
            Ok(Fields(v))
        }
    }
    let mut de = serde_json::Deserializer::from_str(s);
    let fields = (&mut de).deserialize_map(V).ok()?;
    de.end().ok()?;
    Some(fields)
}
