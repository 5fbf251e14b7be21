//! The option rules: which arguments of a command hold secrets. A small table of (program,
//! option) pairs for short options whose meaning depends on the program (`-p` is a password
//! for mysql and sshpass, a port for most others), generic rules for long options and
//! assignments with secret-ish names, and `sh -c` scripts tokenized and walked the same way.

use super::inline::{redact_text, Shapes};
use super::names::{is_path_like, is_secret_name, keeps_path, names_a_file, Place};
use super::{nothing_to_hide, shell, REDACTED};

/// How a program takes a secret after one of its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// Only glued to the option: `mysql -phunter2` (`mysql -p db` prompts; `db` is a database).
    Glued,
    /// Glued or as the next argument: `sshpass -p x`, `redis-cli -a x`.
    Value,
    /// `user<sep>secret`: curl's `-u bob:pw`, smbclient's `-U bob%pw`; the user stays.
    UserThen(char),
    /// OpenSSL pass phrase arguments: `pass:x` loses x; `env:`, `file:`, `fd:`, `stdin` stay.
    OpensslPass,
    /// A generic secret option (`--token x`); `key` options keep a file path.
    Generic { keyish: bool },
}

const MYSQL: &[&str] = &[
    "mysql",
    "mysqladmin",
    "mysqldump",
    "mysqlcheck",
    "mysqlimport",
    "mysqlshow",
    "mysqlslap",
    "mysqlpump",
    "mariadb",
    "mariadb-admin",
    "mariadb-dump",
    "mariadb-check",
];
const MONGO: &[&str] = &[
    "mongo",
    "mongosh",
    "mongodump",
    "mongorestore",
    "mongoexport",
    "mongoimport",
    "mongostat",
    "mongotop",
];
const LDAP: &[&str] = &[
    "ldapsearch",
    "ldapadd",
    "ldapmodify",
    "ldapdelete",
    "ldapwhoami",
    "ldappasswd",
    "ldapcompare",
];
const REDIS: &[&str] = &["redis-cli", "valkey-cli", "keydb-cli"];
const CURL: &[&str] = &["curl"];
const OPENSSL: &[&str] = &["openssl"];

/// `<cli> login` takes `-p <password>`: docker, podman, helm registry, az…
const LOGIN_CLIS: &[&str] = &[
    "docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras", "az", "crane", "regctl",
    "cf",
];
/// The pseudo-program `<cli> login` becomes.
const LOGIN: &str = "login";

/// (programs, option, how its value is a secret).
const OPTIONS: &[(&[&str], &str, Takes)] = &[
    (MYSQL, "-p", Takes::Glued),
    (&["sshpass"], "-p", Takes::Value),
    (REDIS, "-a", Takes::Value),
    (MONGO, "-p", Takes::Value),
    (&["sqlcmd", "bcp"], "-P", Takes::Value),
    (CURL, "-u", Takes::UserThen(':')),
    (CURL, "--user", Takes::UserThen(':')),
    (CURL, "-U", Takes::UserThen(':')),
    (CURL, "--proxy-user", Takes::UserThen(':')),
    (CURL, "-E", Takes::UserThen(':')),
    (CURL, "--cert", Takes::UserThen(':')),
    (CURL, "-b", Takes::Value),
    (&["wget"], "--user", Takes::UserThen(':')),
    (&["smbclient", "rpcclient"], "-U", Takes::UserThen('%')),
    (OPENSSL, "-pass", Takes::OpensslPass),
    (OPENSSL, "-passin", Takes::OpensslPass),
    (OPENSSL, "-passout", Takes::OpensslPass),
    (OPENSSL, "-k", Takes::Value),
    (&["ssh-keygen"], "-N", Takes::Value),
    (&["ssh-keygen"], "-P", Takes::Value),
    (LDAP, "-w", Takes::Value),
    (&["mosquitto_pub", "mosquitto_sub"], "-P", Takes::Value),
    (&["zip"], "-P", Takes::Value),
    (&["7z", "7za"], "-p", Takes::Glued),
    (&[LOGIN], "-p", Takes::Value),
];

/// Shells whose `-c` argument is a script.
const SHELLS: &[&str] = &[
    "sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "su", "runuser",
];

/// Programs that run another command given later in their arguments.
const WRAPPERS: &[&str] = &[
    "env",
    "sudo",
    "doas",
    "exec",
    "command",
    "nice",
    "ionice",
    "nohup",
    "time",
    "timeout",
    "setsid",
    "stdbuf",
    "chroot",
    "nsenter",
    "unshare",
    "xargs",
    "watch",
    "flock",
    "busybox",
    "tini",
    "dumb-init",
    "gosu",
    "su-exec",
    "setpriv",
    "catatonit",
    "strace",
];

