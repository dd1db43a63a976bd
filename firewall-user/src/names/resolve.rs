//! The names asked of the host's resolvers, as its programs ask them: the servers and
//! options of /etc/resolv.conf, and /etc/hosts first.
use std::{net::IpAddr, time::Duration};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, ResolveHosts},
    net::{DnsError, NetError},
};

/// How long one server may take to answer, and how many times each is asked: a name
/// whose servers are all down fails in a few seconds, not glibc's 5 s × 2 × servers.
const TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;
/// The TTL of an answer that says a name has no address, without an SOA to say how
/// long that holds.
const NEGATIVE_TTL: u32 = 30;

/// What the resolvers said of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Its addresses, both families, in the answer's order (none: the name does not
    /// exist, or has no address), and how long they hold, in seconds.
    Addresses { addrs: Vec<IpAddr>, ttl: u32 },
    /// No answer came, or one that says nothing (a timeout, SERVFAIL, REFUSED, no
    /// resolver configured): why, on one line.
    Failed(String),
}

/// Asks for every name of `names` at once, and waits for all the answers: for the
/// commands, which run no runtime of their own.
pub fn resolve(names: &[&str]) -> Vec<(String, Answer)> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(ask(names)),
        Err(err) => {
            names.iter().map(|n| ((*n).to_owned(), Answer::Failed(format!("no runtime: {err}")))).collect()
        }
    }
}

/// [`resolve`] within a runtime (`serve`'s). The resolvers' configuration is read anew
/// each time: DHCP may have changed it.
pub async fn ask(names: &[&str]) -> Vec<(String, Answer)> {
    let resolver = match resolver() {
        Ok(resolver) => resolver,
        Err(err) => {
            let why = format!("reading /etc/resolv.conf: {}", crate::one_line(&err));
            return names.iter().map(|n| ((*n).to_owned(), Answer::Failed(why.clone()))).collect();
        }
    };
    let mut asked = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let resolver = resolver.clone();
        // Fully qualified: the search list is not tried.
        let fqdn = format!("{name}.");
        asked.spawn(async move { (i, answer(resolver.lookup_ip(fqdn.as_str()).await)) });
    }
    let mut answers: Vec<Option<Answer>> = vec![None; names.len()];
    while let Some(done) = asked.join_next().await {
        if let Ok((i, answer)) = done {
            answers[i] = Some(answer);
        }
    }
    names
        .iter()
        .zip(answers)
        .map(|(name, answer)| {
            ((*name).to_owned(), answer.unwrap_or_else(|| Answer::Failed("the question was lost".into())))
        })
        .collect()
}

/// A resolver of the host's configuration, asking for both families, caching nothing
/// (each question is a new one: a TTL run out is asked of the servers).
fn resolver() -> Result<TokioResolver, NetError> {
    let mut builder = TokioResolver::builder_tokio()?;
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = TIMEOUT;
    options.attempts = ATTEMPTS;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Always;
    builder.build()
}

fn answer(result: Result<hickory_resolver::lookup_ip::LookupIp, NetError>) -> Answer {
    match result {
        Ok(lookup) => {
            let ttl = lookup.valid_until().saturating_duration_since(std::time::Instant::now());
            Answer::Addresses {
                addrs: lookup.iter().collect(),
                ttl: ttl.as_secs().min(u64::from(u32::MAX)) as u32,
            }
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(no))) => {
            Answer::Addresses { addrs: Vec::new(), ttl: no.negative_ttl.unwrap_or(NEGATIVE_TTL) }
        }
        Err(err) => Answer::Failed(crate::one_line(&err)),
    }
}
