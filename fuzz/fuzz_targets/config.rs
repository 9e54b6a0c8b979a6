//! Any text as a config: parsed or refused with problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logferry::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = Config::from_toml(text, |name| (name == "SET").then(|| "v".to_owned())) {
        assert!(!problems.is_empty());
    }
});
