"""PTYs: spawned sessions the daemon owns, and the wrap/attach clients' terminal.

Nothing is imported here: the CLI reaches single modules of this package (the terminal's
window size, the wrap protocol) and must not pay for the rest.
"""
