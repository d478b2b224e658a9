//! The table of watched processes: allocated once with room for `--max-processes` records and
//! kept sorted by PID, with a count of the processes under each rule; inserting, finding and
//! sweeping never allocate.

use super::process::WatchedProcess;
use crate::rules::MAX_RULES;

/// The table of watched processes, sorted by PID, never growing past its capacity.
#[derive(Debug)]
pub(crate) struct ProcessTable {
    entries: Vec<WatchedProcess>,
    capacity: usize,
    generation: u32,
    /// How many are watched under each rule (kept as records come and go, for the metrics).
    per_rule: [u32; MAX_RULES],
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the watch list is full ({0} processes)")]
pub(crate) struct Full(pub usize);

impl ProcessTable {
    /// An empty table with room for `capacity` processes, allocated now.
    pub(crate) fn with_capacity(capacity: usize) -> ProcessTable {
        ProcessTable {
            entries: Vec::with_capacity(capacity),
            capacity,
            generation: 0,
            per_rule: [0; MAX_RULES],
        }
    }

    /// How many processes are watched under each rule (indexed like the rules).
    pub(crate) fn per_rule(&self) -> &[u32; MAX_RULES] {
        &self.per_rule
    }

    /// Counts the processes per rule again (after records were moved to other rules).
    pub(crate) fn recount(&mut self) {
        self.per_rule = [0; MAX_RULES];
        for watched in &self.entries {
            self.per_rule[watched.rule] += 1;
        }
    }

    fn count(per_rule: &mut [u32; MAX_RULES], watched: &WatchedProcess, change: i32) {
        let count = &mut per_rule[watched.rule];
        *count = count.saturating_add_signed(change);
    }

    /// How many processes are watched.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is watched.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record for `pid`, if watched.
    pub(crate) fn get(&self, pid: i32) -> Option<&WatchedProcess> {
        self.position(pid).ok().map(|i| &self.entries[i])
    }

    /// The record for `pid`, if watched, for updating.
    pub(crate) fn get_mut(&mut self, pid: i32) -> Option<&mut WatchedProcess> {
        self.position(pid).ok().map(|i| &mut self.entries[i])
    }

    fn position(&self, pid: i32) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&pid, |w| w.pid)
    }

    /// Adds a process (replacing a stale record with the same PID).
    pub(crate) fn insert(&mut self, mut watched: WatchedProcess) -> Result<(), Full> {
        watched.seen = self.generation;
        match self.position(watched.pid) {
            Ok(i) => {
                Self::count(&mut self.per_rule, &self.entries[i], -1);
                Self::count(&mut self.per_rule, &watched, 1);
                self.entries[i] = watched;
            }
            Err(_) if self.entries.len() >= self.capacity => return Err(Full(self.capacity)),
            Err(i) => {
                Self::count(&mut self.per_rule, &watched, 1);
                self.entries.insert(i, watched);
            }
        }
        Ok(())
    }

    /// Updates the record for `pid` with `change` (which may move it to another rule, as
    /// [`WatchedProcess::refresh`] does), keeping the per-rule counts right; `None` if not watched.
    pub(crate) fn update<R>(
        &mut self,
        pid: i32,
        change: impl FnOnce(&mut WatchedProcess) -> R,
    ) -> Option<R> {
        let at = self.position(pid).ok()?;
        let watched = &mut self.entries[at];
        Self::count(&mut self.per_rule, watched, -1);
        let result = change(watched);
        Self::count(&mut self.per_rule, watched, 1);
        Some(result)
    }

    /// Stops watching `pid`; returns its record.
    pub(crate) fn remove(&mut self, pid: i32) -> Option<WatchedProcess> {
        let removed = self.position(pid).ok().map(|i| self.entries.remove(i));
        if let Some(watched) = &removed {
            Self::count(&mut self.per_rule, watched, -1);
        }
        removed
    }

    /// All records, in PID order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &WatchedProcess> {
        self.entries.iter()
    }

    /// Starts a scan: records not [`ProcessTable::mark_seen`] before [`ProcessTable::sweep`] go.
    pub(crate) fn begin_scan(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Marks `pid` as still present in this scan; false if it is not watched.
    pub(crate) fn mark_seen(&mut self, pid: i32) -> bool {
        let generation = self.generation;
        self.get_mut(pid).map(|w| w.seen = generation).is_some()
    }

    /// Ends a scan: drops every record the scan did not see, calling `gone` on each.
    pub(crate) fn sweep(&mut self, mut gone: impl FnMut(&WatchedProcess)) {
        let (generation, per_rule) = (self.generation, &mut self.per_rule);
        self.entries.retain(|w| {
            let keep = w.seen == generation;
            if !keep {
                Self::count(per_rule, w, -1);
                gone(w);
            }
            keep
        });
    }

    /// Visits every record for updating, keeping those for which `keep` returns true. (A
    /// record `keep` moves to another rule is counted under it after [`ProcessTable::recount`].)
    pub(crate) fn retain_mut(&mut self, mut keep: impl FnMut(&mut WatchedProcess) -> bool) {
        let per_rule = &mut self.per_rule;
        self.entries.retain_mut(|w| {
            let kept = keep(w);
            if !kept {
                Self::count(per_rule, w, -1);
            }
            kept
        });
    }
}
