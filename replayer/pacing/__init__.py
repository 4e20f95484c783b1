"""When each record is sent: the virtual clock (time warp), the rate limit, progress figures."""
