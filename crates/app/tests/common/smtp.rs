//! A real SMTP server for alert tests: aiosmtpd (PyPI, installed by scripts/install-deps.sh
//! into /opt/bulwark-tools) on a free loopback port, with a login and optionally STARTTLS;
//! each message it accepts is saved as a file. Dropping it stops the server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::free_port;

pub const USER: &str = "bulwark";
pub const PASSWORD: &str = "smtp-secret-0001";

const SERVER: &str = r#"
import os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

class Save:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        with open(os.path.join(out, "%04d.eml" % n), "wb") as f:
            f.write(("X-Envelope-From: %s\nX-Envelope-To: %s\n" % (envelope.mail_from, ",".join(envelope.rcpt_tos))).encode())
            f.write(envelope.original_content)
        return "250 OK"

def login(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"@USER@" and data.password == b"@PASSWORD@"
    # handled=False: the server answers 535 itself (True would leave the client waiting).
    return AuthResult(success=ok, handled=False)

kw = dict(hostname="127.0.0.1", port=port, authenticator=login, auth_required=True)
if cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    kw.update(tls_context=ctx, require_starttls=True)
else:
    kw.update(auth_require_tls=False)
server = Controller(Save(), **kw)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"#;

pub struct Smtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn python() -> PathBuf {
    std::env::var_os("BULWARK_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/bulwark-tools/bin/python3"))
}

impl Smtp {
    /// A server with a login; with `tls` (certificate and key PEM files) it requires STARTTLS.
    /// None (said loudly; fails under CI) when aiosmtpd is not installed.
    pub fn start(tls: Option<(&Path, &Path)>) -> Option<Self> {
        let python = python();
        let has = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has {
            eprintln!("SKIPPED: aiosmtpd is not installed (scripts/install-deps.sh installs it); the email tests did not run");
            assert!(std::env::var("CI").is_err(), "CI must run the email tests");
            return None;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let (cert, key) = tls
            .map(|(c, k)| (c.display().to_string(), k.display().to_string()))
            .unwrap_or_default();
        let script = SERVER
            .replace("@USER@", USER)
            .replace("@PASSWORD@", PASSWORD);
        let mut child = Command::new(&python)
            .args(["-c", &script])
            .arg(dir.path())
            .arg(port.to_string())
            .args([cert, key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("aiosmtpd starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        Some(Self { child, port, dir })
    }

    /// The messages received so far, as raw text with the envelope first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
