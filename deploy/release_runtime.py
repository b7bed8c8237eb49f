"""The old module path of `randopony-release`, from before deploy/ was split into folders.

Kept for older release machinery and hosts, which run a release's code by this path.
"""

import sys

from deploy.host import release_runtime

if __name__ == "__main__":
    sys.exit(release_runtime.main())
