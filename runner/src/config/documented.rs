//! Tier: unit (docs/testing.md). Every setting `RawConfig` accepts is documented in
//! deploy/runner.toml and in docs/configuration.md, and docs/configuration.md documents no
//! setting that does not exist.
//!
//! The list of settings is not written down a second time: it is read from serde itself. A
//! deserializer that answers every question with a placeholder walks `RawConfig` and records the
//! field names serde asks for (`deserialize_struct` is given them), section by section.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::RawConfig;

/// `(section, name)`: `("", "listen")`, `("api", "keys")`, `("peer.peers", "url")`.
type Setting = (String, String);

/// What a walk found: every field, and which of them are sections (tables) rather than settings.
#[derive(Default)]
struct Found {
    fields: BTreeSet<Setting>,
    sections: BTreeSet<String>,
}

/// Walks a `Deserialize` type, recording the fields it has under `section`.
struct Recorder<'a> {
    section: String,
    found: &'a RefCell<Found>,
}

impl<'a> Recorder<'a> {
    fn at(&self, section: String) -> Recorder<'a> {
        Recorder {
            section,
            found: self.found,
        }
    }
}

/// The fields of one struct, each given once with a placeholder value.
struct Fields<'a> {
    rec: Recorder<'a>,
    names: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, Error> = (*name).into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self.names[self.next];
        self.next += 1;
        self.rec
            .found
            .borrow_mut()
            .fields
            .insert((self.rec.section.clone(), name.to_owned()));
        let section = if self.rec.section.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.rec.section)
        };
        seed.deserialize(self.rec.at(section))
    }
}

/// A list of one element (for `Vec<RawPeerEntry>`: its fields are recorded once).
struct One<'a>(Option<Recorder<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|rec| seed.deserialize(rec)).transpose()
    }
}

/// No entries (maps of user keys, such as `[api.keys]`, have no fixed names).
struct NoEntries;

impl<'de> MapAccess<'de> for NoEntries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _seed: K,
    ) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _seed: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("no entries"))
    }
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.found
            .borrow_mut()
            .sections
            .insert(self.section.clone());
        visitor.visit_map(Fields {
            rec: self,
            names: fields,
            next: 0,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(One(Some(self)))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(NoEntries)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u16(0)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u32(0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u128 f32 char bytes byte_buf unit unit_struct newtype_struct
        tuple tuple_struct enum identifier ignored_any
    }
}

/// Every setting of `RawConfig` (a field that is not itself a table), as serde sees it.
fn settings() -> BTreeSet<Setting> {
    let found = RefCell::new(Found::default());
    let rec = Recorder {
        section: String::new(),
        found: &found,
    };
    RawConfig::deserialize(rec).expect("the recorder answers every question");
    let Found { fields, sections } = found.into_inner();
    let path = |(sec, name): &Setting| {
        if sec.is_empty() {
            name.clone()
        } else {
            format!("{sec}.{name}")
        }
    };
    fields
        .into_iter()
        .filter(|f| !sections.contains(&path(f)))
        .collect()
}

/// A TOML section header, also commented out: `[api]`, `# [peer]`, `# [[peer.dns]]  # …`.
fn section_header(line: &str) -> Option<&str> {
    let l = line.trim_start_matches(['#', ' ']);
    let inner = l.strip_prefix("[[").or_else(|| l.strip_prefix('['))?;
    let end = inner.find(']')?;
    Some(&inner[..end])
}

/// `(section, key)` of every setting line of deploy/runner.toml, commented out or not, and
/// every section header as a key of its parent (`[api.keys]` → `("api", "keys")`).
fn in_example() -> BTreeSet<Setting> {
    let text = include_str!("../../../deploy/runner.toml");
    let mut out = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(h) = section_header(line) {
            section = h.to_owned();
            if let Some((parent, name)) = h.rsplit_once('.') {
                out.insert((parent.to_owned(), name.to_owned()));
            }
            continue;
        }
        let l = line.trim_start_matches(['#', ' ']);
        if let Some((key, _)) = l.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                out.insert((section.clone(), key.to_owned()));
            }
        }
    }
    out
}

/// `(section, name)` of every row of the settings tables of docs/configuration.md: sections are
/// its `## `[name]`` headings (`## Top level`: the top) and `` `[[peer.dns]]` `` paragraphs.
fn in_reference() -> BTreeSet<Setting> {
    let text = include_str!("../../../docs/configuration.md");
    let mut out = BTreeSet::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = match h {
                "Top level" => Some(String::new()),
                _ => section_header(h.trim_matches('`')).map(str::to_owned),
            };
        } else if line.starts_with("`[") {
            section = section_header(line.trim_start_matches('`')).map(str::to_owned);
        } else if let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) {
            let name = row.split('`').next().unwrap_or_default();
            out.insert((s.clone(), name.to_owned()));
        }
    }
    out
}

fn show(s: &BTreeSet<Setting>) -> String {
    let names: Vec<String> = s
        .iter()
        .map(|(sec, n)| {
            if sec.is_empty() {
                n.clone()
            } else {
                format!("{sec}.{n}")
            }
        })
        .collect();
    names.join(", ")
}

#[test]
fn test_every_setting_is_documented() {
    let all = settings();
    // The walk reaches the top level, nested tables, maps and lists of tables.
    for (sec, name) in [
        ("", "listen"),
        ("api", "keys"),
        ("monitor", "ebpf"),
        ("peer.dns", "refresh_secs"),
    ] {
        let s = (sec.to_owned(), name.to_owned());
        assert!(all.contains(&s), "{sec}.{name} not in {}", show(&all));
    }
    assert!(
        !all.contains(&(String::new(), "api".to_owned())),
        "a table is not a setting"
    );

    let example = in_example();
    let missing: BTreeSet<Setting> = all.difference(&example).cloned().collect();
    assert!(
        missing.is_empty(),
        "not in deploy/runner.toml: {}",
        show(&missing)
    );

    let reference = in_reference();
    let missing: BTreeSet<Setting> = all.difference(&reference).cloned().collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {}",
        show(&missing)
    );
    let unknown: BTreeSet<Setting> = reference.difference(&all).cloned().collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents unknown settings: {}",
        show(&unknown)
    );
}
