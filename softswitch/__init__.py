"""hotline softswitch: SIP core (sans-IO), transports, registrar, B2BUA, dialplan, CLI."""
