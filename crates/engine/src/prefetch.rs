//! Reading objects ahead of their use. Fetching and decoding are separate threads: fetchers
//! keep several reads in flight (on object storage each read is mostly waiting for the first
//! byte), while one decoder per core works on what has arrived. Memory is bounded by the read
//! buffers in circulation: one per fetcher and one per decoder.

use crossbeam_channel::{bounded, unbounded};

use crate::error::Result;

/// How many reads to keep in flight: on local disk as many as there are cores (more only
/// crowd the disk), on object storage a few more to cover each request's latency. Each read
/// holds up to a pack (8 MiB), and an object store's reply passes through a buffer of its
/// own: 12 in flight doubled restore's memory for no gain against Garage on loopback.
pub fn fetchers(local: bool) -> usize {
    let cores = crate::backup::num_cpus();
    if local {
        cores.max(2)
    } else {
        (2 * cores).clamp(4, 8)
    }
}

/// Fetches every item with `fetch` on `fetchers` threads and hands each to `consume` on one
/// thread per element of `states` (each with its own state), as the reads complete.
pub fn run<T: Send, S: Send>(
    items: Vec<T>,
    fetchers: usize,
    fetch: impl Fn(&T, &mut Vec<u8>) -> Result<()> + Sync,
    states: Vec<S>,
    consume: impl Fn(&mut S, T, Result<&mut Vec<u8>>) + Sync,
) {
    let fetchers = fetchers.max(1);
    let (jobs, job_rx) = unbounded::<T>();
    for item in items {
        let _ = jobs.send(item);
    }
    drop(jobs);
    let buffers = fetchers + states.len();
    let (pool, pool_rx) = bounded::<Vec<u8>>(buffers);
    for _ in 0..buffers {
        let _ = pool.send(Vec::new());
    }
    let (ready, ready_rx) = bounded::<(T, Result<()>, Vec<u8>)>(fetchers);
    let (fetch, consume) = (&fetch, &consume);
    std::thread::scope(|s| {
        for _ in 0..fetchers {
            let (job_rx, pool_rx, ready) = (job_rx.clone(), pool_rx.clone(), ready.clone());
            s.spawn(move || {
                // A buffer first, then an item: no item waits in a fetcher for memory.
                while let Ok(mut buf) = pool_rx.recv() {
                    let Ok(item) = job_rx.recv() else { break };
                    let result = fetch(&item, &mut buf);
                    if ready.send((item, result, buf)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(ready);
        for mut state in states {
            let (ready_rx, pool) = (ready_rx.clone(), pool.clone());
            s.spawn(move || {
                for (item, result, mut buf) in ready_rx {
                    consume(&mut state, item, result.map(|()| &mut buf));
                    let _ = pool.send(buf);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn every_item_is_fetched_and_consumed_once_within_the_buffer_bound() {
        let in_use = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let seen = Mutex::new(Vec::new());
        run(
            (0..200u32).collect(),
            5,
            |i, buf| {
                let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                buf.clear();
                buf.extend_from_slice(&i.to_le_bytes());
                if *i == 7 {
                    return Err(crate::error::Error::corrupt("seven"));
                }
                Ok(())
            },
            vec![(); 2],
            |_, i, got| {
                match got {
                    Ok(buf) => assert_eq!(buf[..], i.to_le_bytes()),
                    Err(e) => assert_eq!((i, e.to_string().contains("seven")), (7, true)),
                }
                seen.lock().expect("lock").push(i);
                in_use.fetch_sub(1, Ordering::SeqCst);
            },
        );
        let mut seen = seen.into_inner().expect("lock");
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 5 + 2, "{most:?}");
    }
}
