"""Entry script of the self-contained `kubectl-capc` binary that scripts/release.py builds with PyInstaller.

PyInstaller needs a script, not a console-script entry point; this one only hands over to the same
`main()` that the pip-installed command runs, so both behave identically. Called by the name
`kubectl_complete-capc` (the archive's copy, or a link to the binary), it answers kubectl's shell
completion instead, like the pip-installed `kubectl_complete-capc`.
"""

import os
import sys

COMPLETION_NAME = "kubectl_complete-capc"

if __name__ == "__main__":
    if os.path.basename(sys.argv[0]).startswith(COMPLETION_NAME):
        from kubectl_capc.cli.completion import main
    else:
        from kubectl_capc.__main__ import main
    sys.exit(main())
