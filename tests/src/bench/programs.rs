//! Size of every program measured, as the kernel reports it after verification and JIT.

use aya::programs::ProgramInfo;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProgramRow {
    /// Name in the kernel (`bpftool prog show`).
    pub program: String,
    /// What it is in this benchmark.
    pub role: String,
    pub id: u32,
    /// Instructions after verification (xlated bytes / 8; a 64-bit immediate load counts 2).
    pub xlated_insns: u32,
    /// Instructions the verifier processed to prove the program safe (`verified_insns`): a
    /// measure of path complexity, not of the cost of one run.
    pub verified_insns: u32,
    pub jited_bytes: u32,
}

impl ProgramRow {
    pub(crate) fn new(info: &ProgramInfo, role: &str) -> ProgramRow {
        ProgramRow {
            program: info.name_as_str().unwrap_or("?").to_string(),
            role: role.to_string(),
            id: info.id(),
            xlated_insns: info.size_translated().unwrap_or(0) / 8,
            verified_insns: info.verified_instruction_count().unwrap_or(0),
            jited_bytes: info.size_jitted(),
        }
    }
}
