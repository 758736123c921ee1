//! The values of an RDB, type by type and encoding by encoding: walked (to capture their
//! bytes) or decoded into plain values, including streams and module values' framing.

use std::io::BufRead;

use super::encodings::{self, Element};
use super::rdb::{kind, GroupValue, Input, StreamEntries, StreamValue, Value};
use crate::error::{Error, ErrorKind, Result};

/// The 9-character name encoded in a module type id (the low 10 bits are its version).
pub(super) fn module_name(id: u64) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..9)
        .map(|j| CHARS[((id >> (10 + (8 - j) * 6)) & 63) as usize] as char)
        .collect()
}

/// Walks a module value's generic framing: typed fields until an end marker.
pub(super) fn skip_module_body<R: BufRead>(input: &mut Input<R>) -> Result<()> {
    loop {
        match input.len()? {
            0 => return Ok(()),
            1 | 2 => {
                input.len()?;
            }
            3 => input.take(4, None)?,
            4 => input.take(8, None)?,
            5 => {
                input.string(false)?;
            }
            _ => return Err(input.damaged("module value framing")),
        }
    }
}

fn elements_to_vecs(e: Vec<Element<'_>>) -> Vec<Vec<u8>> {
    e.iter().map(Element::to_vec).collect()
}

fn pairs<T>(flat: Vec<T>, what: &str) -> Result<Vec<(T, T)>> {
    if !flat.len().is_multiple_of(2) {
        return Err(Error::corrupt(format!("damaged {what}: odd element count")));
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn score(e: &Element<'_>) -> Result<f64> {
    match e {
        Element::Int(i) => Ok(*i as f64),
        Element::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::corrupt("damaged sorted set score")),
    }
}

fn zset_pairs(flat: Vec<Element<'_>>) -> Result<Vec<(Vec<u8>, f64)>> {
    pairs(flat, "sorted set")?
        .into_iter()
        .map(|(m, s)| Ok((m.to_vec(), score(&s)?)))
        .collect()
}

/// Reads one value of type `k`. With `decode` false the bytes are only walked (and captured,
/// if the input captures) and `None` comes back, except for modules, whose name is returned.
pub(super) fn read_value<R: BufRead>(
    input: &mut Input<R>,
    k: u8,
    decode: bool,
) -> Result<Option<Value>> {
    use kind::*;
    let v =
        match k {
            STRING => Value::String(input.string(decode)?),
            LIST | SET => {
                let n = input.len()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    let s = input.string(decode)?;
                    if decode {
                        items.push(s);
                    }
                }
                if k == LIST {
                    Value::List(items)
                } else {
                    Value::Set(items)
                }
            }
            ZSET | ZSET_2 => {
                let n = input.len()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    let m = input.string(decode)?;
                    let s = if k == ZSET {
                        input.text_double()?
                    } else {
                        f64::from_le_bytes(input.array()?)
                    };
                    if decode {
                        items.push((m, s));
                    }
                }
                Value::ZSet(items)
            }
            HASH => {
                let n = input.len()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    let f = input.string(decode)?;
                    let v = input.string(decode)?;
                    if decode {
                        items.push((f, v));
                    }
                }
                Value::Hash(items)
            }
            MODULE_2 => {
                let id = input.len()?;
                skip_module_body(input)?;
                return Ok(Some(Value::Module(module_name(id))));
            }
            MODULE_PRE_GA => return Err(Error::new(
                ErrorKind::Unsupported,
                "module value in the pre-release module format (cannot be read without the module)",
            )),
            HASH_ZIPMAP | LIST_ZIPLIST | SET_INTSET | ZSET_ZIPLIST | HASH_ZIPLIST
            | HASH_LISTPACK | ZSET_LISTPACK | SET_LISTPACK => {
                let blob = input.string(decode)?;
                if !decode {
                    return Ok(None);
                }
                match k {
                    HASH_ZIPMAP => Value::Hash(encodings::zipmap(&blob)?),
                    LIST_ZIPLIST => Value::List(elements_to_vecs(encodings::ziplist(&blob)?)),
                    SET_INTSET => Value::Set(
                        encodings::intset(&blob)?
                            .iter()
                            .map(|i| i.to_string().into_bytes())
                            .collect(),
                    ),
                    ZSET_ZIPLIST => Value::ZSet(zset_pairs(encodings::ziplist(&blob)?)?),
                    HASH_ZIPLIST => {
                        Value::Hash(pairs(elements_to_vecs(encodings::ziplist(&blob)?), "hash")?)
                    }
                    HASH_LISTPACK => Value::Hash(pairs(
                        elements_to_vecs(encodings::listpack(&blob)?),
                        "hash",
                    )?),
                    ZSET_LISTPACK => Value::ZSet(zset_pairs(encodings::listpack(&blob)?)?),
                    _ => Value::Set(elements_to_vecs(encodings::listpack(&blob)?)),
                }
            }
            LIST_QUICKLIST | LIST_QUICKLIST_2 => {
                let nodes = input.len()?;
                let mut items = Vec::new();
                for _ in 0..nodes {
                    // Quicklist 2 nodes say whether they hold one plain element or a listpack.
                    let packed = if k == LIST_QUICKLIST_2 {
                        match input.len()? {
                            1 => false,
                            2 => true,
                            _ => return Err(input.damaged("quicklist node container")),
                        }
                    } else {
                        true
                    };
                    let blob = input.string(decode)?;
                    if !decode {
                        continue;
                    }
                    if !packed {
                        items.push(blob);
                    } else if k == LIST_QUICKLIST {
                        items.extend(elements_to_vecs(encodings::ziplist(&blob)?));
                    } else {
                        items.extend(elements_to_vecs(encodings::listpack(&blob)?));
                    }
                }
                Value::List(items)
            }
            STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => {
                Value::Stream(Box::new(read_stream(input, k, decode)?))
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                    "value type {other} is not one this build reads (written by a newer Redis?)"
                ),
                ))
            }
        };
    Ok(decode.then_some(v))
}

