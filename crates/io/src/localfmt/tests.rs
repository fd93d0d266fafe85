use std::io::Cursor;

use super::*;

fn sample(i: usize) -> Entry {
    Entry {
        source: if i.is_multiple_of(2) {
            "stdout"
        } else {
            "stderr"
        }
        .into(),
        time_nano: 1_700_000_000_000_000_000 + i as i64,
        line: format!("line {i}").into_bytes(),
        partial: false,
        partial_meta: None,
    }
}

#[test]
fn bytes_are_what_dockerd_writes() {
    let e = EntryRef {
        source: "stdout",
        time_nano: 1,
        line: b"hi",
        ..EntryRef::default()
    };
    let mut out = Vec::new();
    encode_record(&e, &mut out);
    let mut want = vec![0, 0, 0, 14, 0x0a, 6];
    want.extend_from_slice(b"stdout");
    want.extend_from_slice(&[0x10, 1, 0x1a, 2, b'h', b'i', 0, 0, 0, 14]);
    assert_eq!(out, want);
    assert_eq!(record_len(&e), out.len());

    // Split line piece: partial = true and the metadata message, fields in number order.
    let e = EntryRef {
        source: "stderr",
        time_nano: 300,
        line: b"",
        partial: true,
        partial_meta: Some(PartialMeta {
            last: true,
            id: "ab",
            ordinal: 2,
        }),
    };
    let mut out = Vec::new();
    encode_record(&e, &mut out);
    let mut want = vec![0, 0, 0, 23, 0x0a, 6];
    want.extend_from_slice(b"stderr");
    want.extend_from_slice(&[0x10, 0xac, 0x02, 0x20, 1, 0x2a, 8, 0x08, 1, 0x12, 2]);
    want.extend_from_slice(b"ab");
    want.extend_from_slice(&[0x18, 2, 0, 0, 0, 23]);
    assert_eq!(out, want);
}

#[test]
fn round_trip_forwards_and_backwards() {
    let mut entries: Vec<Entry> = (0..100).map(sample).collect();
    entries.push(Entry {
        source: "stdout".into(),
        time_nano: -5,
        line: vec![0xff, 0, b'\n', 7],
        partial: true,
        partial_meta: Some(PartialMetaBuf {
            last: false,
            id: "x".repeat(64),
            ordinal: -1,
        }),
    });
    entries.push(Entry {
        line: vec![b'z'; 20_000],
        ..sample(3)
    });
    entries.push(Entry::default());
    let mut file = Vec::new();
    for e in &entries {
        encode_record(&e.as_ref(), &mut file);
    }
    let forward: Vec<Entry> = ForwardReader::new(&file[..])
        .collect::<Result<_, _>>()
        .expect("forward");
    assert_eq!(forward, entries);
    let mut backward: Vec<Entry> = BackwardReader::new(Cursor::new(&file))
        .expect("seek")
        .collect::<Result<_, _>>()
        .expect("backward");
    backward.reverse();
    assert_eq!(backward, entries);

    let (last, start) = decode_last_record(&file).expect("last");
    assert_eq!(last.to_owned_entry(), Entry::default());
    assert_eq!(start, file.len() - 2 * SIZE_LEN);
    let (first, used) = decode_record(&file).expect("first");
    assert_eq!(first.to_owned_entry(), entries[0]);
    assert_eq!(used, record_len(&entries[0].as_ref()));
}

#[test]
fn unknown_fields_are_skipped() {
    // attrs = 6 (newer dockerds), a fixed32 field 9 and a fixed64 field 10.
    let mut entry = Vec::new();
    wire::encode_entry(&sample(0).as_ref(), &mut entry);
    entry.extend_from_slice(&[0x32, 4, 0x0a, 0, 0x12, 0]);
    entry.extend_from_slice(&[0x4d, 1, 2, 3, 4]);
    entry.extend_from_slice(&[0x51, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        decode_entry(&entry).expect("decode").to_owned_entry(),
        sample(0)
    );
}

#[test]
fn damage_is_an_error_not_a_panic() {
    let mut file = Vec::new();
    encode_record(&sample(1).as_ref(), &mut file);
    for cut in 0..file.len() {
        assert!(decode_record(&file[..cut]).is_err(), "cut at {cut}");
        let e = ForwardReader::new(&file[..cut]).next();
        if cut == 0 {
            assert!(e.is_none());
        } else {
            let err = e.expect("some").expect_err("truncated");
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "cut at {cut}"
            );
        }
    }
    let mut bad = file.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        decode_record(&bad),
        Err(FormatError::SizeMismatch { .. })
    ));
    let huge = [0xff, 0xff, 0xff, 0xff, 0, 0];
    assert!(matches!(
        decode_record(&huge),
        Err(FormatError::TooLarge(_))
    ));
    // A varint that never ends, and a length past the end.
    assert!(decode_entry(&[0x10, 0xff, 0xff]).is_err());
    assert!(decode_entry(&[0x1a, 0x05, 1]).is_err());
    // A known field with the wrong wire type.
    assert!(decode_entry(&[0x08, 1]).is_err());
    // A record with its start missing, read backwards.
    let mut r = BackwardReader::new(Cursor::new(&file[3..])).expect("seek");
    assert!(r.next().expect("some").is_err());
}
