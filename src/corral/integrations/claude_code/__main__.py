"""``python -m corral.integrations.claude_code --agent AGENT.yaml``: the hook without the CLI."""

import sys

from corral.integrations.claude_code.hook import main

sys.exit(main())
