"""What the fab tasks do, each a list of named steps over a host reached through remote/."""
