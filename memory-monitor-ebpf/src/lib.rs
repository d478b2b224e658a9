//! Records shared by memory-monitor's BPF programs and its userspace loader.
#![no_std]
