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
        program::REPORT,
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