fn read_stream<R: BufRead>(input: &mut Input<R>, k: u8, decode: bool) -> Result<StreamValue> {
    let mut s = StreamValue::default();
    let nodes = input.len()?;
    for _ in 0..nodes {
        let master = input.string(decode)?;
        let lp = input.string(decode)?;
        if decode {
            stream_node(&master, &lp, &mut s.entries)?;
        }
    }
    s.length = input.len()?;
    s.last_id = (input.len()?, input.len()?);
    if k >= kind::STREAM_LISTPACKS_2 {
        // First id, max deleted id, entries added.
        for _ in 0..5 {
            input.len()?;
        }
    }
    let groups = input.len()?;
    for _ in 0..groups {
        let mut g = GroupValue {
            name: input.string(true)?,
            last_id: (input.len()?, input.len()?),
            ..Default::default()
        };
        if k >= kind::STREAM_LISTPACKS_2 {
            input.len()?; // entries read
        }
        g.pending = input.len()?;
        for _ in 0..g.pending {
            input.take(16 + 8, None)?; // id, delivery time
            input.len()?; // delivery count
        }
        let consumers = input.len()?;
        for _ in 0..consumers {
            g.consumers.push(input.string(true)?);
            input.take(8, None)?; // seen time
            if k >= kind::STREAM_LISTPACKS_3 {
                input.take(8, None)?; // active time
            }
            let pel = input.len()?;
            input.take(
                usize::try_from(pel.saturating_mul(16))
                    .map_err(|_| input.damaged("consumer PEL"))?,
                None,
            )?;
        }
        if decode {
            s.groups.push(g);
        }
    }
    Ok(s)
}

/// One listpack node of a stream: a master entry with the common fields, then entries whose
/// ids are deltas from the node's key.
fn stream_node(master: &[u8], lp: &[u8], out: &mut StreamEntries) -> Result<()> {
    let bad = || Error::corrupt("damaged stream node in the RDB");
    if master.len() != 16 {
        return Err(bad());
    }
    let base_ms = u64::from_be_bytes(master[..8].try_into().map_err(|_| bad())?);
    let base_seq = u64::from_be_bytes(master[8..].try_into().map_err(|_| bad())?);
    let e = encodings::listpack(lp)?;
    let at = |i: usize| e.get(i).ok_or_else(bad);
    let master_fields = usize::try_from(at(2)?.as_int()?).map_err(|_| bad())?;
    let fields: Vec<Vec<u8>> = (0..master_fields)
        .map(|j| at(3 + j).map(Element::to_vec))
        .collect::<Result<_>>()?;
    let mut i = 3 + master_fields + 1; // past the master entry's terminator
    const DELETED: i64 = 1;
    const SAME_FIELDS: i64 = 2;
    while i < e.len() {
        let flags = at(i)?.as_int()?;
        let ms = base_ms.wrapping_add(at(i + 1)?.as_int()? as u64);
        let seq = base_seq.wrapping_add(at(i + 2)?.as_int()? as u64);
        i += 3;
        let mut pairs = Vec::new();
        if flags & SAME_FIELDS != 0 {
            for f in &fields {
                pairs.push((f.clone(), at(i)?.to_vec()));
                i += 1;
            }
        } else {
            let n = usize::try_from(at(i)?.as_int()?).map_err(|_| bad())?;
            i += 1;
            for _ in 0..n {
                pairs.push((at(i)?.to_vec(), at(i + 1)?.to_vec()));
                i += 2;
            }
        }
        i += 1; // the entry's element count, for backwards walks
        if flags & DELETED == 0 {
            out.push(((ms, seq), pairs));
        }
    }
    Ok(())
}
