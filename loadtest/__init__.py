"""Load testing (SPEC §1, §10): busy-hour call traces (format, generator, from the CDR) and the Erlang staffing model; the replay (`hotline loadtest run`) is not built yet."""
