//! Real servers on loopback for the profile writers' tests: moto's S3-compatible server (a
//! real S3 implementation, installed by `cargo xtask setup`, checking every request's
//! signature), and a small HTTP server that accepts `PUT`s.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("address").port()
}

/// One HTTP/1.1 request over a fresh connection: the status and the body.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(crate::patience()))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let body = read_body(&mut reader, &headers, true)?;
    Ok((status, body))
}

/// Reads a message's start line and headers (names lower-cased): the status code (0 for a
/// request) and the headers.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut start = String::new();
    if reader.read_line(&mut start)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            return Ok((status, headers));
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Reads a body by `Content-Length` or chunked; without either, to the end of the stream when
/// `to_end` (a response on a closing connection), else empty (a request).
fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_end: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    match header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        None if to_end => {
            reader.read_to_end(&mut body)?;
        }
        None => {}
    }
    Ok(body)
}

/// moto's S3 server on a loopback port, which refuses a request that is not signed with the
/// access key it made for its one user (allowed everything in S3, and nothing else).
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    /// The access key's ID and secret.
    key: (String, String),
}

/// Makes moto's user and its access key (printed: ID, then secret), while moto still takes
/// any request.
const MAKE_USER: &str = "iam = boto3.client('iam', endpoint_url=s3.meta.endpoint_url, \
    aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')
iam.create_user(UserName='mm')
iam.put_user_policy(UserName='mm', PolicyName='s3', PolicyDocument='{\"Version\": \"2012-10-17\", \
\"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"*\"}]}')
key = iam.create_access_key(UserName='mm')['AccessKey']
print(key['AccessKeyId'])
print(key['SecretAccessKey'])";

impl S3Server {
    /// Starts the server, waits until it answers, and has it check signatures from then on:
    /// without that, moto takes unsigned requests and any key (its `/moto-api/reset-auth`
    /// turns its IAM checks on after that many more requests: 0).
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (cargo xtask setup installs moto[server])");
        let mut server = S3Server {
            child: Some(child),
            port,
            key: ("test".to_string(), "test".to_string()),
        };
        let start = Instant::now();
        while request(port, "GET", "/", b"").is_err() {
            assert!(
                start.elapsed() < crate::patience(),
                "moto's S3 server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let made = String::from_utf8(server.boto3(MAKE_USER, &[], b"")).expect("UTF-8");
        let mut lines = made.lines().map(str::to_string);
        server.key = (
            lines.next().expect("access key ID"),
            lines.next().expect("secret access key"),
        );
        let (status, body) = request(port, "POST", "/moto-api/reset-auth", b"0").expect("moto");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        server
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment an S3 client needs to use it.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.key.0.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.key.1.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &self.endpoint()),
            ("AWS_ENDPOINT", &self.endpoint()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Runs `script` with `s3`, a boto3 client of this server with its access key (boto3
    /// comes with moto), and `args` as `sys.argv[1:]`; returns its stdout.
    fn boto3(&self, script: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let program = format!(
            "import sys, boto3\ns3 = boto3.client('s3', endpoint_url='{}', \
             aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], \
             region_name='us-east-1')\nsys.argv[1:3] = []\n{script}",
            self.endpoint()
        );
        let mut child = Command::new("python3")
            .args(["-c", &program, &self.key.0, &self.key.1])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).expect("write stdin");
        drop(input);
        let output = child.wait_with_output().expect("boto3 script");
        assert!(
            output.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        self.boto3("s3.create_bucket(Bucket=sys.argv[1])", &[bucket], b"");
    }

    /// Puts `content` in `bucket` as `key`.
    pub fn put(&self, bucket: &str, key: &str, content: &[u8]) {
        let script =
            "s3.put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=sys.stdin.buffer.read())";
        self.boto3(script, &[bucket, key], content);
    }

    /// The keys of the objects in `bucket`.
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let script = "for o in s3.list_objects_v2(Bucket=sys.argv[1]).get('Contents', []):\n    \
                      print(o['Key'])";
        String::from_utf8_lossy(&self.boto3(script, &[bucket], b""))
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The content of object `key` in `bucket`.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let script = "sys.stdout.buffer.write(\
                      s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read())";
        self.boto3(script, &[bucket, key], b"")
    }

    /// Stops the server (writes to it fail from now on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Requests kept by a [`PutServer`]: path, body and `Authorization` header.
type Kept = Mutex<Vec<(String, Vec<u8>, Option<String>)>>;

/// An HTTP server on a loopback port that takes `PUT`s (201) and keeps them.
pub struct PutServer {
    port: u16,
    received: Arc<Kept>,
}

impl PutServer {
    /// Starts the server on a thread of its own (for the rest of the test process).
    pub fn start() -> PutServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        PutServer { port, received }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `PUT`s received so far: path and body.
    pub fn received(&self) -> Vec<(String, Vec<u8>)> {
        let kept = self.received.lock().expect("not poisoned");
        kept.iter()
            .map(|(path, body, _)| (path.clone(), body.clone()))
            .collect()
    }

    /// The `Authorization` header of each `PUT` received so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        let kept = self.received.lock().expect("not poisoned");
        kept.iter()
            .map(|(_, _, authorization)| authorization.clone())
            .collect()
    }
}

/// Serves one connection's requests (keep-alive) until the client closes it.
fn serve(stream: TcpStream, kept: &Kept) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut start = String::new();
        if reader.read_line(&mut start).unwrap_or(0) == 0 {
            return;
        }
        let mut words = start.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or_default().to_string(),
            words.next().unwrap_or_default().to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let status = match method.as_str() {
            "PUT" => {
                let authorization = header(&headers, "authorization").map(str::to_owned);
                kept.lock()
                    .expect("not poisoned")
                    .push((path, body, authorization));
                "201 Created"
            }
            "GET" | "HEAD" => "404 Not Found",
            _ => "405 Method Not Allowed",
        };
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_stores_and_returns_objects_and_refuses_unsigned_requests() {
        let server = S3Server::start();
        server.create_bucket("bucket");
        server.put("bucket", "dir/o.bin", b"content");
        assert_eq!(server.list("bucket"), ["dir/o.bin"]);
        assert_eq!(server.get("bucket", "dir/o.bin"), b"content");
        let (status, _) = request(server.port, "PUT", "/bucket/unsigned", b"x").unwrap();
        assert!(!(200..300).contains(&status), "{status}");
        assert_eq!(server.list("bucket"), ["dir/o.bin"]);
    }

    #[test]
    fn the_put_server_keeps_each_put_on_a_kept_alive_connection() {
        let server = PutServer::start();
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        for (path, body) in [("/a", "one"), ("/b/c", "two!")] {
            write!(
                stream,
                "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (status, headers) = read_head(&mut reader).unwrap();
            assert_eq!(status, 201);
            assert_eq!(header(&headers, "content-length"), Some("0"));
        }
        let received = server.received();
        assert_eq!(
            received,
            [
                ("/a".to_string(), b"one".to_vec()),
                ("/b/c".to_string(), b"two!".to_vec())
            ]
        );
    }
}
