//! Finding where a node of a YAML document starts, given its path.
//!
//! `serde_yaml` gives positions only in its errors, so a lookup re-reads the text
//! with a visitor that walks the path and raises an error on arrival; the error's
//! mark is the position of the node (or of its key). This costs one parse per
//! lookup, and lookups happen only for diagnostics, so a plan without errors never
//! pays for it.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping entry, by its key as text.
    Key(String),
    /// A sequence element.
    Index(usize),
}

/// A path from the document root.
pub type Path = Vec<Seg>;

const ARRIVED: &str = "smtp-plan: located";

/// The 1-based line and column where the node at `path` starts; with `at_key`,
/// where the key of its last (`Seg::Key`) segment starts instead.
pub fn locate(text: &str, path: &[Seg], at_key: bool) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Finder { path, at_key }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(ARRIVED) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
}

struct Finder<'p> {
    path: &'p [Seg],
    at_key: bool,
}

impl<'de> DeserializeSeed<'de> for Finder<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn arrived<E: de::Error>() -> Result<(), E> {
    Err(E::custom(ARRIVED))
}

macro_rules! scalar_arrives {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $ty) -> Result<(), E> {
            if self.path.is_empty() { arrived() } else { Ok(()) }
        })*
    };
}

impl<'de> Visitor<'de> for Finder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    scalar_arrives!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
        visit_str: &str, visit_i128: i128, visit_u128: u128);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            arrived()
        } else {
            Ok(())
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.path.split_first() {
            None => arrived(),
            Some((Seg::Index(i), rest)) => {
                for _ in 0..*i {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Ok(());
                    }
                }
                seq.next_element_seed(Finder {
                    path: rest,
                    at_key: self.at_key,
                })?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(())
            }
            Some((Seg::Key(_), _)) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(())
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (key, rest) = match self.path.split_first() {
            None => return arrived(),
            Some((Seg::Key(k), rest)) => (k, rest),
            Some((Seg::Index(_), _)) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        };
        let stop_at_key = rest.is_empty() && self.at_key;
        while let Some(matched) = map.next_key_seed(KeyMatcher {
            want: key,
            stop: stop_at_key,
        })? {
            if matched {
                map.next_value_seed(Finder {
                    path: rest,
                    at_key: self.at_key,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads one mapping key and says whether it is the wanted one; with `stop`, a
/// match ends the search right there, at the key's position.
struct KeyMatcher<'k> {
    want: &'k str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatcher<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeyMatcher<'_> {
    fn judge<E: de::Error>(&self, text: &str) -> Result<bool, E> {
        match (text == self.want, self.stop) {
            (true, true) => Err(E::custom(ARRIVED)),
            (matched, _) => Ok(matched),
        }
    }
}

impl<'de> Visitor<'de> for KeyMatcher<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.judge(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.judge(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.judge(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.judge(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.judge(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.judge("null")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version: 1\ntests:\n  - name: a\n    steps:\n      - ehlo: x\n      - rcpt_too: y\n        expect: 250\n";

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn finds_values_and_keys() {
        assert_eq!(locate(DOC, &[k("version")], false), Some((1, 10)));
        assert_eq!(locate(DOC, &[k("version")], true), Some((1, 1)));
        let step = [k("tests"), Seg::Index(0), k("steps"), Seg::Index(1)];
        assert_eq!(locate(DOC, &step, false), Some((6, 9)));
        let key = [&step[..], &[k("rcpt_too")]].concat();
        assert_eq!(locate(DOC, &key, true), Some((6, 9)));
        let expect = [&step[..], &[k("expect")]].concat();
        assert_eq!(locate(DOC, &expect, false), Some((7, 17)));
    }

    #[test]
    fn missing_paths_give_none() {
        assert_eq!(locate(DOC, &[k("nope")], false), None);
        assert_eq!(locate(DOC, &[k("tests"), Seg::Index(9)], false), None);
    }

    #[test]
    fn root_is_found() {
        assert_eq!(locate(DOC, &[], false), Some((1, 1)));
    }
}
