//! The man page: clap's sections, generated from the command line's own definition so that
//! they never drift from it, and the sections a command line cannot say (the rules file, exit
//! status, signals, environment, files), written here in roff.

use std::io::Write as _;

use clap_mangen::Man;

/// Renders the man page of `command`, with `examples` (a command line and what it does).
pub(crate) fn render(command: clap::Command, examples: &[(&str, &str)]) -> String {
    let man = Man::new(command);
    let mut out = Vec::new();
    let rendered = (|| -> std::io::Result<()> {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
        out.write_all(SECTIONS.as_bytes())?;
        out.write_all(b".SH EXAMPLES\n")?;
        for (command, what) in examples {
            write!(out, ".TP\n.B {}\n{}\n", roff(command), roff(what))?;
        }
        out.write_all(SEE_ALSO.as_bytes())?;
        man.render_version_section(&mut out)
    })();
    rendered.expect("writing to memory cannot fail");
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` as roff text: dashes as `\-` (a hyphen would be a typographer's dash), backslashes
/// escaped, and no line starting as a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', r"\e").replace('-', r"\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!(r"\&{escaped}"),
        false => escaped,
    }
}

/// What the command line's definition cannot say.
const SECTIONS: &str = r#".SH "RULES FILE"
\fB\-\-config\fR \fIFILE\fR reads rules from a TOML file, one \fB[[rule]]\fR table each (at
most 32). A process is watched under the \fBfirst\fR rule that selects it, so put specific
rules first. NAME, \fB\-\-pid\fR, \fB\-\-user\fR or \fB\-\-cgroup\fR on the command line make
one more rule, checked first.
.PP
.nf
.RS 4
# JVMs: SIGTERM at 90% of their container's limit, SIGKILL 30 s later.
[[rule]]
name = "java\-apps"             # in logs and metrics (default: rule\-N)
cmdline = "\-jar app.jar"       # how it selects: see below
max\-memory = "90% of cgroup"
signal = "TERM"
kill\-after = "30s"

# Everything nginx.service runs, but its cache loader.
[[rule]]
name = "nginx"
cgroup = "/system.slice/nginx.service"
exclude\-name = "cache\-loader"
max\-memory = "2G"
repeat = "never"
.RE
.fi
.PP
A rule selects by at most one of these name keys, and/or by user, and/or by cgroup (all
that are given must hold), less what its exclude keys leave out:
.TP
\fBprefix\fR, \fBexact\fR, \fBregex\fR, \fBcmdline\fR, \fBcmdline\-regex\fR
A string, matched as \fB\-\-match\fR says: the start of the name, the whole name, a regular
expression on the name, a string anywhere in the command line, a regular expression on the
command line.
.TP
\fBuser\fR
A user name or uid, or a list of them: processes running as one of them (effective uid).
.TP
\fBcgroup\fR
A cgroup path: processes of that cgroup and those below it. One that does not exist yet is
waited for: the rule selects nothing until it is made (\fBevent=cgroup_missing\fR, then
\fBevent=cgroup_appeared\fR).
.TP
\fBexclude\-name\fR, \fBexclude\-regex\fR, \fBexclude\-user\fR, \fBexclude\-cgroup\fR
One value or a list: processes left out by exact name, by a regular expression on the name,
by user, by cgroup, however else they match.
.PP
Every other key is the long option that means the same, with the same values:
\fBname\fR (the rule's label), \fBmax\-memory\fR (required), \fBwarn\-at\fR, \fBleak\-horizon\fR,
\fBleak\-warmup\fR, \fBleak\-sustain\fR, \fBsignal\fR, \fBrepeat\fR
(default: every \fB\-\-interval\fR), \fBkill\-after\fR, \fBexec\fR, \fBexec\-timeout\fR,
\fBprofile\-dir\fR, \fBprofile\-to\fR, \fBprofile\-budget\fR, \fBprofile\-at\fR,
\fBcount\fR (\fBrss\fR or \fBrss+swap\fR), \fBact\-on\fR (\fBprocess\fR,
\fBprocess\-group\fR, or \fBcgroup\fR with a \fBcgroup\fR key), \fBgroup\-limit\fR,
\fBgroup\-pick\fR (\fBlargest\fR or \fBfastest\fR), \fBgroup\-settle\fR, \fBon\-pressure\fR
(\fB"some:150ms/1s"\fR), \fBon\-high\fR (\fBtrue\fR, with a \fBcgroup\fR key) and
\fBpressure\-action\fR (\fBreport\fR or \fBsignal\-largest\fR). Sizes, durations and signals may be strings or
numbers (\fBmax\-memory = 500\fR is 500 MiB).
.PP
A mistake is one line naming the file, the line and the key (an unknown key with the known
one nearest to it), and exit status 2; \fB\-\-check\-config\fR checks a file without running,
and prints the warnings too. \fBSIGHUP\fR (or \fB\-\-watch\-config\fR) reads the file again.
.SH DIAGNOSTICS
Warnings that the monitor runs as asked anyway, at start and from \fB\-\-check\-config\fR:
a limit under 4 MiB, which nearly every process is over; SIGKILL repeated; a size in decimal
units (\fBMB\fR is read as MiB); polling more often than every 100ms. A rule that selects no
process is said at start, and again if none appears within 30 intervals
(\fBevent=no_match\fR). Another monitor with the same rules on this host is named at start
(\fBevent=other_monitor\fR): each would signal the processes both select.
.SH "EXIT STATUS"
.TP
.B 0
Stopped by SIGINT or SIGTERM; \fB\-\-once\fR found nothing over its limit; every \fB\-\-pid\fR
process has exited; \fB\-\-check\-config\fR found the rules good.
.TP
.B 1
A runtime failure (the reason is the last log line, \fBevent=fatal\fR), or \fB\-\-once\fR
found a process over its limit.
.TP
.B 2
A bad command line or rules file, with one line on stderr naming the bad value.
.SH SIGNALS
.TP
.B SIGHUP
Read the rules file again. Every watched process is judged under the rule that selects it now
(a breach already under way carries on); a file that cannot be used changes nothing, and the
monitor logs why (\fBevent=reload_failed\fR). Under systemd it says \fBRELOADING=1\fR first and
\fBREADY=1\fR after.
.TP
.BR SIGINT ", " SIGTERM
Stop, and exit 0. Nothing is left in the kernel, whatever the way out (SIGKILL included).
.SH ENVIRONMENT
.TP
.B NOTIFY_SOCKET
systemd's notification socket (\fBType=notify\fR): the monitor says \fBREADY=1\fR once
watching, \fBRELOADING=1\fR and \fBREADY=1\fR around a reload, and \fBSTOPPING=1\fR.
.TP
.BR WATCHDOG_USEC ", " WATCHDOG_PID
systemd's watchdog (\fBWatchdogSec=\fR): pinged at half the timeout.
.TP
.B JOURNAL_STREAM
When it names stderr (a service's stream to the journal), text lines start with their syslog
priority (\fB<4>\fR) instead of a timestamp and a level.
.TP
.BR AWS_ACCESS_KEY_ID ", " AWS_SECRET_ACCESS_KEY ", " AWS_SESSION_TOKEN ", " AWS_REGION ", " AWS_ENDPOINT_URL ", " AWS_ALLOW_HTTP
Credentials, region and endpoint of the \fBs3://\fR profile writer (\fBAWS_ENDPOINT_URL\fR and
\fBAWS_ALLOW_HTTP=true\fR for a local S3\-compatible store).
.PP
\fB\-\-exec\fR commands get \fBMM_EVENT\fR (\fBbreach\fR, \fBwarn\fR, \fBleak_suspected\fR or \fBgroup_breach\fR), \fBMM_PID\fR, \fBMM_NAME\fR, \fBMM_UID\fR, \fBMM_USER\fR, \fBMM_RSS_BYTES\fR,
\fBMM_LIMIT_BYTES\fR, \fBMM_SIGNAL\fR, \fBMM_ACTED_ON\fR (\fBprocess\fR, \fBprocess\-group\fR,
\fBcgroup\fR, or empty where nothing was signalled), \fBMM_PROFILE\fR, \fBMM_RULE\fR,
\fBMM_CONTAINER_ID\fR and \fBMM_POD_UID\fR; \fBcmd:\fR profile writers \fBMM_PROFILE_NAME\fR, \fBMM_PID\fR,
\fBMM_NAME\fR, \fBMM_RSS_BYTES\fR, \fBMM_LIMIT_BYTES\fR, \fBMM_CONTAINER_ID\fR and
\fBMM_POD_UID\fR.
.SH FILES
.TP
.I /proc
Every process's name, command line, cgroup and resident memory (\fIstatm\fR, \fIsmaps\fR for
profiles).
.TP
.I /sys/kernel/btf/vmlinux
The kernel's type information, for eBPF mode's \fBtp\-btf\fR attach.
.TP
.I /sys/kernel/tracing
tracefs: the tracepoints' record layouts, checked before the BPF programs load (mounted there
when it is mounted nowhere).
.TP
.I /sys/fs/cgroup
cgroup v2 (or v1's memory controller): \fB\-\-cgroup\fR and limits given as "90% of cgroup".
.TP
.I /etc/default/memory\-monitor
The arguments of \fBmemory\-monitor.service\fR (\fBMEMORY_MONITOR_ARGS\fR).
.TP
.I /etc/memory\-monitor/NAME.env
The arguments of the instance \fBmemory\-monitor@NAME.service\fR.
.TP
.I /var/lib/memory\-monitor
The units' state directory, where profiles go when asked to.
.TP
.I /run/memory\-monitor
A lock per set of rules, held by the monitor that runs them (root's only), so that a second
monitor with the same rules is noticed.
"#;

const SEE_ALSO: &str = r#".SH "SEE ALSO"
.BR systemd.service (5),
.BR sd_notify (3),
.BR proc (5)
"#;
