//! The codec of an anchor's history, a `schema.List` of encoded `anchor.Anchor`
//! messages oldest first, and Go's put rule; appends edit the encoded list in
//! place where they can.

use bytes::Bytes;

use super::{bad_history, Anchor, AnchorError};

/// Splits an encoded `schema.List` into its members without copying, if it is in
/// canonical form (only field 1, length-delimited). `None` for anything else.
fn list_members(payload: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < payload.len() {
        if payload[i] != 0x0a {
            return None;
        }
        i += 1;
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *payload.get(i)?;
            i += 1;
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        let end = i.checked_add(usize::try_from(len).ok()?)?;
        if end > payload.len() {
            return None;
        }
        out.push(i..end);
        i = end;
    }
    Some(out)
}

/// Appends one member to an encoded `schema.List`.
fn append_list_member(list: &mut Vec<u8>, member: &[u8]) {
    list.push(0x0a);
    prost::encoding::encode_varint(member.len() as u64, list);
    list.extend_from_slice(member);
}

/// Decodes an anchor's history (oldest first).
pub fn decode_history(name: &[u8], payload: &[u8]) -> Result<Vec<Anchor>, AnchorError> {
    let members = match list_members(payload) {
        Some(spans) => spans
            .into_iter()
            .map(|s| &payload[s])
            .map(Bytes::copy_from_slice)
            .collect(),
        None => crate::schema::List::decode(Bytes::copy_from_slice(payload))
            .map_err(|e| bad_history(name, e.to_string()))?,
    };
    members
        .iter()
        .map(|m| Anchor::decode(m).map_err(|why| bad_history(name, why)))
        .collect()
}

/// Encodes a history as the map payload.
pub fn encode_history(hist: &[Anchor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hist.len() * 50);
    for a in hist {
        append_list_member(&mut out, &a.encode());
    }
    out
}

/// The entry of `hist` (oldest first) that a put of `new` would move earlier: the
/// store keeps one entry for equal neighbours, the earlier, so putting a ref just
/// before an entry with the same ref (and after one without) makes that entry start
/// at `new.at`. `None` if the put moves nothing.
pub fn moved_by_put(hist: &[Anchor], new: Anchor) -> Option<Anchor> {
    let i = hist.partition_point(|a| a.at <= new.at);
    let next = hist.get(i)?;
    let prev_same = i > 0 && hist[i - 1].r == new.r;
    (next.r == new.r && !prev_same).then_some(*next)
}

/// Go's Put rule applied to a history. Returns whether it changed.
pub fn apply_put(hist: &mut Vec<Anchor>, new: Anchor) -> bool {
    if let Some(last) = hist.last() {
        if last.at < new.at {
            if last.r == new.r {
                return false;
            }
            hist.push(new);
            return true;
        }
    } else {
        hist.push(new);
        return true;
    }
    let before = hist.clone();
    hist.push(new);
    hist.sort_by_key(|a| a.at); // stable: of equal times, the new entry ends last
    let mut kept: Vec<Anchor> = Vec::with_capacity(hist.len());
    for a in hist.drain(..) {
        if kept.last().is_some_and(|k| k.r == a.r) {
            continue;
        }
        kept.push(a);
    }
    *hist = kept;
    *hist != before
}

/// The last member of an encoded `schema.List` in canonical form: `None` if the
/// list is not canonical, `Some(None)` if it is empty. Scans the tags without
/// collecting anything, however long the list.
fn last_list_member(payload: &[u8]) -> Option<Option<std::ops::Range<usize>>> {
    let mut last = None;
    let mut i = 0;
    while i < payload.len() {
        if payload[i] != 0x0a {
            return None;
        }
        let mut rest = &payload[i + 1..];
        let len = prost::encoding::decode_varint(&mut rest).ok()?;
        let start = payload.len() - rest.len();
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > payload.len() {
            return None;
        }
        last = Some(start..end);
        i = end;
    }
    Some(last)
}

/// A history's new payload: `head` followed by `tail`. Appending to a long history
/// keeps the old bytes as `head` (shared, not copied) and only the new entry in
/// `tail`; the node encoder copies both once, into the new leaf.
#[derive(Clone, Debug)]
pub(super) struct NewPayload {
    pub(super) head: Bytes,
    pub(super) tail: Bytes,
}

