"""The command line's longer commands, by stage; ``kam/cli.py`` wires them into one app."""
