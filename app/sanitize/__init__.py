"""Sanitising a copy of production's database and rider lists, so that staging can never reach a
real rider.

`fab sync_staging` copies production's database into the staging release, migrates it to the
release's head, mirrors production's rider lists and then runs the staging release's own
`python -m app.sanitize staging.ini ...` on them:

- every address (riders, organizers, wranglers, the site's configured addresses) goes to a sink
  domain that cannot deliver (see `sink_address`), one sink address per original address, so
  duplicate sign-ups are still found; the sink address is a keyed hash (the host's sink key,
  which staging cannot read), so it gives nothing of the address away, and the sync prints the
  wranglers' staging logins;
- links to the production domain point at the staging domain;
- every wrangler's password becomes the staging password, and the events' secret uuids (the
  organizers' links) are replaced, so production's secret links do not work on staging;
- the outbox is emptied: nothing copied from production is ever sent;
- the rider list files, named by the events' secret uuids, are rewritten under the new uuids.

Sessions are signed cookies checked with each release's own session secret, and the page cache's
token is replaced, so nothing else of production's carries over.

One job a module:

- rules.py: what is replaced by what, declared once per column in RULES, and the functions that
  do it (the sink address, the scrub of free text and links);
- sanitized_copy.py: on SQLite, the database written anew by the rules into a new file, by two
  worker processes, scanned, then renamed over the original (what the command line does);
- database.py: the database rewritten by the rules in the caller's transaction, a table at a time
  in one UPDATE on SQLite (`sanitize`, and the command line for a database the copy cannot
  handle); a refusal leaves it as it was;
- leaks.py: the final scan of every text column of every table, and of every rider list written,
  which refuses (SanitizeError) if anything personal or production's is left;
- files.py: the rider lists, rewritten from the mirror by the same rules under the new uuids;
- xlsx.py: a rider list workbook's text cells rewritten and read in its XML, in the form the app
  writes (openpyxl's load and save otherwise);
- sqlite.py: what the rewrites and leaks.py share on SQLite (Python functions called from SQL,
  and the SQL test that spares calling them);
- cli.py: the command line (`python -m app.sanitize`): the database and the rider lists, which
  are kept only if both are whole and nothing is left in either.
"""

from .database import sanitize
from .rules import DEFAULT_SINK_DOMAIN, SanitizeError, is_reserved_domain, sink_address

__all__ = ["DEFAULT_SINK_DOMAIN", "SanitizeError", "is_reserved_domain", "sanitize", "sink_address"]
