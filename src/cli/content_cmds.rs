//! `put`, `get` and `cat`: content in and out.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::naming::{self, quoted};
use super::progress;
use super::store::{self, Mode, Opened};
use super::{CatArgs, GetArgs, NotFound, PutArgs};
use crate::anchor::{self, AnchorError};
use crate::blob::Ref;
use crate::content::{self, ContentError, Kind};
use crate::split::{self, SplitError};
use crate::split::{ChunkStorers, STORING_THREADS};
use crate::store::{StoreError, MAX_BLOB_SIZE};
use crate::timestamp::Timestamp;

/// Content up to this size is read whole (and so verified whole) before any byte
/// is written; larger content is checked for structure first, then streamed chunk by
/// chunk, each chunk verified before its bytes are written.
const BUFFER_LIMIT: u64 = 64 << 20;

/// Content at least this large gets a progress bar on a terminal.
const PROGRESS_FROM: u64 = 16 << 20;

/// How much `get` reads and writes at a time when streaming.
const STREAM_BLOCK: usize = 1 << 20;

/// Where `put` reads content from, and its size if known.
struct Input {
    reader: Box<dyn Read>,
    size: Option<u64>,
    label: String,
}

fn open_input(file: Option<&PathBuf>) -> anyhow::Result<Input> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let label = p.display().to_string();
            let f = File::open(p).with_context(|| format!("opening {label}"))?;
            let meta = f.metadata().with_context(|| format!("reading {label}"))?;
            if meta.is_dir() {
                bail!("{label} is a directory");
            }
            let size = meta.is_file().then_some(meta.len());
            Ok(Input {
                reader: Box::new(f),
                size,
                label,
            })
        }
        _ => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                eprintln!("anchorfs: reading the content from the terminal; end it with Ctrl-D");
            }
            Ok(Input {
                reader: Box::new(stdin.lock()),
                size: None,
                label: "stdin".into(),
            })
        }
    }
}

/// `put NAME [FILE|-] [--at TIME] [--raw]` and `put NAME --ref HEX`.
pub(super) fn put(spec: Option<&OsString>, escaped: bool, a: PutArgs) -> anyhow::Result<()> {
    // Open the input first, so a bad file name creates no store.
    let input = match a.ref_hex {
        Some(_) => None,
        None => Some(open_input(a.file.as_ref())?),
    };
    let opened = store::open_given(spec, Mode::Create)?;
    let s = opened.store();
    let label = opened.label();
    let name = naming::resolve(s, &a.name, escaped)?;
    let shown = quoted(&name);
    let at = a.at.unwrap_or_else(Timestamp::now);
    // A back-dated put may move the next version earlier (Go's rule: one entry for
    // equal neighbours, the earlier): say so.
    let before = match a.at {
        Some(_) => anchor::history(s, &name)
            .with_context(|| format!("reading the history of {shown} in store {label}"))?,
        None => Vec::new(),
    };

    let r = match (a.ref_hex, input) {
        (Some(r), _) => {
            let present = r.is_zero()
                || s.contains(&r)
                    .with_context(|| format!("looking up ref {r} in store {label}"))?;
            if !present && !a.allow_missing {
                return Err(NotFound(format!(
                    "ref {r} is not in store {label} (--allow-missing anchors it anyway)"
                ))
                .into());
            }
            anchor::put(s, &name, r, at)
                .with_context(|| format!("anchoring {shown} in store {label}"))?;
            r
        }
        (None, Some(input)) => {
            let bar = match input.size {
                Some(n) if n < PROGRESS_FROM => indicatif::ProgressBar::hidden(),
                size => progress::bytes("put", size),
            };
            let mut reader = CountingReader {
                inner: bar.wrap_read(input.reader),
                count: 0,
            };
            let from = input.label;
            let r = if a.raw {
                // No more than one blob can hold is read, whatever the input is.
                let too_large = || {
                    anyhow::anyhow!(
                        "{from} is larger than the {MAX_BLOB_SIZE} bytes one raw blob can have \
                         (store it without --raw, as a split tree)"
                    )
                };
                if input.size.is_some_and(|n| n > MAX_BLOB_SIZE) {
                    return Err(too_large());
                }
                let mut data = Vec::new();
                (&mut reader)
                    .take(MAX_BLOB_SIZE + 1)
                    .read_to_end(&mut data)
                    .with_context(|| format!("reading {from}"))?;
                if data.len() as u64 > MAX_BLOB_SIZE {
                    return Err(too_large());
                }
                let (r, _) = s
                    .put(&data)
                    .with_context(|| format!("storing {from} in store {label}"))?;
                anchor::put(s, &name, r, at)
                    .with_context(|| format!("anchoring {shown} in store {label}"))?;
                r
            } else {
                // Chunks are hashed and stored on threads of their own while the
                // input is read: a direct write of each waits for the disk.
                let storers = ChunkStorers::new(STORING_THREADS);
                let opts = content::split_options(s)
                    .with_context(|| format!("reading the settings of store {label}"))?;
                let root = content::store_with(opened.shared(), &mut reader, opts, &storers)
                    .with_context(|| format!("storing {from} in store {label}"))?;
                content::put_split(s, &name, root, at)
                    .with_context(|| format!("anchoring {shown} in store {label}"))?;
                root
            };
            bar.finish_and_clear();
            // A mount of this store lists the new version's size without reading
            // it. Only a cache: failing to write it fails nothing. (Not for a raw
            // blob: one whose bytes read as a split tree is shown as that tree.)
            if let (false, Some(dir)) = (a.raw, opened.dir()) {
                let log = dir.join(crate::fs::sizes::FILE_NAME);
                if let Err(e) = crate::fs::sizes::append(&log, &[(r, reader.count)]) {
                    log::debug!("recording the size of {r} in {}: {e}", log.display());
                }
            }
            r
        }
        (None, None) => bail!("nothing to put"),
    };
    if let Some(moved) = anchor::moved_by_put(&before, anchor::Anchor { r, at }) {
        eprintln!(
            "anchorfs: the version of {shown} at {} has this content too; the store keeps \
             one entry for equal neighbours, so that version now starts at {at}",
            moved.at
        );
    }
    println!("{r}");
    Ok(())
}

