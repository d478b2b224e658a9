//! Rules files: any text is either rules or one error line naming where it is wrong.
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use memory_monitor::rules::{self, Defaults};

fuzz_target!(|text: &str| {
    let defaults = Defaults {
        repeat: Some(Duration::from_secs(2)),
    };
    if let Err(error) = rules::parse_file(Path::new("rules.toml"), text, defaults) {
        let message = error.to_string();
        assert!(!message.contains('\n'), "one line: {message:?}");
    }
});
