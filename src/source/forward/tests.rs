use super::msgpack::{self, Value};
use super::protocol::{self, Refused};
use super::{Ids, entry};

fn s(x: &str) -> Value<'_> {
    Value::Str(x.as_bytes())
}

/// `v` as MessagePack (the widest headers: the reader must take every width).
fn encode(v: &Value, out: &mut Vec<u8>) {
    let len = |out: &mut Vec<u8>, tag: u8, n: usize| {
        out.push(tag);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    };
    match v {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Uint(u) => {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(b) => {
            len(out, 0xdb, b.len());
            out.extend_from_slice(b);
        }
        Value::Bin(b) => {
            len(out, 0xc6, b.len());
            out.extend_from_slice(b);
        }
        Value::Ext(t, b) => {
            len(out, 0xc9, b.len());
            out.push(*t as u8);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            len(out, 0xdd, items.len());
            items.iter().for_each(|i| encode(i, out));
        }
        Value::Map(pairs) => {
            len(out, 0xdf, pairs.len());
            for (k, v) in pairs {
                encode(k, out);
                encode(v, out);
            }
        }
    }
}

fn frame_of(v: Value<'_>) -> Result<Vec<entry::Entry>, Refused> {
    let mut bytes = Vec::new();
    encode(&v, &mut bytes);
    assert_eq!(msgpack::value_len(&bytes), Ok(bytes.len()));
    let mut unpacked = Vec::new();
    let f = protocol::frame(&bytes, &mut unpacked, 1 << 20)?;
    let ids = match f.chunk {
        Some(c) => Ids::Chunk(c),
        None => Ids::Connection { seed: 7, entry: 0 },
    };
    entry::entries(f, ids, "tag")
}

fn message(record: Value<'static>, chunk: &'static str) -> Value<'static> {
    Value::Array(vec![
        s("app.web"),
        Value::Uint(1_796_119_200),
        record,
        Value::Map(vec![(s("chunk"), s(chunk))]),
    ])
}

fn text(e: &entry::Entry) -> String {
    String::from_utf8(e.record.message.to_vec()).unwrap()
}

#[test]
fn the_same_entry_of_the_same_chunk_has_the_same_id_and_nothing_else_does() {
    let rec = || Value::Map(vec![(s("msg"), s("hi"))]);
    let a = frame_of(message(rec(), "c1")).unwrap();
    let again = frame_of(message(rec(), "c1")).unwrap();
    let other = frame_of(message(rec(), "c2")).unwrap();
    assert_eq!(a[0].id, again[0].id, "a resent chunk keeps its ids");
    assert_ne!(a[0].id, other[0].id, "another chunk is other documents");
    // Without a chunk, entries of one connection differ by their number.
    let list = Value::Array(vec![
        Value::Array(vec![Value::Uint(1), rec()]),
        Value::Array(vec![Value::Uint(1), rec()]),
    ]);
    let two = frame_of(Value::Array(vec![s("t"), list])).unwrap();
    assert_ne!(two[0].id, two[1].id);
}

#[test]
fn the_tag_replaces_a_member_and_pod_fields_are_the_documents_own() {
    let rec = Value::Map(vec![
        (s("tag"), s("mine")),
        (s("stream"), s("stdout")),
        (
            s("kubernetes"),
            Value::Map(vec![
                (s("namespace_name"), s("pay")),
                (s("labels"), Value::Map(vec![(s("app"), s("api"))])),
            ]),
        ),
        (Value::Uint(3), Value::Float(f64::NAN)),
    ]);
    let e = frame_of(message(rec, "c")).unwrap().remove(0);
    assert_eq!(text(&e), r#"{"3":null,"tag":"app.web"}"#);
    assert_eq!(e.meta.namespace.as_deref(), Some("pay"));
    assert_eq!(e.meta.labels.get("app").map(String::as_str), Some("api"));
    assert_eq!(
        String::from_utf8(e.meta.fields.clone()).unwrap(),
        r#","kubernetes":{"namespace_name":"pay","labels":{"app":"api"}}"#
    );
    assert_eq!(e.record.stream, Some(crate::vocab::Stream::Stdout));
    assert_eq!(e.record.time, "2026-12-01T10:00:00.000000000Z");
}

#[test]
fn fluent_bits_time_with_metadata_is_a_time() {
    // Fluent Bit 2.1+: [[EventTime, {}], record].
    let time = Value::Ext(0, &[0x6b, 0x0e, 0x9a, 0xa0, 0, 0, 0, 7]);
    let entry = Value::Array(vec![
        Value::Array(vec![time, Value::Map(vec![])]),
        Value::Map(vec![(s("log"), s("x"))]),
    ]);
    let v = Value::Array(vec![s("t"), Value::Array(vec![entry])]);
    let e = frame_of(v).unwrap().remove(0);
    assert_eq!(e.record.time, "2026-12-01T10:00:00.000000007Z");
}

#[test]
fn a_record_that_is_not_a_map_is_kept_as_its_text() {
    let e = frame_of(message(s("plain text"), "c")).unwrap().remove(0);
    assert_eq!(text(&e), r#"{"log":"plain text","tag":"app.web"}"#);
}

#[test]
fn frames_that_are_not_the_protocol_are_refused() {
    for bad in [
        Value::Map(vec![]),
        Value::Array(vec![]),
        Value::Array(vec![Value::Uint(1), Value::Uint(2), Value::Map(vec![])]),
        Value::Array(vec![s("t")]),
        // A message without its record; an entry that is not a pair; a time that is text.
        Value::Array(vec![s("t"), Value::Uint(1)]),
        Value::Array(vec![s("t"), Value::Array(vec![Value::Uint(1)])]),
        Value::Array(vec![s("t"), s("now"), Value::Map(vec![])]),
    ] {
        assert!(frame_of(bad.clone()).is_err(), "{bad:?}");
    }
    // Packed entries that end mid-entry.
    let packed = [0x92, 0x01];
    let v = Value::Array(vec![s("t"), Value::Bin(&packed)]);
    assert!(frame_of(v).is_err());
}

#[test]
fn the_ack_is_a_map_of_the_chunk_id() {
    for n in [3usize, 40, 300, 70_000] {
        let chunk = vec![b'z'; n];
        let ack = protocol::ack(&chunk);
        let (v, used) = msgpack::read(&ack).unwrap();
        assert_eq!(used, ack.len());
        assert_eq!(v, Value::Map(vec![(s("ack"), Value::Str(&chunk))]));
    }
}
