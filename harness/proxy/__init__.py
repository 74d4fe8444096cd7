"""The reference proxy: routing decisions as pure functions (this package's modules other
than the server shell), so every decision can be explained and unit-tested without sockets."""
