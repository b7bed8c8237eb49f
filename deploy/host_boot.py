"""The old module path of `randopony-host-boot`, from before deploy/ was split into folders.

Kept for host supervisord.conf files written earlier, which run a release's code by this path.
"""

import sys

from deploy.host import boot

if __name__ == "__main__":
    sys.exit(boot.main())
