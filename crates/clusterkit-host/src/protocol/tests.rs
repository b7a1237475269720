//! The frame codec's tests: every message round-trips, and malformed
//! input is an error, never a panic.

use super::*;

fn sample_type() -> TypeDescription {
    TypeDescription {
        name: "t".into(),
        description: "a type".into(),
        characteristics: Characteristics::REATTACH,
        schema: Schema::new(vec![
            PropertySpec::string("dir").required().min(1),
            PropertySpec::i64("offset").range(-3, 3).default(1i64),
            PropertySpec::duration("d").apply(Apply::Live),
        ]),
    }
}

#[test]
fn the_crash_frame_is_a_crashing_message() {
    let frame = crash_frame(77, 11);
    let mut buf = Vec::new();
    read_frame(&mut &frame[..], &mut buf).unwrap();
    assert_eq!(
        FromMonitor::decode(&buf).unwrap(),
        FromMonitor::Crashing {
            call: 77,
            signal: 11
        }
    );
}

#[test]
fn an_unknown_state_is_a_malformed_frame() {
    let mut payload = FromMonitor::Reply {
        call: 1,
        outcome: Outcome::State(ResourceState::Online),
    }
    .encode();
    let last = payload.len() - 4;
    payload[last..].copy_from_slice(&99u32.to_le_bytes());
    let e = FromMonitor::decode(&payload).unwrap_err().to_string();
    assert!(e.contains("unknown resource state 99"), "{e}");
}

#[test]
fn every_message_round_trips() {
    let to = vec![
        ToMonitor::Call {
            call: 7,
            resource: 0,
            op: Op::LoadLibrary {
                library: 1,
                path: "/x.so".into(),
            },
        },
        ToMonitor::Call {
            call: 8,
            resource: 3,
            op: Op::Open {
                library: 1,
                type_name: "t".into(),
                name: "r".into(),
                properties: vec![1, 2],
                recover: true,
            },
        },
        ToMonitor::Call {
            call: 9,
            resource: 3,
            op: Op::Control {
                code: 5,
                input: vec![9],
            },
        },
        ToMonitor::Call {
            call: 10,
            resource: 3,
            op: Op::IsAlive,
        },
        ToMonitor::Shutdown,
    ];
    for m in to {
        assert_eq!(ToMonitor::decode(&m.encode()).unwrap(), m);
    }
    let from = vec![
        FromMonitor::Hello {
            pid: 4,
            protocol: 1,
        },
        FromMonitor::Reply {
            call: 1,
            outcome: Outcome::Types(vec![sample_type()]),
        },
        FromMonitor::Reply {
            call: 2,
            outcome: Outcome::Health(Health::degraded("slow")),
        },
        FromMonitor::Reply {
            call: 3,
            outcome: Outcome::Failed(Error::Busy("held".into())),
        },
        FromMonitor::Reply {
            call: 4,
            outcome: Outcome::State(ResourceState::OnlinePending),
        },
        FromMonitor::Report {
            call: 9,
            resource: 1,
            checkpoint: 2,
            wait_hint_ms: 3,
        },
        FromMonitor::Complete {
            call: 9,
            resource: 1,
            outcome: Err(Error::Terminated("t".into())),
        },
        FromMonitor::Log {
            resource: 0,
            level: 3,
            message: "hi".into(),
        },
        FromMonitor::Crashing { call: 5, signal: 6 },
    ];
    for m in from {
        assert_eq!(FromMonitor::decode(&m.encode()).unwrap(), m);
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [
        &b""[..],
        b"\x09",
        b"\x02\x01",
        b"\x01\x00\x00\x00\x00\x00\x00\x00",
    ] {
        assert!(FromMonitor::decode(bytes).is_err());
    }
    let mut buf = Vec::new();
    let mut oversized = &(u32::MAX.to_le_bytes())[..];
    assert!(matches!(
        read_frame(&mut oversized, &mut buf),
        Err(FrameError::Oversized(_))
    ));
    let mut closed: &[u8] = &[];
    assert!(matches!(
        read_frame(&mut closed, &mut buf),
        Err(FrameError::Closed)
    ));
    // Every truncation of a valid message is rejected cleanly.
    let full = FromMonitor::Reply {
        call: 1,
        outcome: Outcome::Types(vec![sample_type()]),
    }
    .encode();
    for cut in 0..full.len() {
        assert!(FromMonitor::decode(&full[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn appended_frames_read_back_in_order() {
    let messages = [
        FromMonitor::Reply {
            call: 7,
            outcome: Outcome::Health(Health::Healthy),
        },
        FromMonitor::Log {
            resource: 3,
            level: 2,
            message: "between".into(),
        },
        FromMonitor::Reply {
            call: 8,
            outcome: Outcome::Types(vec![sample_type()]),
        },
    ];
    let mut batch = Vec::new();
    for m in &messages {
        m.append_frame(&mut batch);
    }
    let mut input = &batch[..];
    let mut payload = Vec::new();
    for m in &messages {
        read_frame(&mut input, &mut payload).unwrap();
        assert_eq!(&FromMonitor::decode(&payload).unwrap(), m);
    }
    assert!(input.is_empty());
}

#[test]
fn a_frame_encoded_into_a_buffer_is_what_write_frame_writes() {
    let messages = [
        ToMonitor::Call {
            call: 7,
            resource: 3,
            op: Op::LooksAlive,
        },
        ToMonitor::Call {
            call: 8,
            resource: 1,
            op: Op::Control {
                code: 9,
                input: vec![1, 2, 3],
            },
        },
        ToMonitor::Shutdown,
    ];
    let mut appended = b"before".to_vec();
    let mut written = b"before".to_vec();
    for message in &messages {
        message.encode_frame_into(&mut appended);
        write_frame(&mut written, &message.encode()).unwrap();
    }
    assert_eq!(appended, written);
}
