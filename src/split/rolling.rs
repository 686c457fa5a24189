//! The content-defined chunker: Go's buzhash32 rolling checksum over a 64-byte
//! window, and the rule that turns it into chunk boundaries ([`Splitter`]) and
//! chunk levels ([`level_of`]). Pure computation: no store, no threads, no locks.

use super::{SplitError, SplitOptions};

/// The buzhash32 byte table of the Go writer's rolling checksum.
const TABLE: [u32; 256] = [
    0x07fcfd52, 0x5f3f164f, 0x6695721d, 0x7b4d7c03, 0x49c6e2d1, 0x0d1d68d8, 0x7916001e, 0x22c4d294,
    0x392907a0, 0x189deb99, 0xf3875d04, 0x95e94627, 0xba517936, 0x83c471d4, 0x7cb3ad0b, 0xa42655d9,
    0x7c4e0b68, 0xd4491d1b, 0x25632186, 0xa9d78d73, 0x169c1121, 0xbb158644, 0xb68e6a3f, 0x759805f5,
    0x2cdf5b8a, 0x57d29245, 0xc5d6d268, 0x6b83d0e2, 0x7674cb74, 0xb068d9db, 0xbb9457d8, 0xa15d523b,
    0x794209ff, 0x9da1d7eb, 0x5a25e0cb, 0xf840ec4b, 0x36d4ff9b, 0xf4a5ee3b, 0x5ad145f4, 0xf6740304,
    0x3f71f8cb, 0x91018d7c, 0xfccae224, 0xb186b51f, 0x7d9e8fbc, 0x93f93f33, 0xf63a5b6f, 0x19476c36,
    0xbc897d06, 0x169873f5, 0x724c7af1, 0x581eeb39, 0x2257bb7d, 0x6f269a28, 0xbe8e9981, 0x7039374b,
    0x25416fed, 0xded7e411, 0x6678e7aa, 0x244fcd36, 0x56aa6b86, 0xde4561ad, 0x3e99b0a8, 0xbed80a3a,
    0xe58348b0, 0xaf63e58d, 0x406aec9d, 0xc233f007, 0xa5ead0bd, 0x050143a6, 0x738b6829, 0x3699caf3,
    0x967cd710, 0x06f665a6, 0x25fd3d7f, 0x0fd6e479, 0x26fbf29b, 0x16de4c35, 0x2bf3394b, 0x4af864ba,
    0x1cb9e6c6, 0x41439089, 0x69a39144, 0xc34f182d, 0x421657ff, 0xf9fc6568, 0x8b02c917, 0x6c9c64b7,
    0x83d17909, 0xea3d4ca5, 0xaf635d47, 0x7fc78769, 0xbe14186f, 0x3539b1ea, 0xe9174548, 0xc051e18a,
    0x07b73658, 0x29ec300c, 0xa250bf34, 0xa7ed5d97, 0xfe3dea79, 0xb8b352f7, 0xc9b344e9, 0x8e5f0475,
    0x1941e52a, 0x2694763d, 0x6b40eabc, 0x8485d68b, 0x336eacca, 0x4399a363, 0x67149b9c, 0xae10a901,
    0x5a5ffefb, 0x563b26de, 0x6f00f02b, 0x9f06397d, 0x545836c4, 0x31d6416b, 0x12f4128d, 0x752f33ff,
    0x4a305605, 0x0c8dc214, 0x72521a90, 0x8eb3e4a1, 0x83efc6c6, 0x090ec04f, 0xc1540864, 0xec2c8aaa,
    0x70ab53ba, 0x38d3b494, 0x878d4063, 0xa317ae3f, 0x3cb62f07, 0xf360412c, 0x4ffbf3a9, 0x22d554b4,
    0x3f190476, 0x0796a710, 0xf5c353cf, 0x04f59bb7, 0x2d230176, 0xe2d6a9ce, 0x3f1d7427, 0xafd915bb,
    0xb01aa47d, 0xcde2c269, 0x7417bf38, 0x1e094f9a, 0x55ece0ea, 0xcb94539b, 0x13d346b5, 0x54e0c0c1,
    0x6db30e37, 0xdc02b390, 0xa6e222f5, 0xe2f8c1fe, 0x2e166bdf, 0x67588a74, 0x21898f34, 0x4c330f1d,
    0x19af53ba, 0x70658b94, 0x133c9673, 0x4efeeadd, 0x0f212551, 0x070f0914, 0x6f241c57, 0xf13e41b7,
    0x3be70cb0, 0xf4b6f47f, 0x20f31127, 0x6551cb89, 0x289cbd2c, 0x8946f23d, 0x40a79c3b, 0x03c6d982,
    0x0365790c, 0x0cf52517, 0x0bb131e8, 0x3da5475c, 0x139efcca, 0xbcd44eb4, 0xa54af747, 0xb73c32ed,
    0x9f6c47ac, 0xe8ba8f22, 0x54043a66, 0x3b0a7f20, 0xb4926431, 0xe17c02d5, 0x8f0d2558, 0x014fbff2,
    0x7f803594, 0x79b76fbe, 0x33fe2656, 0x792c8ee8, 0x6b41292d, 0xfdff9c32, 0x82093298, 0x59483870,
    0xb2d5a113, 0x2dd96e5a, 0x5b8e56a9, 0xebd9dda9, 0x04f9ce92, 0xcb440950, 0xa67e52b1, 0x49f6d261,
    0x92417fc3, 0x1c3b6bd9, 0xb027b7e0, 0x1f765a41, 0x44c9ab40, 0x45d99121, 0xfd7a84af, 0x99b75788,
    0xe3abff4a, 0xa88aa67f, 0x736e41cc, 0x9cbcbe5e, 0x7b3ccebc, 0xe1b7fa93, 0x315ae6af, 0x9cced2e2,
    0x19ea0f2f, 0xa9770722, 0x84a6bfdc, 0x88f03f07, 0xa44a03a4, 0x27a6b885, 0xb580c8ba, 0x018153da,
    0xb648e604, 0x51180278, 0x893a310f, 0x728f5f4c, 0x37f5198b, 0x3cc0ea9b, 0xe39d02db, 0x13883142,
    0xca599392, 0xc12d154e, 0xc176163d, 0x5c92e2b8, 0xf9f95ede, 0xb802bdfc, 0x8a928585, 0xdca6e10b,
    0x887953e8, 0x48b9e962, 0xe533e9a3, 0x5e0ce6e5, 0x1dba77ae, 0xc8214b8a, 0x53b428d7, 0x4cf20a65,
];

