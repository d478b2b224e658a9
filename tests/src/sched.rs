//! A scheduling set-up that makes a race between a watched process and the monitor happen on
//! demand instead of once in thousands of runs: both on one CPU, under full preemption, so a
//! wake-up the kernel sends the monitor from inside the watched process's fault switches to the
//! monitor right there, before the fault's remaining steps run.

use std::path::Path;

/// Where the kernel lets its preemption model be switched at run time (`PREEMPT_DYNAMIC`).
const PREEMPT_MODEL: &str = "/sys/kernel/debug/sched/preempt";

/// One CPU under full preemption for this thread and everything it starts, until dropped.
pub struct OneCpuPreempted {
    /// The preemption model to go back to (where it could be switched).
    model: Option<String>,
    /// This thread's CPUs before.
    affinity: libc::cpu_set_t,
}

impl OneCpuPreempted {
    /// Pins this thread, and so the processes it starts, to the CPU it runs on, and switches
    /// the kernel to full preemption where it can (`sched/preempt` in debugfs); where it cannot,
    /// only the pinning holds. [`OneCpuPreempted::preempted`] says which.
    pub fn start() -> OneCpuPreempted {
        // SAFETY: a zeroed set is a valid empty one; the calls fill in or read this thread's.
        let affinity = unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut before), 0);
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(libc::sched_getcpu().max(0) as usize, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            before
        };
        if !Path::new(PREEMPT_MODEL).exists() {
            // SAFETY: NUL-terminated strings; a failure leaves nothing to undo.
            unsafe {
                libc::mount(
                    c"debugfs".as_ptr(),
                    c"/sys/kernel/debug".as_ptr(),
                    c"debugfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
        }
        // The file reads as the models with the current one in parentheses.
        let model = std::fs::read_to_string(PREEMPT_MODEL)
            .ok()
            .and_then(|models| {
                let current = models.split('(').nth(1)?.split(')').next()?.to_string();
                std::fs::write(PREEMPT_MODEL, "full").ok()?;
                Some(current)
            });
        OneCpuPreempted { model, affinity }
    }

    /// Whether the kernel runs under full preemption now.
    pub fn preempted(&self) -> bool {
        self.model.is_some()
    }
}

impl Drop for OneCpuPreempted {
    fn drop(&mut self) {
        if let Some(model) = &self.model {
            let _ = std::fs::write(PREEMPT_MODEL, model);
        }
        // SAFETY: the set read at the start.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.affinity)
        };
    }
}
