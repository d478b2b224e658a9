//! The S3 writer signs its requests. moto's server (tests/src/servers.rs) checks every
//! request's signature, so the S3 test in profile.rs passes only with writes signed with the
//! right key; here the same writes signed with a wrong secret are refused, which shows that
//! the server's check is real.

use memory_monitor_tests::servers::S3Server;
use memory_monitor_tests::shipped::released;
use memory_monitor_tests::{Monitor, Target, unique_name};

#[test]
fn a_profile_signed_with_the_wrong_secret_is_refused() {
    let server = S3Server::start();
    server.create_bucket("profiles");
    let name = unique_name("mmp-sig");
    let mut target = Target::spawn(&name);
    target.grow_memfd(48);
    let mut env = server.env();
    for (key, value) in &mut env {
        if key == "AWS_SECRET_ACCESS_KEY" {
            *value = "not-the-secret".to_string();
        }
    }
    let args = memory_monitor_tests::usr1_over_32m(
        "poll",
        &["--profile-to", "s3://profiles/breaches", &name],
    );
    // The S3 writer is the release build's (the object-store feature).
    let mut monitor = Monitor::start_with(&args, |command| {
        released(command);
        command.envs(env);
    });
    assert!(target.wait_signal(libc::SIGUSR1), "{}", monitor.log_text());
    let pid = format!("pid={}", target.pid());
    let refused = monitor.expect_log(&[r#"event="profile_failed""#, &pid]);
    assert!(refused.contains("SignatureDoesNotMatch"), "{refused}");
    assert_eq!(server.list("profiles"), Vec::<String>::new());
    assert!(monitor.stop().success());
}
