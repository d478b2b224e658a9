//! Sizes, durations and signals as users type them (command line, rules files).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_monitor::signal::Signal;
use memory_monitor::units;

fuzz_target!(|text: &str| {
    if let Ok(size) = units::parse_size(text) {
        let _ = size.resolve(u64::MAX, Some(u64::MAX));
        let _ = size.resolve(1, None);
        let _ = size.to_string();
    }
    if let Ok(duration) = units::parse_duration(text) {
        let _ = units::Period(duration).to_string();
    }
    if let Ok(signal) = text.parse::<Signal>() {
        let _ = signal.to_string();
    }
});
