//! What the programs report: their ring buffer of events, drained in batches into records
//! allocated once, and their count of the events lost when it was full.

use std::io;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use memory_monitor_ebpf::{Event, OomReport, OomVictim, event_kind};
use tokio::io::unix::AsyncFd;

/// Events taken from the ring buffer per batch; records are reused, never allocated.
const EVENT_BATCH: usize = 256;

/// The kernel side's events, as the loop takes them. Poll mode's ([`Ring::none`]) has no
/// ring buffer: it never becomes readable and drains nothing.
pub(crate) struct Ring {
    attached: Option<Attached>,
    batch: Box<[Event]>,
    /// What the kernel said of each OOM kill in the batch, at its event's index (the rest of
    /// an [`OomReport`], which is longer than an event).
    victims: Box<[OomVictim]>,
    /// Events taken so far.
    handled: u64,
}

/// The maps of a loaded kernel side that report.
struct Attached {
    events: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    lost_flag: Array<MapData, u64>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("attached", &self.attached.is_some())
            .field("handled", &self.handled)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Poll mode's: nothing is ever reported.
    pub(crate) fn none() -> Ring {
        Ring {
            attached: None,
            batch: Box::default(),
            victims: Box::default(),
            handled: 0,
        }
    }

    /// The loaded programs' ring buffer `events` (registered with the runtime) and their count
    /// of lost events, per CPU, with the flag they raise on a loss.
    pub(super) fn attached(
        events: AsyncFd<RingBuf<MapData>>,
        lost: PerCpuArray<MapData, u64>,
        lost_flag: Array<MapData, u64>,
    ) -> Ring {
        Ring {
            attached: Some(Attached {
                events,
                lost,
                lost_flag,
            }),
            batch: vec![Event::default(); EVENT_BATCH].into_boxed_slice(),
            victims: vec![OomVictim::default(); EVENT_BATCH].into_boxed_slice(),
            handled: 0,
        }
    }

    /// Waits until events may be waiting (for ever, in poll mode).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        let Some(attached) = &self.attached else {
            return std::future::pending().await;
        };
        let mut guard = attached.events.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Takes the next batch of waiting events; returns how many (0 when none wait), each then
    /// read with [`Ring::event`].
    pub(crate) fn take_batch(&mut self) -> usize {
        let Some(attached) = self.attached.as_mut() else {
            return 0;
        };
        let ring = attached.events.get_mut();
        let mut count = 0;
        while count < self.batch.len() {
            let Some(item) = ring.next() else { break };
            if item.len() >= size_of::<Event>() {
                // SAFETY: every record the kernel side writes starts with a whole `Event`;
                // read_unaligned copies one out.
                let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
                if event.kind == event_kind::OOM_KILL && item.len() >= size_of::<OomReport>() {
                    // SAFETY: an OOM kill's record is a whole `OomReport`.
                    let report =
                        unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<OomReport>()) };
                    self.victims[count] = report.victim;
                }
                self.batch[count] = event;
                count += 1;
            }
        }
        self.handled += count as u64;
        count
    }

    /// Event `index` of the batch last taken.
    pub(crate) fn event(&self, index: usize) -> Event {
        self.batch[index]
    }

    /// What the kernel said of the victim of event `index` of the batch last taken, an OOM
    /// kill.
    pub(crate) fn victim(&self, index: usize) -> OomVictim {
        self.victims[index]
    }

    /// Events taken so far.
    pub(crate) fn handled(&self) -> u64 {
        self.handled
    }

    /// If events were lost since the last call, how many (in total so far).
    pub(crate) fn take_lost(&mut self) -> Option<u64> {
        let attached = self.attached.as_mut()?;
        match attached.lost_flag.get(&0, 0) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let _ = attached.lost_flag.set(0, 0, 0);
                let total = attached
                    .lost
                    .get(&0, 0)
                    .map_or(0, |per_cpu| per_cpu.iter().sum());
                Some(total)
            }
        }
    }

    /// The capabilities userspace must keep to use the kernel side's maps after start-up:
    /// none where the kernel checks privileges only when programs and maps are made (and in
    /// poll mode), `CAP_BPF` where it checks every map access (older kernels with unprivileged
    /// BPF disabled). Found by trying: a thread of its own drops `CAP_BPF`, `CAP_PERFMON` and
    /// `CAP_SYS_ADMIN` (only that thread's) and reads a map.
    pub(crate) fn capabilities_for_maps(&self) -> rustix::thread::CapabilitySet {
        use rustix::thread::{CapabilitySet, CapabilitySets};
        let Some(attached) = &self.attached else {
            return CapabilitySet::empty();
        };
        let lost_flag = &attached.lost_flag;
        let needed = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let Ok(current) = rustix::thread::capabilities(None) else {
                        return true;
                    };
                    let privileged =
                        CapabilitySet::BPF | CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN;
                    let dropped = rustix::thread::set_capabilities(
                        None,
                        CapabilitySets {
                            effective: current.effective - privileged,
                            permitted: current.permitted,
                            inheritable: current.inheritable,
                        },
                    );
                    dropped.is_err() || lost_flag.get(&0, 0).is_err()
                })
                .join()
                .unwrap_or(true)
        });
        match needed {
            true => CapabilitySet::BPF,
            false => CapabilitySet::empty(),
        }
    }
}
