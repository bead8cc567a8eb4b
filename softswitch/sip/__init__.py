"""The sans-IO SIP core: messages, transactions, dialogs, digest auth, location, limits.

Nothing here imports asyncio, socket, time or uvloop (a test walks the AST to keep it so):
bytes and `now` go in, parsed messages, events and `SendMessage` commands come out.

Exports:
- `message`: `Request`, `Response`, `Headers`, `parse_message`, `parse_uri`,
  `parse_name_addr`, `parse_via`
- `framing`: `StreamFramer` (messages on TCP/TLS byte streams)
- `build`: `make_response`, `new_branch`, `new_tag`, `new_call_id`
- `transaction`: `TransactionLayer`, `Target`, `SendMessage` and the events it returns
- `dialog`: `Dialog`
- `auth`: `DigestServer`, `parse_authorization`, `ha1`
- `location`: `LocationService`, `Binding`, `ContactSpec`
- `ratelimit`: `RateLimiter`, `FailureTracker`
- `errors`: `SipError`, `SipParseError`, `TransactionError`, `DialogError`
"""
