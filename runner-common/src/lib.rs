//! `#[repr(C)]` types shared by the daemon and the eBPF programs in `runner-ebpf`.
#![no_std]
