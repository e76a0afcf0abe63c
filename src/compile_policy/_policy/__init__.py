"""The policy as a value: :class:`~compile_policy.CompilePolicy`, its text form
(``"off,backend=eager"``) and its data form (``to_dict``/``from_dict``). No torch, no state:
where a policy applies is the context layer's business (:mod:`.._context`).
"""
