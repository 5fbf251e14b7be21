//! A task's comm held inline: every kernel event and every tracked process carries one, and a
//! heap `String` for each cost an allocation and a free per event (a third of the engine's
//! instructions went to the allocator).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes held inline: the kernel's comm is at most 15 bytes (TASK_COMM_LEN 16 with its NUL);
/// the room above that keeps a lossily decoded comm (U+FFFD is 3 bytes) whole in most cases.
const CAP: usize = 23;

/// A task comm as UTF-8, at most 23 bytes; longer text is cut at a character boundary.
/// Same size as a `String`, no allocation; reads as `&str`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm {
    len: u8,
    bytes: [u8; CAP],
}

impl Comm {
    pub fn new(s: &str) -> Self {
        let end = crate::char_boundary::floor_char_boundary(s, CAP);
        let mut bytes = [0u8; CAP];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Self {
            len: end as u8,
            bytes,
        }
    }

    /// From a kernel comm buffer: up to the first NUL, invalid UTF-8 replaced.
    pub fn from_kernel(raw: &[u8]) -> Self {
        let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
        match std::str::from_utf8(raw) {
            Ok(s) => Self::new(s),
            Err(_) => Self::new(&String::from_utf8_lossy(raw)),
        }
    }

    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..self.len as usize];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the fields are private and only `new` fills them, from a &str cut at a char
        // boundary, so the bytes are UTF-8 (checking again on every read cost more than the
        // rest of the type saved).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Comm {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Comm {
    fn from(s: String) -> Self {
        Self::new(&s)
    }
}

impl From<&String> for Comm {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<Comm> for String {
    fn from(c: Comm) -> Self {
        c.as_str().to_string()
    }
}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Comm {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed when the input allows, owned (escapes) otherwise.
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_kernel_comm_whole() {
        let c = Comm::from_kernel(b"runc:[2:INIT]\0\0\0");
        assert_eq!(c, "runc:[2:INIT]");
        assert_eq!(std::mem::size_of::<Comm>(), std::mem::size_of::<String>());
    }

    #[test]
    fn cuts_long_text_at_a_char_boundary() {
        let long = "é".repeat(20); // 40 bytes
        let c = Comm::new(&long);
        assert_eq!(c.len(), 22);
        assert!(long.starts_with(c.as_str()));
    }

    #[test]
    fn invalid_bytes_are_replaced_not_dropped() {
        let c = Comm::from_kernel(b"a\xffb\0");
        assert_eq!(c, "a\u{fffd}b");
    }

    #[test]
    fn round_trips_through_json_as_a_string() {
        let c = Comm::new("kubelet");
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, "\"kubelet\"");
        assert_eq!(serde_json::from_str::<Comm>(&j).unwrap(), c);
        assert_eq!(serde_json::from_str::<Comm>("\"a\\u0041\"").unwrap(), "aA");
    }
}
