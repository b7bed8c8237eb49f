"""The release machinery and the host, split by where the code runs:

- `host/`: on the host (the panel and its store, the router and its routing table, the host's
  server process and its supervisor, a release's runtime, the database copier);
- `remote/`: on the maintainer's machine, reaching a host (the fabfile's target, local and SSH
  hosts, the panel's client, the host's records and journal, file mirroring);
- `flows/`: what the fab tasks do, as lists of named steps (staging, promotion and rollback,
  sync, cleanup, upgrade attempts, schedules, app control, the local environment);
- `panel_wire.py`: what the panel and its client both speak.

The five modules left at this level (`release_runtime`, `db_copy`, `schedule`, `hosting`,
`host_boot`) are only old module paths that hosts may still run; see setup.py's console scripts.
"""
