#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_fuzz_targets::globals_sql(data);
});
