//! A store's settings: what every writer of the store must agree on, chosen when
//! the store is created and recorded in it. Today that is one thing, how content
//! is cut into chunks ([`Chunking`]).
//!
//! A store without a record (every store Go made, every store made before
//! settings existed) has Go's settings ([`StoreSettings::GO`]), so nothing
//! changes under it. A store created by anchorfs gets [`StoreSettings::NEW_STORE`]
//! recorded, or what `anchorfs init` was told.
//!
//! The record is text, versioned by its first line, one `key value` per line
//! after it (`#` comments and blank lines allowed):
//!
//! ```text
//! anchorfs-settings 1
//! chunk-bits 18
//! chunk-min-size 65536
//! chunk-fanout 8
//! ```
//!
//! [`StoreSettings::decode`] takes any bytes and never panics: a record that is
//! not this is a [`SettingsError`] saying what is wrong. An unknown version or
//! key is refused rather than skipped, since a writer that ignored a setting
//! would write what the store's other writers do not expect.
//!
//! Locks: none.

use std::fmt;

/// The first line of a record, before its version number.
pub const MAGIC: &str = "anchorfs-settings";

/// The version this code writes and reads.
pub const VERSION: u32 = 1;

/// The most bytes a record may have.
pub const MAX_RECORD: usize = 4096;

/// The smallest average chunk `anchorfs init --chunk-size` takes: 2^12, 4 KiB.
pub const MIN_CHUNK_BITS: u32 = 12;

/// The largest average chunk: 2^22, 4 MiB. Chunk lengths are spread
/// exponentially about the average, so even at this average a chunk larger
/// than a blob may be (`MAX_BLOB_SIZE`, 64 times as much) is never seen in practice.
pub const MAX_CHUNK_BITS: u32 = 22;

/// The largest fan-out a record may give.
pub const MAX_FANOUT: u32 = 32;

/// How writers cut content into chunks and shape the tree over them: the
/// parameters of the split writer (`split::SplitOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// A chunk ends where the rolling checksum has at least this many trailing
    /// zero bits: chunks average about 2^bits bytes beyond `min_size`.
    pub bits: u32,
    /// No chunk ends before it has this many bytes (the last may be shorter).
    pub min_size: u32,
    /// Extra trailing zeros divided by this give a chunk's tree level.
    pub fanout: u32,
}

impl Chunking {
    /// Go's defaults: 16 bits (64 KiB), minimum 1 KiB, fan-out 8.
    pub const GO: Chunking = Chunking {
        bits: 16,
        min_size: 1024,
        fanout: 8,
    };

    /// The default for new stores: 18 bits (256 KiB), minimum 64 KiB, fan-out 8.
    /// Large files are a few hundred chunks per GiB, and a file smaller than the
    /// minimum is one chunk (see docs/PERFORMANCE.md for what was measured).
    pub const NEW_STORE: Chunking = Chunking::for_bits(18);

    /// Chunks averaging 2^bits bytes, with a minimum of a quarter of that and
    /// fan-out 8 (no check of `bits`: see [`Chunking::for_average`]).
    pub const fn for_bits(bits: u32) -> Chunking {
        Chunking {
            bits,
            min_size: (1u32 << bits) / 4,
            fanout: 8,
        }
    }

    /// Chunks averaging `size` bytes, as `anchorfs init --chunk-size` takes it: a
    /// power of two from 4 KiB to 4 MiB.
    pub fn for_average(size: u64) -> Result<Chunking, SettingsError> {
        let (lo, hi) = (1u64 << MIN_CHUNK_BITS, 1u64 << MAX_CHUNK_BITS);
        if !size.is_power_of_two() || !(lo..=hi).contains(&size) {
            return Err(SettingsError::ChunkSize { size });
        }
        Ok(Chunking::for_bits(size.trailing_zeros()))
    }

    /// The average chunk size this aims at, 2^bits bytes (the minimum adds to it).
    pub fn average(&self) -> u64 {
        1u64 << self.bits.min(63)
    }