/// The rolling checksum's window, in bytes.
pub const WINDOW: usize = 64;

/// A chunk boundary found by a [`Splitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The stream offset just past the chunk's last byte.
    pub end: u64,
    /// The chunk's level: trailing zero bits of the checksum beyond `bits`.
    pub level: u32,
}

#[inline(always)]
fn roll(sum: u32, out: u8, inb: u8) -> u32 {
    // The outgoing byte's term is rotated by WINDOW % 32 == 0.
    sum.rotate_left(1) ^ TABLE[out as usize] ^ TABLE[inb as usize]
}

/// The checksum of a window of exactly [`WINDOW`] bytes (oldest first), computed
/// from scratch; equal to the rolled checksum after those bytes.
pub fn window_checksum(window: &[u8; WINDOW]) -> u32 {
    sum_of(window)
}

/// The checksum of the bytes of a window (oldest first), as [`window_checksum`].
fn sum_of(window: &[u8]) -> u32 {
    window
        .iter()
        .fold(0u32, |s, &b| s.rotate_left(1) ^ TABLE[b as usize])
}

/// Rolls `sum` over `outs[j]` leaving / `ins[j]` entering until the checksum has
/// all `mask` bits clear; returns the index of that byte.
#[inline(always)]
fn find_cut(sum: &mut u32, outs: &[u8], ins: &[u8], mask: u32) -> Option<usize> {
    const STEP: usize = 4;
    let n = outs.len().min(ins.len());
    let (outs, ins) = (&outs[..n], &ins[..n]);
    let mut s = *sum;
    // Four bytes at a time: the four sums hang off rotations of the sum before
    // them, so the loop-carried chain is one rotate and one xor per group.
    let groups = outs.chunks_exact(STEP).zip(ins.chunks_exact(STEP));
    for (g, (o, c)) in groups.enumerate() {
        let x0 = TABLE[o[0] as usize] ^ TABLE[c[0] as usize];
        let x1 = TABLE[o[1] as usize] ^ TABLE[c[1] as usize];
        let x2 = TABLE[o[2] as usize] ^ TABLE[c[2] as usize];
        let x3 = TABLE[o[3] as usize] ^ TABLE[c[3] as usize];
        let y1 = x0.rotate_left(1) ^ x1;
        let y2 = y1.rotate_left(1) ^ x2;
        let y3 = y2.rotate_left(1) ^ x3;
        let sums = [
            s.rotate_left(1) ^ x0,
            s.rotate_left(2) ^ y1,
            s.rotate_left(3) ^ y2,
            s.rotate_left(4) ^ y3,
        ];
        // (v & mask) - 1 has its top bit set when v & mask == 0 (and, when mask
        // has the top bit itself, sometimes otherwise: the exact test follows).
        let maybe = sums
            .iter()
            .fold(0u32, |a, &v| a | (v & mask).wrapping_sub(1));
        if maybe >> 31 != 0 {
            for (k, &sk) in sums.iter().enumerate() {
                if sk & mask == 0 {
                    *sum = sk;
                    return Some(g * STEP + k);
                }
            }
        }
        s = sums[STEP - 1];
    }
    let tail = n - n % STEP;
    for j in tail..n {
        s = roll(s, outs[j], ins[j]);
        if s & mask == 0 {
            *sum = s;
            return Some(j);
        }
    }
    *sum = s;
    None
}

