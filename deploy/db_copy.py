"""The old module path of `randopony-db-copy`, from before deploy/ was split into folders.

Kept for older release machinery, which run a release's code by this path.
"""

import sys

from deploy.host import db_copy

if __name__ == "__main__":
    sys.exit(db_copy.main())