    /// Checks that a record may give these.
    pub fn check(&self) -> Result<(), SettingsError> {
        let bad = |key: &'static str, value: u32, want: String| SettingsError::BadValue {
            key,
            value: value.to_string(),
            want,
        };
        if !(MIN_CHUNK_BITS..=MAX_CHUNK_BITS).contains(&self.bits) {
            return Err(bad(
                "chunk-bits",
                self.bits,
                format!("{MIN_CHUNK_BITS} to {MAX_CHUNK_BITS}"),
            ));
        }
        if u64::from(self.min_size) > 4 * self.average() {
            return Err(bad(
                "chunk-min-size",
                self.min_size,
                format!("at most {} (4 x 2^chunk-bits)", 4 * self.average()),
            ));
        }
        if !(1..=MAX_FANOUT).contains(&self.fanout) {
            return Err(bad(
                "chunk-fanout",
                self.fanout,
                format!("1 to {MAX_FANOUT}"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Chunking {
    /// `256 KiB average (bits 18, minimum 64 KiB, fan-out 8)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} average (bits {}, minimum {}, fan-out {})",
            size_text(self.average()),
            self.bits,
            size_text(u64::from(self.min_size)),
            self.fanout
        )
    }
}

/// `256 KiB`, `1 MiB`, `1000 bytes`.
fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Everything recorded about a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// How content is cut into chunks.
    pub chunking: Chunking,
}

impl StoreSettings {
    /// What a store without a record has: Go's.
    pub const GO: StoreSettings = StoreSettings {
        chunking: Chunking::GO,
    };

    /// What a store anchorfs creates gets unless told otherwise.
    pub const NEW_STORE: StoreSettings = StoreSettings {
        chunking: Chunking::NEW_STORE,
    };

    /// The settings in force given what a store has recorded (`None`: Go's).
    pub fn in_force(recorded: Option<StoreSettings>) -> StoreSettings {
        recorded.unwrap_or(StoreSettings::GO)
    }

    /// The record's bytes (see the module docs).
    pub fn encode(&self) -> String {
        let c = &self.chunking;
        format!(
            "{MAGIC} {VERSION}\n\
             # How writers cut content into chunks: a chunk ends where a rolling\n\
             # checksum has chunk-bits trailing zeros (about 2^chunk-bits bytes).\n\
             chunk-bits {}\n\
             chunk-min-size {}\n\
             chunk-fanout {}\n",
            c.bits, c.min_size, c.fanout
        )
    }

    /// Reads a record; any bytes that are not one are an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<StoreSettings, SettingsError> {
        if bytes.len() > MAX_RECORD {
            return Err(SettingsError::TooLarge { len: bytes.len() });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SettingsError::NotText)?;
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let header = lines.next().map(|(_, l)| l).unwrap_or("");
        let version = match header.split_whitespace().collect::<Vec<_>>()[..] {
            [MAGIC, v] => v,
            _ => {
                return Err(SettingsError::NoHeader {
                    found: clip(header),
                })
            }
        };
        if version != VERSION.to_string() {
            return Err(SettingsError::Version {
                found: clip(version),
            });
        }
        let (mut bits, mut min_size, mut fanout) = (None, None, None);
        for (line, l) in lines {
            let (key, value) = match l.split_whitespace().collect::<Vec<_>>()[..] {
                [k, v] => (k, v),
                _ => {
                    return Err(SettingsError::BadLine {
                        line,
                        text: clip(l),
                    })
                }
            };
            let (key, slot) = match key {
                "chunk-bits" => ("chunk-bits", &mut bits),
                "chunk-min-size" => ("chunk-min-size", &mut min_size),
                "chunk-fanout" => ("chunk-fanout", &mut fanout),
                _ => return Err(SettingsError::UnknownKey { key: clip(key) }),
            };
            if slot.is_some() {
                return Err(SettingsError::Duplicate { key: key.into() });
            }
            *slot = Some(parse_u32(key, value)?);
        }
        let need = |v: Option<u32>, key: &'static str| v.ok_or(SettingsError::Missing { key });
        let chunking = Chunking {
            bits: need(bits, "chunk-bits")?,
            min_size: need(min_size, "chunk-min-size")?,
            fanout: need(fanout, "chunk-fanout")?,
        };
        chunking.check()?;
        Ok(StoreSettings { chunking })
    }
}

fn parse_u32(key: &'static str, value: &str) -> Result<u32, SettingsError> {
    // Digits only: no sign, no leading `+`.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SettingsError::BadValue {
            key,
            value: clip(value),
            want: "a decimal number".into(),
        });
    }
    value.parse().map_err(|_| SettingsError::BadValue {
        key,
        value: clip(value),
        want: "a number below 2^32".into(),
    })
}

