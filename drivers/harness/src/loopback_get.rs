//! A blocking `GET` of a loopback HTTP endpoint, for the places that cannot
//! await (a `Drop`): one HTTP/1.0 request on a fresh connection, the body
//! read to the end, all within a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Context;

/// The body of `GET url` (`http://127.0.0.1:PORT/path`) when the answer is
/// 200, within `timeout` for the connect and again for the exchange.
pub fn get(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are fetched"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("{url}: the host must be an IP:port, got {authority:?}"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect to {url}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a reader of the first segment sees the whole request.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("read the answer of {url}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: no HTTP header in the answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    anyhow::ensure!(status == "200", "{url} answered {status}");
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_read_and_a_non_200_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nmetric 1\n",
                "HTTP/1.1 404 Not Found\r\n\r\n",
            ] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).unwrap();
                    assert!(n > 0, "the request ended early: {request:?}");
                    request.extend_from_slice(&chunk[..n]);
                }
                let request = String::from_utf8_lossy(&request);
                assert!(
                    request.starts_with("GET /metrics HTTP/1.0\r\n"),
                    "{request}"
                );
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/metrics");
        assert_eq!(get(&url, Duration::from_secs(2)).unwrap(), "metric 1\n");
        let err = get(&url, Duration::from_secs(2)).unwrap_err().to_string();
        assert_eq!(err, format!("{url} answered 404"));
        server.join().unwrap();
        let err = get("https://x", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "https://x: only http:// URLs are fetched");
    }
}
