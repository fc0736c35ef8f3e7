"""HTTP routers: parse, call a service, return."""
