#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_fuzz_targets::pg_archive(data);
});
