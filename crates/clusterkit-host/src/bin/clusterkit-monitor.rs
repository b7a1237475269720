//! The clusterkit monitor process. Started by a host with its socket on file
//! descriptor 3; not meant to be run by hand.

fn main() {
    clusterkit_host::run_monitor();
}
