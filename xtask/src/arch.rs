//! The architectures a release ships for, and what each is called where: Rust's target, Debian's
//! architecture, the OCI platform, qemu's system emulator. x86_64 is built natively; aarch64 is
//! cross-built here (Debian's `gcc-aarch64-linux-gnu` links it and compiles its C parts) and
//! run in qemu guests.

use std::process::Command;

use anyhow::{Result, bail};

/// An architecture the project builds and tests for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Every architecture a release ships for.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// `x86_64`, `amd64`, `aarch64` or `arm64`: the kernel's and Debian's names are both taken.
    pub fn parse(name: &str) -> Result<Arch> {
        match name {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => bail!("unknown architecture {name:?}: x86_64 (amd64) or aarch64 (arm64)"),
        }
    }

    /// The kernel's name (`uname -m`), as Rust's targets begin.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The static (musl) target.
    pub fn musl(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// Debian's name, which is also the OCI platform's architecture and the kernel packages'
    /// suffix (`linux-image-6.1.0-57-arm64`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// This machine's architecture.
    pub fn host() -> Arch {
        Arch::ALL
            .into_iter()
            .find(|arch| arch.is_host())
            .expect("xtask runs on an architecture the project ships for")
    }

    /// Whether this is the machine's own architecture (its binaries run here).
    pub fn is_host(self) -> bool {
        self.name() == std::env::consts::ARCH
    }

    /// Points `command` (a cargo build for this architecture's musl target) at the C
    /// cross-compiler and linker when the target is not the host's. Debian has no musl
    /// cross-compiler for aarch64; the GNU one links Rust's self-contained musl (its own
    /// start files and libc) and compiles the C dependencies (aws-lc, under the S3 writer's
    /// TLS), which call into libc only through what musl provides too.
    pub fn cross(self, command: &mut Command) -> &mut Command {
        if self.is_host() {
            return command;
        }
        let triple = self.musl();
        let (compiler, ar) = match self {
            Arch::Aarch64 => ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ar"),
            Arch::X86_64 => ("x86_64-linux-gnu-gcc", "x86_64-linux-gnu-ar"),
        };
        let upper = triple.to_uppercase().replace('-', "_");
        let lower = triple.replace('-', "_");
        command
            .env(format!("CARGO_TARGET_{upper}_LINKER"), compiler)
            .env(format!("CC_{lower}"), compiler)
            .env(format!("AR_{lower}"), ar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_names_of_an_architecture_are_taken() {
        assert_eq!(Arch::parse("arm64").unwrap(), Arch::Aarch64);
        assert_eq!(Arch::parse("aarch64").unwrap(), Arch::Aarch64);
        assert_eq!(Arch::parse("amd64").unwrap(), Arch::X86_64);
        assert!(Arch::parse("riscv64").is_err());
        assert_eq!(Arch::Aarch64.musl(), "aarch64-unknown-linux-musl");
        assert_eq!(Arch::Aarch64.debian(), "arm64");
    }

    #[test]
    fn a_cross_build_is_pointed_at_the_cross_compiler() {
        let mut command = Command::new("cargo");
        Arch::Aarch64.cross(&mut command);
        let envs: Vec<_> = command
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_owned())))
            .collect();
        assert!(envs.contains(&(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER".to_string(),
            Some("aarch64-linux-gnu-gcc".into())
        )));
        assert!(
            envs.iter()
                .any(|(k, _)| k == "CC_aarch64_unknown_linux_musl")
        );
        let mut native = Command::new("cargo");
        Arch::X86_64.cross(&mut native);
        assert_eq!(native.get_envs().count(), 0);
    }
}
