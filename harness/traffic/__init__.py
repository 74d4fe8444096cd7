"""Traffic: client identities, session plans and the drivers that send them."""
