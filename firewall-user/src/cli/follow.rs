//! `firewall follow`
use clap::Args;
use firewall_user::ops::follow;

#[derive(Args)]
pub struct Follow {
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Follow {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let iface = filter.pins().iface.clone();
        follow::follow(&filter, |(v4, v6)| {
            let list = |addrs: &[std::net::IpAddr]| {
                addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            if v6.is_empty() {
                say!("firewall follows {iface}: host addresses {}", list(v4));
            } else {
                say!("firewall follows {iface}: host addresses {}; {}", list(v4), list(v6));
            }
        })?;
        Ok(())
    }
}
