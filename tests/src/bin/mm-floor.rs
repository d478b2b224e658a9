//! Benchmark: the floor under the RSS programs' cost.
//!
//! `mm-floor OBJECT tracepoint|tp-btf`: loads the empty program of the BPF object at OBJECT
//! (`floor` or `floor_btf`, which the monitor never loads) attached to `kmem:rss_stat` the way
//! the monitor's RSS program would be, prints `attached`, and keeps it attached until its
//! standard input closes. What an empty program costs each page fault is the kernel's own
//! price for that attach type, which no program of ours can go under.

use std::io::Read as _;

use aya::programs::{BtfTracePoint, TracePoint};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [object, attach] = &args[..] else {
        panic!("usage: mm-floor OBJECT tracepoint|tp-btf");
    };
    let mut ebpf = aya::Ebpf::load_file(object).expect("the BPF object loads");
    match attach.as_str() {
        "tracepoint" => {
            mount_tracefs();
            let program: &mut TracePoint = ebpf
                .program_mut("floor")
                .expect("floor")
                .try_into()
                .expect("a tracepoint");
            program.load().expect("floor loads");
            program.attach("kmem", "rss_stat").expect("floor attaches");
        }
        "tp-btf" => {
            let btf = aya::Btf::from_sys_fs().expect("the kernel's BTF");
            let program: &mut BtfTracePoint = ebpf
                .program_mut("floor_btf")
                .expect("floor_btf")
                .try_into()
                .expect("a BTF tracepoint");
            program.load("rss_stat", &btf).expect("floor_btf loads");
            program.attach().expect("floor_btf attaches");
        }
        other => panic!("no attach type {other}"),
    }
    println!("attached");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A classic tracepoint is found through tracefs, which is not always mounted.
fn mount_tracefs() {
    let tracing = c"/sys/kernel/tracing";
    if std::path::Path::new("/sys/kernel/tracing/events").exists() {
        return;
    }
    // SAFETY: valid C strings; mounting is what this program is run as root for.
    let mounted = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            tracing.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(
        mounted,
        0,
        "cannot mount tracefs: {}",
        std::io::Error::last_os_error()
    );
}
