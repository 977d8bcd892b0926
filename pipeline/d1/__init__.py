"""Cloudflare D1 through the pg2edge Worker: the Worker itself, its HTTP client, and D1's limits.

The Worker (``worker/index.js``) is shipped with pg2edge and written out by
``pg2edge export d1-worker DIR``; the sync daemon talks to it over HTTPS with a
bearer secret. See docs/d1.md.
"""
