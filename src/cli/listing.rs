//! `ls`, `log`, `map-ref` and `expire`: the anchor map as tables and JSON.

use std::ffi::OsString;
use std::io::{self, Write};

use anyhow::{bail, Context};
use serde::Serialize;

use super::content_cmds::anchor_err;
use super::naming::{self, display, quoted, NameJson};
use super::progress;
use super::store::{self, Mode, Opened};
use super::{ExpireArgs, LogArgs, LsArgs, NotFound};
use crate::anchor::{self, Anchor, PROTO_TYPES_ANCHOR};
use crate::blob::Ref;
use crate::content::{self, Kind};
use crate::split::SplitReader;
use crate::timestamp::Timestamp;

/// One anchor in `ls --json`.
#[derive(Serialize)]
struct LsEntry {
    #[serde(flatten)]
    name: NameJson,
    latest_at: String,
    latest_ref: String,
    /// The latest version's content size; null if it could not be read.
    size: Option<u64>,
    /// "split" or "raw"; null if the content could not be read.
    kind: Option<&'static str>,
    versions: usize,
}

/// One version in `log --json`.
#[derive(Serialize)]
struct LogEntry {
    at: String,
    #[serde(rename = "ref")]
    r: String,
}

/// `log --json`.
#[derive(Serialize)]
struct LogDoc {
    #[serde(flatten)]
    name: NameJson,
    versions: Vec<LogEntry>,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Split => "split",
        Kind::Raw => "raw",
    }
}

/// The kind and size of the content at `r`.
fn kind_and_size(opened: &Opened, r: &Ref) -> anyhow::Result<(Kind, u64)> {
    let s = opened.store();
    let kind = content::kind_of(s, r)?;
    let size = match kind {
        Kind::Split => SplitReader::new(s, *r)?.size(),
        Kind::Raw => opened.store().blob_size(r)?,
    };
    Ok((kind, size))
}

fn write_json<T: Serialize>(doc: &T) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    serde_json::to_writer_pretty(&mut out, doc).context("writing to stdout")?;
    writeln!(out).context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

/// `ls [--json]`.
pub(super) fn ls(spec: Option<&OsString>, a: LsArgs) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let label = opened.label();
    let mut all = anchor::all(opened.store())
        .map_err(|e| anchor_err(e, format!("reading the anchors of store {label}")))?;
    all.retain(|(name, hist)| name.as_slice() != PROTO_TYPES_ANCHOR && !hist.is_empty());
    all.sort_by(|a, b| a.0.cmp(&b.0));

    let bar = progress::items("ls", all.len() as u64);
    let mut unreadable: Vec<String> = Vec::new();
    let mut rows = Vec::with_capacity(all.len());
    for (name, hist) in &all {
        let Some(last) = hist.last() else { continue };
        let ks = match kind_and_size(&opened, &last.r) {
            Ok(ks) => Some(ks),
            Err(e) => {
                unreadable.push(format!("anchor {} (ref {}): {e:#}", quoted(name), last.r));
                None
            }
        };
        rows.push((name, last, hist.len(), ks));
        bar.inc(1);
    }
    bar.finish_and_clear();

    if a.json {
        let doc: Vec<LsEntry> = rows
            .iter()
            .map(|(name, last, versions, ks)| LsEntry {
                name: NameJson::new(name),
                latest_at: last.at.to_rfc3339(),
                latest_ref: last.r.to_hex(),
                size: ks.map(|(_, n)| n),
                kind: ks.map(|(k, _)| kind_name(k)),
                versions: *versions,
            })
            .collect();
        write_json(&doc)?;
    } else {
        let sizes: Vec<String> = rows
            .iter()
            .map(|(.., ks)| ks.map_or_else(|| "?".to_string(), |(_, n)| n.to_string()))
            .collect();
        let wsize = sizes.iter().map(String::len).max().unwrap_or(0).max(4);
        let wvers = rows
            .iter()
            .map(|(_, _, v, _)| v.to_string().len())
            .max()
            .unwrap_or(0)
            .max(8);
        let stdout = io::stdout();
        let mut out = stdout.lock();
        let mut lines = vec![format!(
            "{:<30}  {:>wvers$}  {:>wsize$}  {:<64}  NAME",
            "LATEST", "VERSIONS", "SIZE", "REF"
        )];
        for ((name, last, versions, _), size) in rows.iter().zip(&sizes) {
            lines.push(format!(
                "{:<30}  {:>wvers$}  {:>wsize$}  {}  {}",
                last.at.to_rfc3339(),
                versions,
                size,
                last.r,
                display(name)
            ));
        }
        for l in lines {
            writeln!(out, "{l}").context("writing to stdout")?;
        }
        out.flush().context("writing to stdout")?;
    }
    match unreadable.as_slice() {
        [] => Ok(()),
        [one] => bail!("ls: store {label}: the latest content of {one}"),
        [first, rest @ ..] => bail!(
            "ls: store {label}: the latest content of {} anchors cannot be read (their size shows as ?), the first: {first}",
            rest.len() + 1
        ),
    }
}

