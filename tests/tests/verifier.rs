//! The verifier's budget is a resource: every program of the shipped object must stay under half
//! of the kernel's limit of 1,000,000 processed instructions, so that older kernels and the next
//! checks have room. Measured on this kernel from `bpf_prog_info.verified_insns`.

use sipguard_common::abi::program;
use sipguard_tests::harness::TestFilter;

const BUDGET: u32 = 500_000;

#[test]
fn every_program_stays_under_half_of_the_verifier_limit() {
    let filter = TestFilter::new("");
    let mut report = Vec::new();
    for name in [
        program::ENTRY,
        program::JUDGE,
        program::SIP,
        program::HEADERS,
        program::DESTINATION,
        program::REPORT,
        program::CAPTURE,
        program::EGRESS,
        program::ANSWER,
        program::FEEDBACK,
    ] {
        let program = filter
            .loaded
            .ebpf
            .program(name)
            .unwrap_or_else(|| panic!("{name} missing from the object"));
        let info = program.info().expect("program info");
        let verified = info
            .verified_instruction_count()
            .expect("the kernel reports verified_insns (5.16+)");
        report.push(format!("{name}: {verified}"));
        assert!(
            verified > 0,
            "{name} was not verified (not loaded by the loader?)"
        );
        assert!(
            verified <= BUDGET,
            "{name} needed {verified} processed instructions, over the budget of {BUDGET}"
        );
    }
    eprintln!("verified instructions: {}", report.join(", "));
}

/// A map lookup the verifier sees with two maps at one call instruction (LLVM merges the
/// lookups of the two policy generations when it can) becomes an indirect call through the
/// map's ops, 12 ns more per packet on this VM; direct calls (`trie_lookup_elem`,
/// `__htab_map_lookup_elem`) or inlined array lookups are what every lookup must compile to.
#[test]
fn every_map_lookup_is_a_direct_call() {
    let filter = TestFilter::new("");
    for name in [
        program::ENTRY,
        program::JUDGE,
        program::SIP,
        program::HEADERS,
        program::DESTINATION,
        program::REPORT,
        program::CAPTURE,
        program::EGRESS,
        program::ANSWER,
        program::FEEDBACK,
    ] {
        let info = filter
            .loaded
            .ebpf
            .program(name)
            .unwrap_or_else(|| panic!("{name} missing from the object"))
            .info()
            .expect("program info");
        let dump = std::process::Command::new("bpftool")
            .args(["prog", "dump", "xlated", "id", &info.id().to_string()])
            .output()
            .expect("bpftool (installed by scripts/setup)");
        assert!(dump.status.success(), "bpftool failed on {name}");
        let xlated = String::from_utf8_lossy(&dump.stdout);
        assert!(
            xlated.contains("(95) exit"),
            "{name}: no exit instruction in the dump, is it the xlated code?"
        );
        let generic: Vec<&str> = xlated
            .lines()
            .filter(|line| line.contains("call bpf_map_lookup_elem#"))
            .collect();
        assert!(
            generic.is_empty(),
            "{name} has map lookups the verifier could not bind to one map: {generic:?}"
        );
    }
}
