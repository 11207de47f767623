"""Access decisions: the facts they need, cached per process.

The decision itself is still ``registryd.auth.policy``.
"""
