use anyhow::{bail, Result};
use engine::lock::{LockGuard, LockKind};

use crate::access::read_password_file;
use crate::cli::KeyCommand;
use crate::commands::init::kdf_from_env;
use crate::context::{prompt, Context};
use crate::exit::{usage, Status};
use crate::output::{local_time, print_json};

pub fn run(ctx: &Context, cmd: &KeyCommand) -> Result<Status> {
    let repo = ctx.open()?;
    match cmd {
        KeyCommand::Add { label } => {
            let id = repo.add_key(&new_password()?, label, kdf_from_env())?;
            report(ctx, "added key", &id.to_hex())?;
        }
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if ctx.json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| serde_json::json!({"id": id, "current": *id == repo.key_id(), "created": k.created, "host": k.hostname, "user": k.username, "label": k.label}))
                    .collect();
                print_json(&rows)?;
            } else {
                println!(
                    "{:<2} {:<10} {:<20} {:<20} label",
                    "", "id", "created", "user@host"
                );
                for (id, k) in keys {
                    let mark = if id == repo.key_id() { "*" } else { "" };
                    println!(
                        "{mark:<2} {:<10} {:<20} {:<20} {}",
                        id.short(),
                        local_time(k.created),
                        format!("{}@{}", k.username, k.hostname),
                        k.label
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            let _lock =
                LockGuard::acquire(&repo, LockKind::Exclusive, "key remove", ctx.lock_wait)?;
            let keys = repo.list_keys()?;
            let matches: Vec<_> = keys
                .iter()
                .filter(|(k, _)| k.to_hex().starts_with(id.as_str()))
                .collect();
            let found = match matches.as_slice() {
                [one] => one.0,
                [] => bail!(usage(format!("no key {id}"))),
                _ => bail!(usage(format!("key prefix {id} is ambiguous"))),
            };
            repo.remove_key(found)?;
            report(ctx, "removed key", &found.to_hex())?;
        }
        KeyCommand::Passwd => {
            let _lock =
                LockGuard::acquire(&repo, LockKind::Exclusive, "key passwd", ctx.lock_wait)?;
            let old = repo.key_id();
            let label = repo
                .list_keys()?
                .into_iter()
                .find(|(k, _)| *k == old)
                .map(|(_, f)| f.label)
                .unwrap_or_default();
            let id = repo.add_key(&new_password()?, &label, kdf_from_env())?;
            // The new key is written before the old one goes, so a crash leaves both valid.
            repo.store()
                .delete(engine::store::ObjectKind::Key, &old.to_hex())?;
            report(ctx, "changed password; new key", &id.to_hex())?;
        }
    }
    Ok(Status::Ok)
}

fn new_password() -> Result<String> {
    if let Ok(p) = std::env::var("BULWARK_NEW_PASSWORD_FILE") {
        return read_password_file(std::path::Path::new(&p));
    }
    if let Ok(p) = std::env::var("BULWARK_NEW_PASSWORD") {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    prompt("new password", true)
}

fn report(ctx: &Context, what: &str, id: &str) -> Result<()> {
    if ctx.json {
        print_json(&serde_json::json!({ "result": what, "key": id }))
    } else {
        println!("{what} {}", &id[..8]);
        Ok(())
    }
}
