//! `policy::parse` on any text: it never panics, and every answer has the properties
//! the property tests check (one placed line per error, a message for people, accepted
//! policies compile within the kernel's limits).
#![no_main]

#[path = "../../firewall-user/tests/policy_checks/mod.rs"]
mod policy_checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The parser takes text: bytes that are not UTF-8 become U+FFFD, as a lossy reader's would.
    let _ = policy_checks::check(&String::from_utf8_lossy(data));
});
