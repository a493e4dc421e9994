"""The command line: the Typer app, flag types, one module per verb, printing and the terminal.

The only layer that imports typer, click or rich; it turns flags into the option objects of `ops`.
"""