/// `<cli> exec <container> <command…>` runs a command.
const CONTAINER_CLIS: &[&str] = &[
    "docker", "podman", "nerdctl", "crictl", "kubectl", "ctr", "oc",
];

/// Nested `sh -c "bash -c '…'"` levels walked; deeper scripts get only the text rules.
const MAX_DEPTH: u8 = 4;

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

fn is_known_program(p: &str) -> bool {
    SHELLS.contains(&p)
        || WRAPPERS.contains(&p)
        || LOGIN_CLIS.contains(&p)
        || OPTIONS.iter().any(|(progs, _, _)| progs.contains(&p))
}

/// `-x`, `--name`, `-name=value`; not `-----BEGIN …` or `- item` text.
fn is_option(w: &str) -> bool {
    let name = w.split('=').next().unwrap_or(w);
    w.len() > 1
        && w.starts_with('-')
        && !w.starts_with("---")
        && !name.contains(char::is_whitespace)
}

/// What the walk knows about the command it is in.
#[derive(Debug, Default, Clone)]
struct Cmd {
    /// Still before the program name (only `NAME=value` assignments so far).
    started: bool,
    program: String,
    wrapper: bool,
    pending: Option<Pending>,
    /// The last two words (`aws configure set NAME VALUE`, `vault login TOKEN`).
    prev: [String; 2],
    /// The previous word was a long option without `=`: this word is probably its value.
    after_long_option: bool,
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Value(Takes),
    Script,
}

impl Cmd {
    fn set_program(&mut self, w: &str) {
        self.program = basename(w).to_ascii_lowercase();
        self.wrapper = WRAPPERS.contains(&self.program.as_str());
        self.started = true;
    }
}

/// The walk over the words of one command line (argv) or one script.
#[derive(Clone)]
pub(super) struct Walk<'a> {
    shapes: &'a Shapes,
    depth: u8,
    cmd: Cmd,
}

impl<'a> Walk<'a> {
    pub(super) fn new(shapes: &'a Shapes) -> Self {
        Self::at_depth(shapes, 0)
    }

    fn at_depth(shapes: &'a Shapes, depth: u8) -> Self {
        Self {
            shapes,
            depth,
            cmd: Cmd::default(),
        }
    }

    /// The next word: its redacted text if that differs.
    pub(super) fn word(&mut self, w: &str, command_start: bool) -> Option<String> {
        let out = self.step(w, command_start);
        // Every word counts as the previous one, option or not, so a word cut by the length
        // bound (which may then look like an option) moves the walk the same way.
        self.cmd.prev.swap(0, 1);
        self.cmd.prev[1] = w.to_string();
        out
    }

    fn step(&mut self, w: &str, command_start: bool) -> Option<String> {
        if command_start {
            self.cmd = Cmd::default();
        }
        let after_long_option = std::mem::take(&mut self.cmd.after_long_option);
        match self.cmd.pending.take() {
            Some(Pending::Script) => return self.script(w),
            Some(Pending::Value(takes)) if !is_option(w) => return secret_value(takes, w),
            _ => {}
        }
        if !self.cmd.started {
            if let Some(assigned) = assignment(w) {
                return assigned;
            }
            self.cmd.set_program(w);
            return None;
        }
        if w == "--" {
            // `kubectl exec pod -- cmd`, `env -- cmd`: a new command follows.
            self.cmd = Cmd::default();
            return None;
        }
        if is_option(w) {
            return self.option(w);
        }
        self.positional(w, after_long_option)
    }

