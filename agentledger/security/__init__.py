"""Defences against prompt injection and data leaks, and per-tool policies.

``injection`` (the heuristic detector), ``detectors`` (personal data and secrets, found
by maintained libraries behind one interface), ``masking`` (placeholders and the vault),
``private_files`` (owner-only ledger, vault and sandbox),
``policy`` (workflow ``security:`` settings and tool policies), ``guard`` (the hooks the
processors and runners call), ``untrusted`` (marking data in prompts), ``logs`` (masking
Python log records). See docs/security.md.
"""
