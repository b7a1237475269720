//! The monitor's reading of host frames, on a socket pair.

use super::*;

fn frame(message: &ToMonitor) -> Vec<u8> {
    let mut bytes = Vec::new();
    protocol::write_frame(&mut bytes, &message.encode()).unwrap();
    bytes
}

#[test]
fn frames_split_across_reads_or_larger_than_a_read_are_decoded_whole() {
    let (mut host, monitor) = UnixStream::pair().unwrap();
    let check = ToMonitor::Call {
        call: 1,
        resource: 5,
        op: Op::LooksAlive,
    };
    // Bigger than the input buffer and the socket's buffer: the writer
    // blocks until the reader has grown its buffer and drained it.
    let open = ToMonitor::Call {
        call: 2,
        resource: 6,
        op: Op::Open {
            library: 1,
            type_name: "dummy".into(),
            name: "big".into(),
            properties: vec![7; 5 * INPUT_CHUNK],
            recover: false,
        },
    };
    let terminate = ToMonitor::Call {
        call: 3,
        resource: 5,
        op: Op::Terminate,
    };
    let first = frame(&check);
    let mut rest = first[3..].to_vec();
    rest.extend(frame(&open));
    rest.extend(frame(&terminate));
    let writer = std::thread::spawn(move || {
        host.write_all(&first[..3]).unwrap(); // a frame cut in its length prefix
        host.write_all(&rest).unwrap();
        host
    });
    let mut input = HostInput::new(monitor);
    let mut arrivals = Arrivals::default();
    let mut queued = Vec::new();
    let mut alone = Vec::new();
    while queued.len() + alone.len() < 3 {
        input.read_calls(&mut arrivals);
        let (q, a): (&[(u32, Call)], &[Call]) = arrivals.contents();
        queued.extend(q.iter().map(|(key, c)| (*key, c.call, c.op.clone())));
        alone.extend(a.iter().map(|c| (c.resource, c.call, c.op.clone())));
        arrivals = Arrivals::default();
    }
    let ToMonitor::Call { op: open_op, .. } = open else {
        unreachable!()
    };
    assert_eq!(queued, [(5, 1, Op::LooksAlive), (6, 2, open_op)]);
    assert_eq!(alone, [(5, 3, Op::Terminate)]);
    // Everything read was decoded, nothing is left over.
    drop(writer.join().unwrap());
    assert_eq!(input.start, input.end);
}
