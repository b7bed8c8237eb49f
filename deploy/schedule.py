"""The old module path of `randopony-schedule`, from before deploy/ was split into folders.

Kept for crontab scripts written earlier, which run a release's code by this path.
"""

import sys

from deploy.flows import cron_jobs

if __name__ == "__main__":
    sys.exit(cron_jobs.main())
