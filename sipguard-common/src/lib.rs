//! Shared between the sipguard XDP program and its controller: the map ABI ([`abi`]) and the pure,
//! panic-free packet logic ([`parse`], [`verdict`], [`source`]) that the kernel program runs and host tests
//! exercise on crafted frames.
#![no_std]

pub mod abi;
pub mod answer;
pub mod budget;
pub mod capture;
pub mod dial;
pub mod feedback;
pub mod parse;
pub mod sip;
pub mod source;
pub mod verdict;

#[cfg(test)]
extern crate std;
