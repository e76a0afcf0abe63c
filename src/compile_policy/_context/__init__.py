"""Where the policy lives: one immutable stack per thread or asyncio task (a ``ContextVar``),
the process default under it, and the scopes that push and pop it (``compile_enabled``,
``compile_disabled``, ``use_policy``, ``bind_policy``), as ``with`` blocks and decorators.
No torch; governance, above, tells it what it must know through :mod:`.frames`.
"""
