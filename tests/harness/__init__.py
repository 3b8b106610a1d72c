"""Helpers for myroute's end-to-end tests: throw-away MariaDB servers, the
proxy process, a fake backend, a raw protocol client and the real clients."""
