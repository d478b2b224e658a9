//! `cmd:COMMAND`: each profile piped into a shell command, with what it is about in the
//! command's environment.

use std::time::Duration;

use super::{ProfileInfo, ProfileWriter, WriteError};

/// How long a command may take before it is killed and the write counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `sh -c COMMAND` per profile: the profile on stdin, and in the environment
/// `MM_PROFILE_NAME`, `MM_PID`, `MM_NAME`, `MM_RSS_BYTES`, `MM_LIMIT_BYTES`. A write succeeds
/// when the command exits 0 within 30 s.
#[derive(Debug)]
pub struct CommandWriter {
    command: String,
}

impl CommandWriter {
    /// A writer running `command`.
    pub fn new(command: &str) -> CommandWriter {
        CommandWriter {
            command: command.to_owned(),
        }
    }

    fn run(
        &self,
        name: &str,
        profile: &[u8],
        about: Option<&ProfileInfo<'_>>,
    ) -> Result<(), WriteError> {
        let mut env = vec![("MM_PROFILE_NAME", name.to_owned())];
        if let Some(about) = about {
            env.extend([
                ("MM_PID", about.pid.to_string()),
                ("MM_NAME", about.name.to_owned()),
                ("MM_RSS_BYTES", about.rss.to_string()),
                ("MM_LIMIT_BYTES", about.limit.to_string()),
                (
                    "MM_CONTAINER_ID",
                    about.container_id.unwrap_or("").to_owned(),
                ),
                ("MM_POD_UID", about.pod_uid.unwrap_or("").to_owned()),
            ]);
        }
        crate::host::shell::run_shell(&self.command, &env, profile, TIMEOUT).map_err(Into::into)
    }
}

impl ProfileWriter for CommandWriter {
    fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError> {
        self.run(name, profile, None)
    }

    fn write_about(
        &self,
        name: &str,
        profile: &[u8],
        about: &ProfileInfo<'_>,
    ) -> Result<(), WriteError> {
        self.run(name, profile, Some(about))
    }

    fn describe(&self) -> String {
        format!("cmd:{}", self.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_gets_the_profile_and_the_facts() {
        let out = std::env::temp_dir().join(format!("mm-cmd-writer-{}", std::process::id()));
        let writer = CommandWriter::new(&format!(
            "cat > {0}; echo \"$MM_PROFILE_NAME $MM_PID $MM_NAME $MM_RSS_BYTES $MM_LIMIT_BYTES $MM_CONTAINER_ID:$MM_POD_UID\" >> {0}",
            out.display()
        ));
        let about = ProfileInfo {
            pid: 7,
            name: "app",
            rss: 2048,
            limit: 1024,
            container_id: Some("c0ffee"),
            pod_uid: None,
        };
        writer.write_about("p.pb.gz", b"PROFILE\n", &about).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, "PROFILE\np.pb.gz 7 app 2048 1024 c0ffee:\n");
        std::fs::remove_file(&out).unwrap();
        assert!(CommandWriter::new("exit 3").write("p", b"").is_err());
    }
}