/// A reader that counts the bytes it passes on.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The ref `name` points at, at `at`; "not found" names what is missing.
fn anchored_ref(
    opened: &Opened,
    name: &[u8],
    at: Option<Timestamp>,
) -> anyhow::Result<(Ref, Timestamp)> {
    let s = opened.store();
    let label = opened.label();
    let shown = quoted(name);
    let hist = anchor::history(s, name).map_err(|e| {
        anchor_err(
            e,
            format!("reading the history of anchor {shown} in store {label}"),
        )
    })?;
    if hist.is_empty() {
        return Err(NotFound(format!("anchor {shown} not found in store {label}")).into());
    }
    let when = at.unwrap_or_else(Timestamp::now);
    match anchor::entry_at(&hist, when) {
        Some(e) => Ok((e.r, e.at)),
        None => Err(NotFound(format!(
            "anchor {shown} has no version at or before {when} in store {label} (its first is {})",
            hist[0].at
        ))
        .into()),
    }
}

/// An anchor-layer error, "not found" kept as such.
pub(super) fn anchor_err(e: AnchorError, context: String) -> anyhow::Error {
    if e.is_not_found() {
        NotFound(format!("{context}: {e}")).into()
    } else {
        anyhow::Error::new(e).context(context)
    }
}

fn content_err(e: ContentError, context: String) -> anyhow::Error {
    if e.is_not_found() {
        NotFound(format!("{context}: {e}")).into()
    } else {
        anyhow::Error::new(e).context(context)
    }
}

fn split_err(e: SplitError, context: String) -> anyhow::Error {
    match e {
        SplitError::Store(StoreError::NotFound(_)) => NotFound(format!("{context}: {e}")).into(),
        e => anyhow::Error::new(e).context(context),
    }
}

/// `get NAME [--at TIME] [--ref-only] [--raw|--split]`.
pub(super) fn get(spec: Option<&OsString>, escaped: bool, a: GetArgs) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let name = naming::resolve(opened.store(), &a.name, escaped)?;
    let (r, at) = anchored_ref(&opened, &name, a.at)?;
    if a.ref_only {
        println!("{r}");
        return Ok(());
    }
    let what = format!(
        "reading anchor {} (version {at}, ref {r}) in store {}",
        quoted(&name),
        opened.label()
    );
    write_content(&opened, r, forced(a.raw, a.split), &what)
}

/// `cat HEX [--raw|--split]`.
pub(super) fn cat(spec: Option<&OsString>, a: CatArgs) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let what = format!("reading ref {} in store {}", a.r, opened.label());
    write_content(&opened, a.r, forced(a.raw, a.split), &what)
}

fn forced(raw: bool, split: bool) -> Option<Kind> {
    match (raw, split) {
        (true, _) => Some(Kind::Raw),
        (_, true) => Some(Kind::Split),
        _ => None,
    }
}

/// Writes the content of `r` to stdout. Nothing is written unless the content is
/// whole and verified, except for content over [`BUFFER_LIMIT`], whose tree is
/// checked first and whose chunks are each verified before they are written.
fn write_content(opened: &Opened, r: Ref, kind: Option<Kind>, what: &str) -> anyhow::Result<()> {
    let s = opened.store();
    let kind = match kind {
        Some(k) => k,
        None => content::kind_of(s, &r).map_err(|e| content_err(e, what.to_string()))?,
    };
    let reader = content::open(s, r, kind).map_err(|e| content_err(e, what.to_string()))?;
    let size = reader.size();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let write_err = |e: io::Error| anyhow::Error::new(e).context("writing to stdout");
    if size <= BUFFER_LIMIT {
        let mut buf = vec![0u8; size as usize];
        reader
            .read_exact_at(0, &mut buf)
            .map_err(|e| split_err(e, what.to_string()))?;
        out.write_all(&buf).map_err(write_err)?;
        return out.flush().map_err(write_err);
    }
    if kind == Kind::Split {
        split::validate_root(s, &r).map_err(|e| split_err(e, what.to_string()))?;
    }
    let bar = if size >= PROGRESS_FROM {
        progress::bytes("get", Some(size))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut buf = vec![0u8; STREAM_BLOCK];
    let mut pos = 0u64;
    while pos < size {
        let n = reader
            .read_at(pos, &mut buf)
            .map_err(|e| split_err(e, what.to_string()))?;
        if n == 0 {
            bail!("{what}: the content ended at {pos} of {size} bytes");
        }
        out.write_all(&buf[..n]).map_err(write_err)?;
        pos += n as u64;
        bar.set_position(pos);
    }
    bar.finish_and_clear();
    out.flush().map_err(write_err)
}
