//! Fuzzes `Properties::decode` (`docs/PROPERTY-LIST.md`, `docs/FUZZING.md`): on any input it must return
//! an error that points inside the input, or a list that re-encodes to an
//! encoding of the same length (only the entry order may change) that
//! decodes to the same list and is its own canonical form.

#![no_main]

use clusterkit::Properties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let props = match Properties::decode(data) {
        Ok(props) => props,
        Err(e) => {
            assert!(e.offset <= data.len(), "error offset {} past the input", e.offset);
            return;
        }
    };
    let encoded = props.encode();
    assert_eq!(encoded.len(), data.len(), "re-encoding changed the length");
    let again = Properties::decode(&encoded).expect("a re-encoded list must decode");
    assert_eq!(again, props, "decode(encode(list)) != list");
    assert_eq!(again.encode(), encoded, "the encoding is not canonical");
});