/// At most 40 characters of untrusted text, for a message.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// What is wrong with a settings record or a chosen setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// More bytes than a record has.
    #[error("the record has {len} bytes, more than the {MAX_RECORD} a record may have")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not UTF-8 text.
    #[error("the record is not UTF-8 text")]
    NotText,
    /// The first line is not `anchorfs-settings VERSION`.
    #[error("the record does not start with \"{MAGIC} {VERSION}\" (found {found:?})")]
    NoHeader {
        /// The first line.
        found: String,
    },
    /// A version this code does not know (a newer anchorfs wrote it).
    #[error(
        "the record is of version {found}, this anchorfs knows version {VERSION} only \
         (a newer anchorfs made the store)"
    )]
    Version {
        /// The version found.
        found: String,
    },
    /// A line that is not `key value`.
    #[error("line {line} is not \"key value\": {text:?}")]
    BadLine {
        /// Its number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// A key this version does not have.
    #[error("unknown setting {key:?}")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A key given twice.
    #[error("setting {key} is given twice")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// A key the version requires is missing.
    #[error("setting {key} is missing")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A value out of range or not a number.
    #[error("setting {key} is {value:?}, want {want}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it may be.
        want: String,
    },
    /// A chunk size `anchorfs init` cannot take.
    #[error("chunk size {size} is not a power of two from 4 KiB to 4 MiB (4096 to 4194304 bytes)")]
    ChunkSize {
        /// The size asked for, in bytes.
        size: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for s in [StoreSettings::GO, StoreSettings::NEW_STORE] {
            assert_eq!(StoreSettings::decode(s.encode().as_bytes()), Ok(s));
        }
        for bits in MIN_CHUNK_BITS..=MAX_CHUNK_BITS {
            let c = Chunking::for_average(1 << bits).unwrap();
            let s = StoreSettings { chunking: c };
            assert_eq!(StoreSettings::decode(s.encode().as_bytes()), Ok(s));
        }
    }

    #[test]
    fn the_new_default_is_256_kib() {
        assert_eq!(
            Chunking::NEW_STORE,
            Chunking {
                bits: 18,
                min_size: 64 << 10,
                fanout: 8
            }
        );
        assert_eq!(
            Chunking::NEW_STORE.to_string(),
            "256 KiB average (bits 18, minimum 64 KiB, fan-out 8)"
        );
        assert_eq!(
            Chunking::GO.to_string(),
            "64 KiB average (bits 16, minimum 1 KiB, fan-out 8)"
        );
    }

    #[test]
    fn chunk_sizes_are_powers_of_two_in_range() {
        assert_eq!(Chunking::for_average(256 << 10), Ok(Chunking::NEW_STORE));
        assert_eq!(Chunking::for_average(4096).unwrap().bits, 12);
        assert_eq!(Chunking::for_average(4 << 20).unwrap().bits, 22);
        for bad in [0, 1, 2048, 3000, 65535, 8 << 20, u64::MAX] {
            assert_eq!(
                Chunking::for_average(bad),
                Err(SettingsError::ChunkSize { size: bad })
            );
        }
    }

    #[test]
    fn comments_and_blank_lines_are_allowed() {
        let text = "# a note\n\nanchorfs-settings 1\r\nchunk-fanout 8\n  chunk-bits 16 \n\
                    # another\nchunk-min-size 1024\n";
        assert_eq!(
            StoreSettings::decode(text.as_bytes()),
            Ok(StoreSettings::GO)
        );
    }

    #[test]
    fn bad_records_are_typed_errors() {
        let ok = "chunk-bits 20\nchunk-min-size 262144\nchunk-fanout 8\n";
        let with = |head: &str, body: &str| format!("{head}\n{body}");
        type Want = fn(&SettingsError) -> bool;
        let cases: Vec<(Vec<u8>, Want)> = vec![
            (vec![], |e| matches!(e, SettingsError::NoHeader { .. })),
            (vec![0xff, 0xfe], |e| matches!(e, SettingsError::NotText)),
            (vec![b'#'; MAX_RECORD + 1], |e| {
                matches!(e, SettingsError::TooLarge { .. })
            }),
            (with("anchorfs-settings", ok).into_bytes(), |e| {
                matches!(e, SettingsError::NoHeader { .. })
            }),
            (with("anchorfs-settings 2", ok).into_bytes(), |e| {
                matches!(e, SettingsError::Version { .. })
            }),
            (
                with("anchorfs-settings 1", "chunk-bits\n").into_bytes(),
                |e| matches!(e, SettingsError::BadLine { line: 2, .. }),
            ),
            (
                with("anchorfs-settings 1", &format!("{ok}colour blue\n")).into_bytes(),
                |e| matches!(e, SettingsError::UnknownKey { .. }),
            ),
            (
                with("anchorfs-settings 1", &format!("{ok}chunk-bits 20\n")).into_bytes(),
                |e| matches!(e, SettingsError::Duplicate { .. }),
            ),
            (
                with("anchorfs-settings 1", "chunk-bits 20\nchunk-fanout 8\n").into_bytes(),
                |e| {
                    matches!(
                        e,
                        SettingsError::Missing {
                            key: "chunk-min-size"
                        }
                    )
                },
            ),
            (
                with(
                    "anchorfs-settings 1",
                    "chunk-bits -1\nchunk-min-size 1\nchunk-fanout 8\n",
                )
                .into_bytes(),
                |e| matches!(e, SettingsError::BadValue { .. }),
            ),
            (
                with(
                    "anchorfs-settings 1",
                    "chunk-bits 99999999999\nchunk-min-size 1\nchunk-fanout 8\n",
                )
                .into_bytes(),
                |e| matches!(e, SettingsError::BadValue { .. }),
            ),
            (
                with(
                    "anchorfs-settings 1",
                    "chunk-bits 31\nchunk-min-size 1\nchunk-fanout 8\n",
                )
                .into_bytes(),
                |e| {
                    matches!(
                        e,
                        SettingsError::BadValue {
                            key: "chunk-bits",
                            ..
                        }
                    )
                },
            ),
            (
                with(
                    "anchorfs-settings 1",
                    "chunk-bits 20\nchunk-min-size 1\nchunk-fanout 0\n",
                )
                .into_bytes(),
                |e| {
                    matches!(
                        e,
                        SettingsError::BadValue {
                            key: "chunk-fanout",
                            ..
                        }
                    )
                },
            ),
            (
                with(
                    "anchorfs-settings 1",
                    "chunk-bits 12\nchunk-min-size 99999999\nchunk-fanout 8\n",
                )
                .into_bytes(),
                |e| {
                    matches!(
                        e,
                        SettingsError::BadValue {
                            key: "chunk-min-size",
                            ..
                        }
                    )
                },
            ),
        ];
        for (bytes, want) in cases {
            let e = StoreSettings::decode(&bytes).unwrap_err();
            assert!(want(&e), "{:?}: {e:?}", String::from_utf8_lossy(&bytes));
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let base = StoreSettings::NEW_STORE.encode().into_bytes();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = base.clone();
            let n = (x % 4) as usize + 1;
            for k in 0..n {
                let at = ((x >> (8 * k)) as usize) % b.len();
                b[at] = (x >> (16 + k)) as u8;
            }
            b.truncate(((x >> 40) as usize) % (base.len() + 1));
            let _ = StoreSettings::decode(&b);
        }
    }
}
