"""The call engine: signaling client, peer connections, negotiation, reconnection.

Never imports Qt. The signaling client lives in :mod:`desktop_call.call.signaling`
(import it from there: this package does not re-export, so importing one module of
the engine does not pull in the others).
"""
