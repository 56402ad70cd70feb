//! Strict reads of JSON that a decision depends on (P1.1; issue #13 items 5 and 14).
//!
//! `serde_json` reads duplicate object keys silently (a map keeps the last, a derived struct
//! refuses only its own fields), cannot hold `1e400` in a `Value`, and has one `f64` for every
//! number with a fraction or exponent. Where Warden compares client input against something
//! (an `Mcp-Param-*` header against an argument, an annotation against a schema) two readers must
//! never see two different values, so this module:
//!
//! * lists an object's members refusing duplicate keys ([`members`], keys compared unescaped);
//! * checks a whole value is readable by any JSON reader: no duplicate key at any depth, every
//!   number within `f64` range, every string valid Unicode (no lone surrogate) ([`readable`]);
//! * compares two JSON number texts exactly, as decimals ([`same_number`]): `42`, `42.0` and
//!   `4.2e1` are equal; `9007199254740992` and `9007199254740993` are not.
//!
//! It must not allocate per byte of input beyond the keys it returns, and never panics on input.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why JSON cannot be read strictly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StrictError(pub String);

/// An object key as written (borrowed when it has no escapes).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of an object, in order; `Ok(None)` when `raw` is not an object.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key '{k}'")));
                    }
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// An object's members, in order: each key (unescaped) with its raw value.
pub type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// The members of the object `raw`, refusing a duplicate key. `Ok(None)`: not an object.
pub fn members(raw: &RawValue) -> Result<Option<Fields<'_>>, StrictError> {
    if !raw.get().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str::<Members<'_>>(raw.get())
        .map(|m| Some(m.0))
        .map_err(|e| StrictError(e.to_string()))
}

/// The member `key` of the object `raw` (duplicates refused); `Ok(None)` when absent or `raw`
/// is not an object.
pub fn member<'a>(raw: &'a RawValue, key: &str) -> Result<Option<&'a RawValue>, StrictError> {
    Ok(members(raw)?.and_then(|m| m.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)))
}

/// Reads a whole value, refusing what some reader would read differently or not at all.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Readable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
                Ok(Readable)
            }
            // Strings arrive decoded: a lone surrogate escape is an error before this point.
            fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_unit<E>(self) -> Result<Readable, E> {
                Ok(Readable)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
                while seq.next_element::<Readable>()?.is_some() {}
                Ok(Readable)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
                let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key '{k}'")));
                    }
                    map.next_value::<Readable>()?;
                }
                Ok(Readable)
            }
        }
        d.deserialize_any(V)
    }
}

/// Is `raw` one JSON value every reader reads the same way? No duplicate key at any depth, no
/// number beyond `f64` range (`1e400`), no string with a lone surrogate escape (`"\ud800"`).
/// Nesting is bounded by `serde_json`'s recursion limit (and the input limits before it).
pub fn readable(raw: &str) -> Result<(), StrictError> {
    serde_json::from_str::<Readable>(raw)
        .map(|_| ())
        .map_err(|e| StrictError(e.to_string()))
}

/// A JSON number in canonical form: sign, significant digits (no leading or trailing zeros) and
/// exponent, the value being `digits × 10^exp`. Zero has no digits and no sign.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

/// Read a JSON number (RFC 8259 grammar exactly); `None` when `s` is not one or its exponent
/// does not fit an `i64`.
fn decimal(s: &str) -> Option<Decimal> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits_at = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int_end = digits_at(i);
    let int = &b[i..int_end];
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return None;
    }
    i = int_end;
    let mut frac: &[u8] = &[];
    if b.get(i) == Some(&b'.') {
        let end = digits_at(i + 1);
        frac = &b[i + 1..end];
        if frac.is_empty() {
            return None;
        }
        i = end;
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let neg_exp = b.get(i) == Some(&b'-');
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let end = digits_at(i);
        if end == i {
            return None;
        }
        for d in &b[i..end] {
            exp = exp.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
        }
        if neg_exp {
            exp = -exp;
        }
        i = end;
    }
    if i != b.len() {
        return None;
    }
    let mut all: Vec<u8> = Vec::with_capacity(int.len() + frac.len());
    all.extend_from_slice(int);
    all.extend_from_slice(frac);
    let lead = all.iter().take_while(|d| **d == b'0').count();
    let trail = all[lead..].iter().rev().take_while(|d| **d == b'0').count();
    if lead == all.len() {
        return Some(Decimal {
            negative: false,
            digits: Vec::new(),
            exp: 0,
        });
    }
    // value = int.frac × 10^exp = all × 10^(exp - |frac|); trailing zeros move into the exponent.
    let exp = exp
        .checked_sub(i64::try_from(frac.len()).ok()?)?
        .checked_add(i64::try_from(trail).ok()?)?;
    all.truncate(all.len() - trail);
    all.drain(..lead);
    Some(Decimal {
        negative,
        digits: all,
        exp,
    })
}

/// Are two JSON number texts the same number, exactly? Both must be JSON numbers; anything else
/// (or an exponent beyond `i64`) is not equal.
pub fn same_number(a: &str, b: &str) -> bool {
    match (decimal(a), decimal(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn members_refuse_duplicates_even_escaped() {
        let r = raw(r#"{"a":1,"b":{"c":2}}"#);
        let m = members(&r).unwrap().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].1.get(), r#"{"c":2}"#);
        assert!(members(&raw(r#"{"name":"echo","name":"evil"}"#)).is_err());
        assert!(members(&raw(r#"{"name":"echo","n\u0061me":"evil"}"#)).is_err());
        assert!(members(&raw("[1]")).unwrap().is_none());
        assert_eq!(member(&r, "b").unwrap().unwrap().get(), r#"{"c":2}"#);
        assert!(member(&r, "z").unwrap().is_none());
    }

    #[test]
    fn readable_refuses_what_readers_disagree_on() {
        for ok in [
            r#"{"a":[1,2.5,-3e2,"x\u00e9",true,null,{}]}"#,
            "9007199254740993",
            r#""\ud83d\ude00""#,
        ] {
            assert_eq!(readable(ok), Ok(()), "{ok}");
        }
        for bad in [
            "1e400",
            r#"{"n":-1e400}"#,
            r#""\ud800""#,
            r#"{"s":"\udc00x"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"o":{"k":1,"\u006b":2}}"#,
            r#"[{"x":1,"x":1}]"#,
        ] {
            assert!(readable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_compare_exactly_as_decimals() {
        for (a, b) in [
            ("42", "42"),
            ("42", "42.0"),
            ("42", "4.2e1"),
            ("4200", "42E2"),
            ("0.5", "5e-1"),
            ("-7", "-7.000"),
            ("0", "-0"),
            ("0", "0.0e9"),
            ("9007199254740993", "9007199254740993.0"),
            ("1e400", "10e399"),
        ] {
            assert!(same_number(a, b), "{a} == {b}");
            assert!(same_number(b, a), "{b} == {a}");
        }
        for (a, b) in [
            ("9007199254740992", "9007199254740993"),
            ("9007199254740993", "9007199254740993.0000001"),
            ("42", "-42"),
            ("42", "420"),
            ("1", "01"),
            ("1", "+1"),
            ("1", "1."),
            ("1", ".1e1"),
            ("1", " 1"),
            ("1", "1e"),
            ("1", "0x1"),
            ("1", "1e99999999999999999999"),
            ("NaN", "NaN"),
        ] {
            assert!(!same_number(a, b), "{a} != {b}");
        }
    }
}