/// The content-defined chunker: Go's buzhash32 rule, fed any number of pieces.
///
/// The checksum starts from a window of 64 zero bytes and rolls over the whole
/// stream (not restarted per chunk). After each byte, if the current chunk has at
/// least `min_size` bytes and the checksum at least `bits` trailing zeros, the
/// chunk ends there. Boundaries do not depend on how the input is divided.
#[derive(Debug, Clone)]
pub struct Splitter {
    sum: u32,
    /// The last WINDOW bytes of the stream, oldest first.
    hist: [u8; WINDOW],
    pos: u64,
    chunk_len: u64,
    bits: u32,
    mask: u32,
    min_size: u64,
}

impl Splitter {
    /// A splitter with `opts`' bits and minimum size.
    pub fn new(opts: &SplitOptions) -> Result<Splitter, SplitError> {
        opts.check()?;
        Ok(Splitter::unchecked(opts))
    }

    /// A splitter from options already checked.
    pub(super) fn unchecked(opts: &SplitOptions) -> Splitter {
        let mask = if opts.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << opts.bits) - 1
        };
        Splitter {
            sum: window_checksum(&[0; WINDOW]),
            hist: [0; WINDOW],
            pos: 0,
            chunk_len: 0,
            bits: opts.bits,
            mask,
            min_size: opts.min_size as u64,
        }
    }

    /// The number of bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The current checksum.
    pub fn checksum(&self) -> u32 {
        self.sum
    }

    /// Feeds `data`; appends a [`Cut`] to `cuts` for every chunk that ends in it.
    pub fn push(&mut self, data: &[u8], cuts: &mut Vec<Cut>) {
        let n = data.len();
        let head = n.min(WINDOW);
        let mut buf = [0u8; 2 * WINDOW];
        buf[..WINDOW].copy_from_slice(&self.hist);
        buf[WINDOW..WINDOW + head].copy_from_slice(&data[..head]);
        self.run(&buf[..head], &buf[WINDOW..WINDOW + head], cuts);
        if n > WINDOW {
            self.run(&data[..n - WINDOW], &data[WINDOW..], cuts);
        }
        if n >= WINDOW {
            self.hist.copy_from_slice(&data[n - WINDOW..]);
        } else {
            self.hist.copy_within(n.., 0);
            self.hist[WINDOW - n..].copy_from_slice(data);
        }
    }

    fn run(&mut self, outs: &[u8], ins: &[u8], cuts: &mut Vec<Cut>) {
        let n = ins.len();
        let mut sum = self.sum;
        let mut i = 0;
        while i < n {
            // Bytes that leave the chunk shorter than the minimum are not checked.
            let unchecked = self
                .min_size
                .saturating_sub(1)
                .saturating_sub(self.chunk_len);
            if unchecked > 0 {
                let k = unchecked.min((n - i) as u64) as usize;
                let end = i + k;
                if k >= WINDOW {
                    // The checksum is a function of the window alone (the leaving
                    // byte's term cancels), so the bytes skipped need not be rolled:
                    // the sum after them is that of the last WINDOW of them.
                    sum = sum_of(&ins[end - WINDOW..end]);
                } else {
                    for j in i..end {
                        sum = roll(sum, outs[j], ins[j]);
                    }
                }
                i = end;
                self.chunk_len += k as u64;
                if i == n {
                    break;
                }
            }
            match find_cut(&mut sum, &outs[i..], &ins[i..], self.mask) {
                Some(j) => {
                    i += j + 1;
                    cuts.push(Cut {
                        end: self.pos + i as u64,
                        level: sum.trailing_zeros() - self.bits,
                    });
                    self.chunk_len = 0;
                }
                None => {
                    self.chunk_len += (n - i) as u64;
                    i = n;
                }
            }
        }
        self.sum = sum;
        self.pos += n as u64;
    }

    /// The cut for the final, unfinished chunk, if any bytes remain in it: its
    /// level is computed the same way (0 when the checksum has fewer than `bits`
    /// trailing zeros).
    pub fn finish(&self) -> Option<Cut> {
        (self.chunk_len > 0).then(|| Cut {
            end: self.pos,
            level: level_of(self.sum, self.bits),
        })
    }

    /// The chunk lengths and levels of `data` as a whole stream.
    pub fn chunks(opts: &SplitOptions, data: &[u8]) -> Result<Vec<(u64, u32)>, SplitError> {
        let mut sp = Splitter::new(opts)?;
        let mut cuts = Vec::new();
        sp.push(data, &mut cuts);
        cuts.extend(sp.finish());
        let mut start = 0;
        Ok(cuts
            .into_iter()
            .map(|c| {
                let len = c.end - start;
                start = c.end;
                (len, c.level)
            })
            .collect())
    }
}

