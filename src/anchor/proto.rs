//! The proto-types records: which descriptor each stored message blob has, kept
//! in the map the reserved anchor points at (Go's PutProto).

use prost::Message;

use crate::blob::Ref;
use crate::proto;
use crate::schema::{Map, Set};
use crate::store::{AnchorGetter, AnchorStore, Getter};
use crate::timestamp::Timestamp;

use super::{history, update, AnchorError, PROTO_TYPES_ANCHOR};

/// Every (message ref, descriptor ref) pair in a proto-types map.
pub fn type_records<G: Getter + ?Sized>(
    g: &G,
    types_map: &Ref,
) -> Result<Vec<(Ref, Ref)>, AnchorError> {
    let mut out = Vec::new();
    for (k, p) in Map::entries(g, types_map)? {
        let msg = Ref::from_slice(&k).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?;
        let set = Ref::from_slice(&p).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?;
        for d in Set::members(g, &set)? {
            out.push((msg, d));
        }
    }
    Ok(out)
}

/// The descriptor refs recorded for blob `msg` in the proto-types map, if any.
pub fn types_of<G: AnchorGetter + ?Sized>(g: &G, msg: &Ref) -> Result<Vec<Ref>, AnchorError> {
    match history(g, PROTO_TYPES_ANCHOR)?.last() {
        Some(types) => types_in(g, &types.r, msg),
        None => Ok(Vec::new()),
    }
}

/// The descriptor refs recorded for blob `msg` in the proto-types map `types`.
pub fn types_in<G: Getter + ?Sized>(
    g: &G,
    types: &Ref,
    msg: &Ref,
) -> Result<Vec<Ref>, AnchorError> {
    match Map::lookup(g, types, msg.as_bytes())? {
        Some(p) => {
            let set = Ref::from_slice(&p).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?;
            Ok(Set::members(g, &set)?)
        }
        None => Ok(Vec::new()),
    }
}

/// The encoded `google.protobuf.DescriptorProto` of one of this crate's message
/// types (e.g. `"anchor.Anchor"`, `"split.Node"`), as protobuf-go's
/// `protodesc.ToDescriptorProto` writes it (with `json_name` filled in).
pub fn descriptor_proto(full_name: &str) -> Result<Vec<u8>, AnchorError> {
    let unknown = || AnchorError::UnknownType(full_name.to_string());
    let (package, message) = full_name.rsplit_once('.').ok_or_else(unknown)?;
    let set =
        prost_types::FileDescriptorSet::decode(proto::DESCRIPTOR_SET).map_err(|_| unknown())?;
    let file = set
        .file
        .iter()
        .find(|f| f.package() == package && f.message_type.iter().any(|m| m.name() == message))
        .ok_or_else(unknown)?;
    let mut desc = file
        .message_type
        .iter()
        .find(|m| m.name() == message)
        .cloned()
        .ok_or_else(unknown)?;
    for field in &mut desc.field {
        if field.json_name.is_none() {
            field.json_name = Some(json_name(field.name()));
        }
    }
    Ok(desc.encode_to_vec())
}

/// protobuf's default JSON name: snake_case to lowerCamelCase.
fn json_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's PutProto: stores the encoded message `msg` and, if it was new, its type's
/// descriptor, recording the pair in the proto-types map. Returns the message's ref
/// and whether it was new.
pub fn put_proto<S: AnchorStore + ?Sized>(
    s: &S,
    msg: &[u8],
    type_name: &str,
) -> Result<(Ref, bool), AnchorError> {
    let descriptor = descriptor_proto(type_name)?;
    let (r, added) = s.put(msg)?;
    if !added {
        return Ok((r, false));
    }
    let (d, _) = s.put(&descriptor)?;
    update(s, |u| u.record_type(r, d, Timestamp::now()))?;
    Ok((r, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names() {
        assert_eq!(json_name("ref"), "ref");
        assert_eq!(json_name("type_name"), "typeName");
    }
}