impl NewPayload {
    pub(super) fn whole(bytes: Vec<u8>) -> NewPayload {
        NewPayload {
            head: Bytes::from(bytes),
            tail: Bytes::new(),
        }
    }

    pub(super) fn joined(&self) -> Bytes {
        if self.tail.is_empty() {
            self.head.clone()
        } else {
            Bytes::from([&self.head[..], &self.tail[..]].concat())
        }
    }
}

/// The new payload after putting `new` into the history in `payload`, or `None` if
/// the history does not change. Appending to a history (the common case) decodes
/// only the last entry and copies nothing of the old ones.
pub(super) fn put_into_payload(
    name: &[u8],
    payload: Option<Bytes>,
    new: Anchor,
) -> Result<Option<NewPayload>, AnchorError> {
    let Some(payload) = payload else {
        return Ok(Some(NewPayload::whole(encode_history(&[new]))));
    };
    if let Some(Some(last)) = last_list_member(&payload) {
        let last = Anchor::decode(&payload[last]).map_err(|why| bad_history(name, why))?;
        if last.at < new.at {
            if last.r == new.r {
                return Ok(None);
            }
            let mut tail = Vec::with_capacity(64);
            append_list_member(&mut tail, &new.encode());
            return Ok(Some(NewPayload {
                head: payload,
                tail: Bytes::from(tail),
            }));
        }
    }
    let mut hist = decode_history(name, &payload)?;
    if apply_put(&mut hist, new) {
        Ok(Some(NewPayload::whole(encode_history(&hist))))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Ref;
    use crate::timestamp::Timestamp;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn a(r: u8, at: &str) -> Anchor {
        Anchor {
            r: Ref([r; 32]),
            at: t(at),
        }
    }

    #[test]
    fn put_rule() {
        let mut h = Vec::new();
        assert!(apply_put(&mut h, a(1, "2020-01-01T00:00:00Z")));
        assert!(
            !apply_put(&mut h, a(1, "2021-01-01T00:00:00Z")),
            "same ref later: no-op"
        );
        assert!(apply_put(&mut h, a(2, "2021-01-01T00:00:00Z")));
        assert!(
            apply_put(&mut h, a(3, "2020-06-01T00:00:00Z")),
            "older: sorted in"
        );
        assert_eq!(
            h.iter().map(|x| x.r.0[0]).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert!(
            apply_put(&mut h, a(1, "2019-01-01T00:00:00Z")),
            "older copy of first: earlier wins"
        );
        assert_eq!(h[0].at, t("2019-01-01T00:00:00Z"));
        assert_eq!(h.len(), 3);
        assert!(
            !apply_put(&mut h, a(3, "2020-07-01T00:00:00Z")),
            "adjacent duplicate dropped"
        );
    }

    #[test]
    fn fast_append_equals_full_encoding() {
        let mut hist = Vec::new();
        let mut payload: Option<Bytes> = None;
        for i in 0..50u8 {
            let new = a(i % 7, &format!("2020-01-01T00:00:{:02}Z", i));
            apply_put(&mut hist, new);
            if let Some(p) = put_into_payload(b"x", payload.clone(), new).unwrap() {
                payload = Some(p.joined());
            }
            assert_eq!(&payload.as_deref().unwrap(), &encode_history(&hist));
        }
    }

    #[test]
    fn list_scanner_rejects_garbage() {
        assert_eq!(list_members(&[]), Some(vec![]));
        assert_eq!(list_members(&[0x0a, 0x05, 1]), None);
        assert_eq!(list_members(&[0x12, 0x00]), None);
        assert_eq!(
            list_members(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(
            list_members(&[0x0a, 0x01, 7, 0x0a, 0x00]),
            Some(vec![2..3, 5..5])
        );
        assert_eq!(last_list_member(&[]), Some(None));
        assert_eq!(last_list_member(&[0x0a, 0x05, 1]), None);
        assert_eq!(last_list_member(&[0x0a, 0x00, 0x12, 0x00]), None);
        assert_eq!(
            last_list_member(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(
            last_list_member(&[0x0a, 0x01, 7, 0x0a, 0x02, 8, 9]),
            Some(Some(5..7))
        );
    }
}