/// `log NAME [--json]`.
pub(super) fn log(spec: Option<&OsString>, escaped: bool, a: LogArgs) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let label = opened.label();
    let name = naming::resolve(opened.store(), &a.name, escaped)?;
    let shown = quoted(&name);
    let hist = anchor::history(opened.store(), &name).map_err(|e| {
        anchor_err(
            e,
            format!("reading the history of anchor {shown} in store {label}"),
        )
    })?;
    if hist.is_empty() {
        return Err(NotFound(format!("anchor {shown} not found in store {label}")).into());
    }
    if a.json {
        return write_json(&LogDoc {
            name: NameJson::new(&name),
            versions: hist
                .iter()
                .map(|e| LogEntry {
                    at: e.at.to_rfc3339(),
                    r: e.r.to_hex(),
                })
                .collect(),
        });
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{:<30}  REF", "TIME").context("writing to stdout")?;
    for e in &hist {
        writeln!(out, "{:<30}  {}", e.at.to_rfc3339(), e.r).context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")
}

/// `map-ref`.
pub(super) fn map_ref(spec: Option<&OsString>) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let label = opened.label();
    match anchor::map_ref(opened.store())
        .with_context(|| format!("reading the anchor map ref of store {label}"))?
    {
        Some(r) => println!("{r}"),
        None => println!("none"),
    }
    Ok(())
}

/// What `anchor::expire` would drop, computed without writing.
fn expire_plan(
    all: &[(Vec<u8>, Vec<Anchor>)],
    before: Timestamp,
    keep: usize,
) -> Vec<(Vec<u8>, Anchor)> {
    let mut dropped = Vec::new();
    for (name, hist) in all {
        let mut n = 0;
        while hist.len() - n > keep && hist[n].at < before {
            n += 1;
        }
        dropped.extend(hist[..n].iter().map(|a| (name.clone(), *a)));
    }
    dropped
}

/// `expire --before TIME --keep N [--dry-run]`: prints each entry dropped.
pub(super) fn expire(spec: Option<&OsString>, a: ExpireArgs) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let label = opened.label();
    let keep = usize::try_from(a.keep).unwrap_or(usize::MAX);
    let mut dropped = if a.dry_run {
        let all = anchor::all(opened.store())
            .with_context(|| format!("reading the anchors of store {label}"))?;
        expire_plan(&all, a.before, keep)
    } else {
        anchor::expire(opened.store(), a.before, keep)
            .with_context(|| format!("expiring history in store {label}"))?
    };
    dropped.sort_by(|x, y| (&x.0, x.1.at).cmp(&(&y.0, y.1.at)));
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (name, e) in &dropped {
        writeln!(out, "{:<30}  {}  {}", e.at.to_rfc3339(), e.r, display(name))
            .context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    if progress::shown() {
        let verb = if a.dry_run { "would drop" } else { "dropped" };
        eprintln!("anchorfs: expire: {verb} {} entries", dropped.len());
    }
    Ok(())
}
