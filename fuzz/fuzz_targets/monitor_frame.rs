//! The host decodes every frame a monitor sends (`docs/FUZZING.md`): arbitrary bytes
//! must give a message or an error, never a panic or an over-read, and a
//! decoded message must re-encode to something that decodes to itself.
#![no_main]

use clusterkit_host::protocol::{FromMonitor, ToMonitor, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = FromMonitor::decode(data) {
        let again = FromMonitor::decode(&message.encode()).expect("re-encoding decodes");
        assert_eq!(again, message);
    }
    if let Ok(message) = ToMonitor::decode(data) {
        assert_eq!(ToMonitor::decode(&message.encode()).expect("re-encoding decodes"), message);
    }
    // The framing layer too: a length prefix followed by whatever.
    let mut reader = data;
    let mut buf = Vec::new();
    while read_frame(&mut reader, &mut buf).is_ok() {
        let _ = FromMonitor::decode(&buf);
    }
});
