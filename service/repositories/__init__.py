"""Every query lives here; services and workers call these with a session they own."""
