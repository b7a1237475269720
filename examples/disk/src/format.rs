//! FORMAT: writing a fresh layout to blocks 0 and 1, refusing to overwrite
//! what is not a clusterkit disk unless forced.

use std::path::Path;

use clusterkit::{Error, Properties, PropertySpec, Result, Schema};

use crate::device::{self, AlignedBlock, Device};
use crate::layout::{LeaseStamp, OLD_SIGNATURE, PROBE_BLOCK, RECORD_BLOCK, Record, SIGNATURE};
use crate::{busy_error, read_error, write_error};

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Formats the disk at `path` (see [`FORMAT`](crate::FORMAT)); refuses
/// foreign data unless `force`.
pub(crate) fn format_disk(path: &Path, force: bool) -> Result<()> {
    let (device, _) = Device::open(path, true)?;
    match device::try_lock(&device.file) {
        Ok(true) => {}
        Ok(false) => {
            let record = device
                .read_block(RECORD_BLOCK)
                .ok()
                .map(|b| Record::from_block(&b));
            return Err(busy_error(path, record));
        }
        Err(e) => return Err(Error::io(format_args!("locking {}", path.display()), &e)),
    }
    // From here on, dropping `device` closes it and releases the lock.
    let block0 = device
        .read_block(RECORD_BLOCK)
        .map_err(|e| read_error(path, &e))?;
    let block1 = device
        .read_block(PROBE_BLOCK)
        .map_err(|e| Error::io(format_args!("reading block 1 of {}", path.display()), &e))?;
    // Layout 1 is ours too: FORMAT is how it becomes layout 2.
    let ours = block0[..8] == SIGNATURE || block0[..8] == OLD_SIGNATURE;
    let blank = block0.iter().chain(block1.iter()).all(|&b| b == 0);
    if !ours && !blank && !force {
        return Err(Error::InvalidState(format!(
            "disk {} holds data that is not a clusterkit disk (block 0 starts with {}): FORMAT \
             refuses to overwrite it; pass `force = true` to overwrite blocks 0 and 1",
            path.display(),
            hex_prefix(&block0)
        )));
    }
    let zeros = AlignedBlock::zeroed();
    device
        .write_block(PROBE_BLOCK, &zeros, false)
        .map_err(|e| Error::io(format_args!("writing block 1 of {}", path.display()), &e))?;
    let mut block = AlignedBlock::zeroed();
    Record::free(0).encode_into(LeaseStamp::default(), &mut block)?;
    device
        .write_block(RECORD_BLOCK, &block, true)
        .map_err(|e| write_error(path, &e))?;
    let _ = device::unlock(&device.file);
    Ok(())
}

/// The options FORMAT takes on a resource.
pub(crate) fn force_spec() -> PropertySpec {
    PropertySpec::bool("force")
        .describe("Overwrite blocks 0 and 1 even when they hold something else")
        .default(false)
}

/// Decodes `input` (empty: no properties) and validates it against `specs`.
pub(crate) fn decode_input(input: &[u8], specs: Vec<PropertySpec>) -> Result<Properties> {
    let given = if input.is_empty() {
        Properties::new()
    } else {
        Properties::decode(input)?
    };
    Ok(Schema::new(specs).validate(&given)?)
}
