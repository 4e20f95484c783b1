"""How a record reaches the shadow: request building, the sender, the HTTP transport, the guard."""
