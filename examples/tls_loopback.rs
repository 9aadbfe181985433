//! The machine's limit for peer replication: TLS 1.3 bulk throughput over
//! loopback with rustls and nothing else (no protocol, no hashing, no disk),
//! using the peer transport's own configurations (`TlsConfigs::build`: the
//! same ring provider, suites, certificates and CRL checks).
//!
//! `bench/compare_peers.py` runs it as two processes, so that each side's CPU
//! is its own:
//!
//! ```text
//! tls_loopback receive <ca> <cert> <key> <crl>          # prints its port, then one JSON line
//! tls_loopback send <ca> <cert> <key> <crl> <port> <bytes>   # prints one JSON line
//! ```
//!
//! The sender writes an 8-byte length and then that many bytes; the receiver
//! reads them all and answers with the same 8 bytes, so the sender's clock
//! stops only when every byte has arrived.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use vedette::peers::tls::{TlsConfigs, TlsSettings};

/// The size of each write and read: the transport's largest chunk.
const CHUNK: usize = 256 * 1024;

type Failure = Box<dyn std::error::Error>;

fn configs(files: &[String]) -> Result<TlsConfigs, Failure> {
    let [ca, cert, key, crl] = files else {
        return Err("expected <ca> <cert> <key> <crl>".into());
    };
    let settings = TlsSettings {
        ca: PathBuf::from(ca),
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
        crl: vec![PathBuf::from(crl)],
        ..TlsSettings::default()
    };
    Ok(TlsConfigs::build(&settings)?)
}

fn receive(files: &[String]) -> Result<(), Failure> {
    let tls = configs(files)?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let (socket, _) = listener.accept()?;
    socket.set_nodelay(true)?;
    let mut stream = StreamOwned::new(ServerConnection::new(tls.server)?, socket);
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    let total = u64::from_le_bytes(header);
    let started = Instant::now();
    let mut buffer = vec![0u8; CHUNK];
    let mut left = total;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64))?;
        let n = stream.read(&mut buffer[..want])?;
        if n == 0 {
            return Err(format!("the sender stopped with {left} bytes to go").into());
        }
        left -= n as u64;
    }
    stream.write_all(&header)?;
    stream.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{{\"bytes\": {total}, \"seconds\": {seconds}}}");
    Ok(())
}

fn send(files: &[String]) -> Result<(), Failure> {
    let [pki @ .., port, bytes] = files else {
        return Err("expected <ca> <cert> <key> <crl> <port> <bytes>".into());
    };
    let tls = configs(pki)?;
    let port: u16 = port.parse()?;
    let total: u64 = bytes.parse()?;
    let socket = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    socket.set_nodelay(true)?;
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut stream = StreamOwned::new(ClientConnection::new(tls.client, name)?, socket);
    // Handshake first, so that the clock measures bytes only.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    let payload: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    stream.write_all(&total.to_le_bytes())?;
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64))?;
        stream.write_all(&payload[..n])?;
        left -= n as u64;
    }
    stream.flush()?;
    let mut echo = [0u8; 8];
    stream.read_exact(&mut echo)?;
    if u64::from_le_bytes(echo) != total {
        return Err("the receiver acknowledged a different length".into());
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{{\"bytes\": {total}, \"seconds\": {seconds}}}");
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((mode, rest)) if mode == "receive" => receive(rest),
        Some((mode, rest)) if mode == "send" => send(rest),
        _ => {
            Err("usage: tls_loopback receive|send <ca> <cert> <key> <crl> [<port> <bytes>]".into())
        }
    }
}
