"""Governance of plain ``torch.compile`` code (``govern_torch_compile()``): the checked
install over torch's private stance and compile wrapper, and the check of every torch
internal it relies on, refusing clearly on a torch that differs.
"""