    fn option(&mut self, w: &str) -> Option<String> {
        let (name, value) = match w.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (w, None),
        };
        let program = self.cmd.program.as_str();
        let table = OPTIONS
            .iter()
            .filter(|(progs, _, _)| progs.contains(&program));
        for &(_, opt, takes) in table {
            if name == opt {
                return match value {
                    Some(v) => secret_value(takes, v).map(|v| format!("{name}={v}")),
                    None => {
                        if takes != Takes::Glued {
                            self.cmd.pending = Some(Pending::Value(takes));
                        }
                        None
                    }
                };
            }
            // A short option with its value glued on: `-phunter2`, `-ubob:pw`.
            if opt.len() == 2 && w.len() > 2 && w.starts_with(opt) {
                return secret_value(takes, &w[2..]).map(|v| format!("{opt}{v}"));
            }
        }
        if SHELLS.contains(&program)
            && !w.starts_with("--")
            && w[1..].bytes().all(|b| b.is_ascii_alphabetic())
            && w.contains('c')
        {
            // `sh -c`, `bash -ec`, `su -c`: the next word is a script.
            self.cmd.pending = Some(Pending::Script);
            return None;
        }
        let keyish = name.to_ascii_lowercase().ends_with("key");
        let secret = is_secret_name(name, Place::Option);
        match value {
            Some(v) if secret && !keeps_path(name, v) => {
                secret_value(Takes::Value, v).map(|v| format!("{name}={v}"))
            }
            // `--from-file=password=./pw.txt` names a file.
            Some(_) if names_a_file(name) => None,
            // `--env=DB_PASS=x`, `--from-literal=password=x`, `--set=db.password=x`.
            Some(v) => assignment(v).flatten().map(|a| format!("{name}={a}")),
            None => {
                if secret {
                    self.cmd.pending = Some(Pending::Value(Takes::Generic { keyish }));
                } else if w.starts_with("--") && !w.ends_with('…') {
                    self.cmd.after_long_option = true;
                }
                None
            }
        }
    }

    fn positional(&mut self, w: &str, after_long_option: bool) -> Option<String> {
        if let Some(assigned) = assignment(w) {
            return assigned;
        }
        let base = basename(w).to_ascii_lowercase();
        let program = self.cmd.program.clone();
        let mut out = None;
        if !after_long_option
            && !w.ends_with('…')
            && (SHELLS.contains(&base.as_str()) || (self.cmd.wrapper && is_known_program(&base)))
        {
            // `docker exec c sh -c …`, `timeout 5 mysql -p…`, `docker run img sh -c …`.
            self.cmd.set_program(w);
        } else if w == "login" && LOGIN_CLIS.contains(&program.as_str()) {
            self.cmd.program = LOGIN.into();
        } else if w == "exec" && CONTAINER_CLIS.contains(&program.as_str()) {
            self.cmd.wrapper = true;
        } else if program == "vault" && self.cmd.prev[1] == "login" && !w.contains('=') {
            // `vault login <token>`.
            out = secret_value(Takes::Value, w);
        } else if matches!(self.cmd.prev[0].as_str(), "configure" | "config")
            && self.cmd.prev[1] == "set"
            && is_secret_name(w, Place::Option)
        {
            // `aws configure set aws_secret_access_key X`, `npm config set …:_authToken X`.
            self.cmd.pending = Some(Pending::Value(Takes::Value));
        }
        out
    }

    /// A `sh -c` script: each word walked and given the text rules, changed words written
    /// back with the quoting they had; the rest of the script (operators, comments, spacing)
    /// stays as it was.
    fn script(&self, s: &str) -> Option<String> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        let mut walk = Walk::at_depth(self.shapes, self.depth + 1);
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for w in shell::words(s) {
            let walked = walk.word(&w.text, w.command_start);
            let text = redact_text(walked.as_deref().unwrap_or(&w.text), self.shapes);
            if text != w.text {
                out.push_str(&s[at..w.start]);
                out.push_str(&shell::requote(&s[w.start..w.end], &w.text, &text));
                at = w.end;
            }
        }
        if at == 0 {
            return None;
        }
        out.push_str(&s[at..]);
        Some(out)
    }
}

/// `NAME=value` (a shell assignment, `-e` / `--env` value, `--from-literal`, `--set` entry):
/// `Some(change)` if it is one (the change being `None` when the name is harmless), `None` if
/// the word is no assignment.
fn assignment(w: &str) -> Option<Option<String>> {
    let (name, value) = w.split_once('=')?;
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return None;
    }
    if !is_secret_name(name, Place::Option) {
        return Some(None);
    }
    Some(secret_value(Takes::Value, value).map(|v| format!("{name}={v}")))
}

/// The redacted form of a secret option's value, if it changes.
fn secret_value(takes: Takes, v: &str) -> Option<String> {
    if nothing_to_hide(v) {
        return None;
    }
    match takes {
        Takes::Glued | Takes::Value => Some(REDACTED.into()),
        Takes::Generic { keyish } => (!(keyish && is_path_like(v))).then(|| REDACTED.into()),
        Takes::UserThen(sep) => {
            let (user, secret) = v.split_once(sep)?;
            (!nothing_to_hide(secret)).then(|| format!("{user}{sep}{REDACTED}"))
        }
        Takes::OpensslPass => {
            if let Some(p) = v.strip_prefix("pass:") {
                return (!nothing_to_hide(p)).then(|| format!("pass:{REDACTED}"));
            }
            let names_a_source =
                ["env:", "file:", "fd:"].iter().any(|p| v.starts_with(p)) || v == "stdin";
            (!names_a_source).then(|| REDACTED.into())
        }
    }
}
