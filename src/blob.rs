//! Blobs and their refs: a ref is the SHA-256 of a blob's bytes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A blob's content: cheap to clone and to slice.
pub type Blob = bytes::Bytes;

/// The address of a blob: the SHA-256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ref(pub [u8; 32]);

/// A malformed ref: wrong length or not hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// The text form is not 64 hex digits.
    #[error("malformed ref {text:?}: want 64 hex digits")]
    BadHex {
        /// The text that was given (cut to a readable length).
        text: String,
    },
    /// The binary form is not 32 bytes.
    #[error("malformed ref: want 32 bytes, got {len}")]
    BadLength {
        /// The number of bytes given.
        len: usize,
    },
}

impl Ref {
    /// The zero ref, meaning "no ref".
    pub const ZERO: Ref = Ref([0; 32]);

    /// The ref of `data`.
    pub fn of(data: &[u8]) -> Ref {
        Ref(Sha256::digest(data).into())
    }

    /// Whether this is the zero ref.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// The ref's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ref from exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Ref, RefError> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| RefError::BadLength { len: b.len() })?;
        Ok(Ref(arr))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The ref from 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Ref, RefError> {
        let bad = || RefError::BadHex {
            text: s.chars().take(80).collect(),
        };
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Ref(out))
    }

    /// The ref that follows this one in byte order, or `None` after all ones.
    pub fn successor(&self) -> Option<Ref> {
        let mut b = self.0;
        for i in (0..32).rev() {
            if b[i] == 0xff {
                b[i] = 0;
            } else {
                b[i] += 1;
                return Some(Ref(b));
            }
        }
        None
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ref({})", self.to_hex())
    }
}

impl FromStr for Ref {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Ref, RefError> {
        Ref::from_hex(s)
    }
}

impl TryFrom<&[u8]> for Ref {
    type Error = RefError;
    fn try_from(b: &[u8]) -> Result<Ref, RefError> {
        Ref::from_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let r = Ref::of(b"abc");
        assert_eq!(
            r.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Ref::from_hex(&r.to_hex()).unwrap(), r);
        assert_eq!(Ref::from_hex(&r.to_hex().to_uppercase()).unwrap(), r);
        assert!(matches!(Ref::from_hex("abc"), Err(RefError::BadHex { .. })));
        let bad = "zz".repeat(32);
        assert!(matches!(Ref::from_hex(&bad), Err(RefError::BadHex { .. })));
        assert!(matches!(
            Ref::from_slice(&[1, 2]),
            Err(RefError::BadLength { len: 2 })
        ));
        assert!(Ref::ZERO.is_zero());
        assert!(!r.is_zero());
    }

    #[test]
    fn successor_orders() {
        let r = Ref::ZERO;
        let s = r.successor().unwrap();
        assert!(s > r);
        assert_eq!(s.0[31], 1);
        let mut b = [0u8; 32];
        b[31] = 0xff;
        let s = Ref(b).successor().unwrap();
        assert_eq!(s.0[30], 1);
        assert_eq!(s.0[31], 0);
        assert_eq!(Ref([0xff; 32]).successor(), None);
    }
}
