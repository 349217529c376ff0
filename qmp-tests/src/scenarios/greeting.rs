//! What a client of a dynamic monitor is greeted with.

use anyhow::{ensure, Result};

use crate::scenarios::{
    hotplug::{self, DynMon},
    Ctx,
};

/// On a unix socket the dynamic monitor offers "oob", and its greeting
/// is the one the main (command-line, unix socket) monitor gave.
pub fn greeting(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let client = hotplug::connect(ctx, &mon)?;
    ensure!(
        client.offers("oob"),
        "the greeting on {} (unix socket) does not offer oob: {}",
        mon.id,
        client.greeting()
    );
    let main = ctx.machine.qmp().greeting().clone();
    ensure!(
        *client.greeting() == main,
        "the greeting on {} differs from the command-line monitor's: {} vs {main}",
        mon.id,
        client.greeting()
    );
    client.close();
    hotplug::remove(ctx, &mon)
}
