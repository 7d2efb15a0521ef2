"""The fault suite runs only under scripts/test-faults.sh (``make test-faults``), which starts the
private PostgreSQL and Redis its tests restart; in any other run it is not collected."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("REDLAKE_FAULTS_DIR") else ["test_*.py"]
