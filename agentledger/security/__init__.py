"""Defences against prompt injection and data leaks, and per-tool policies.

``injection`` (the heuristic detector), ``masking`` (placeholders and the vault),
``policy`` (workflow ``security:`` settings and tool policies), ``guard`` (the hooks the
processors and runners call), ``untrusted`` (marking data in prompts), ``logs`` (masking
Python log records). See docs/security.md.
"""
