"""Policy-compiled objects: the front door (``policy_compiled``), the generated hot path that
reads the policy on every call, per-object state and its compiled variants, failures and
stats, the method and module wrappers, inspection, and the few torch internals they need
(keeping Dynamo out of our frames, ignored regions). Imports torch only where an object
compiles or a module is wrapped.
"""
