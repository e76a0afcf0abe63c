"""The foundation every layer stands on; imports nothing of the package and never torch.

The exceptions and warning categories, the ``compile_policy`` logger, the facts that differ
between torch releases (read from the installed distribution, not by importing torch), and
two process-wide hubs the layers above report to and the pytest plugin reads: compile
events (fallbacks, skips) and the tally of compiled and eager calls.
"""
