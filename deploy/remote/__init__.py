"""How the maintainer's machine reaches a host: files and commands, the panel, the records."""
