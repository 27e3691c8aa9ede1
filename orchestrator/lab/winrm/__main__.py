"""`python -m orchestrator.lab.winrm ...`: the stand-in server, same options as
`python -m orchestrator.lab.winrm_server`. `start()` launches this entry point because the lab package
imports `winrm_server` itself, and running an already imported module with -m makes Python warn."""

import sys

from orchestrator.lab.winrm_server import main

sys.exit(main())