/// The chunk level of a checksum: its trailing zero bits beyond `bits`, or 0.
pub fn level_of(sum: u32, bits: u32) -> u32 {
    sum.trailing_zeros().saturating_sub(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn primed_window_sums_to_zero() {
        // 64 rotations of T[0] cancel in pairs (rotation by k and k + 32 agree).
        assert_eq!(window_checksum(&[0; WINDOW]), 0);
        assert_eq!(TABLE[0], 0x07fc_fd52);
        assert_eq!(TABLE[255], 0x4cf2_0a65);
    }

    #[test]
    fn rolled_sum_is_the_window_sum() {
        let data = pseudo_random(5000, 7);
        let mut sp = Splitter::new(&SplitOptions::default()).unwrap();
        let mut cuts = Vec::new();
        for (i, piece) in data.chunks(37).enumerate() {
            sp.push(piece, &mut cuts);
            let end = ((i + 1) * 37).min(data.len());
            let mut w = [0u8; WINDOW];
            let from = end.saturating_sub(WINDOW);
            w[WINDOW - (end - from)..].copy_from_slice(&data[from..end]);
            assert_eq!(sp.checksum(), window_checksum(&w), "after {end} bytes");
        }
    }

    /// The rule applied one byte at a time, with the checksum rolled over every
    /// byte: the reference for the skipping and unrolled splitter.
    fn cuts_byte_by_byte(opts: &SplitOptions, data: &[u8]) -> Vec<Cut> {
        let mask = (1u32 << opts.bits) - 1;
        let (mut sum, mut len, mut cuts) = (0u32, 0u64, Vec::new());
        for (j, &b) in data.iter().enumerate() {
            let out = if j >= WINDOW { data[j - WINDOW] } else { 0 };
            sum = roll(sum, out, b);
            len += 1;
            if len >= opts.min_size as u64 && sum & mask == 0 {
                cuts.push(Cut {
                    end: j as u64 + 1,
                    level: sum.trailing_zeros() - opts.bits,
                });
                len = 0;
            }
        }
        cuts
    }

    #[test]
    fn cuts_match_the_rule_byte_by_byte_for_any_minimum() {
        let data = pseudo_random(400_000, 11);
        for (bits, min_size) in [(8, 0), (8, 63), (8, 64), (8, 65), (10, 200), (12, 4096)] {
            let opts = SplitOptions {
                bits,
                min_size,
                fanout: 8,
            };
            let want = cuts_byte_by_byte(&opts, &data);
            assert!(want.len() > 10, "{bits} {min_size}: {}", want.len());
            for piece in [1usize, 63, 64, 1000, 65536, data.len()] {
                let mut sp = Splitter::new(&opts).unwrap();
                let mut got = Vec::new();
                for p in data.chunks(piece) {
                    sp.push(p, &mut got);
                }
                assert_eq!(got, want, "bits {bits} min {min_size} pieces of {piece}");
            }
        }
    }

    #[test]
    fn unrolled_search_matches_byte_by_byte() {
        let data = pseudo_random(20000, 3);
        for mask in [0u32, 1, 0x7, 0xff, 0xfff] {
            for start in [0usize, 1, 2, 3, 5] {
                let (outs, ins) = (&data[start..10000], &data[start + WINDOW..10000 + WINDOW]);
                let mut fast = 0x1234_5678u32;
                let got = find_cut(&mut fast, outs, ins, mask);
                let mut slow = 0x1234_5678u32;
                let mut want = None;
                for j in 0..outs.len() {
                    slow = roll(slow, outs[j], ins[j]);
                    if slow & mask == 0 {
                        want = Some(j);
                        break;
                    }
                }
                assert_eq!(got, want, "mask {mask:#x} start {start}");
                assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn levels_count_trailing_zeros_beyond_bits() {
        assert_eq!(level_of(0b1_0000_0000_0000_0000, 16), 0);
        assert_eq!(level_of(0b100_0000_0000_0000_0000, 16), 2);
        assert_eq!(level_of(0b1000, 16), 0);
        assert_eq!(level_of(0, 16), 16);
        assert_eq!(level_of(0, 32), 0);
    }

    #[test]
    fn cuts_do_not_depend_on_how_input_is_fed() {
        let opts = SplitOptions {
            bits: 8,
            min_size: 100,
            fanout: 2,
        };
        let data = pseudo_random(100_000, 11);
        let whole = Splitter::chunks(&opts, &data).unwrap();
        assert!(whole.len() > 50);
        assert!(whole[..whole.len() - 1].iter().all(|&(len, _)| len >= 100));
        let mut sp = Splitter::new(&opts).unwrap();
        let mut cuts = Vec::new();
        let mut i = 0;
        let mut step = 1;
        while i < data.len() {
            let j = (i + step).min(data.len());
            sp.push(&data[i..j], &mut cuts);
            i = j;
            step = step * 7 % 1000 + 1;
        }
        cuts.extend(sp.finish());
        let mut start = 0;
        let pieces: Vec<(u64, u32)> = cuts
            .iter()
            .map(|c| {
                let l = c.end - start;
                start = c.end;
                (l, c.level)
            })
            .collect();
        assert_eq!(pieces, whole);
    }

    #[test]
    fn zero_bytes_cut_at_every_minimum() {
        // A window of zeros sums to 0: 32 trailing zeros, so every chunk is as
        // short as allowed, with level 32 - bits.
        let opts = SplitOptions::default();
        let got = Splitter::chunks(&opts, &[0u8; 5000]).unwrap();
        assert_eq!(
            got,
            vec![(1024, 16), (1024, 16), (1024, 16), (1024, 16), (904, 16)]
        );
    }
}
